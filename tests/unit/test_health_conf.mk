# elector/health_conf.c alone: --health-url forms and the settings' checks.
test_health_conf_OBJ = elector/health_conf.o
