# elect — leader election and distributed locks sidecar.
# User flags (CFLAGS, LDFLAGS) are kept apart from the ones the build needs.

CC         ?= cc
PKG_CONFIG ?= pkg-config
PREFIX     ?= /usr/local
BINDIR     ?= $(PREFIX)/bin
MANDIR     ?= $(PREFIX)/share/man
DESTDIR    ?=

WARNINGS = -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
           -Wpointer-arith -Wformat=2 -Wimplicit-fallthrough
CFLAGS  ?= -O2 -g
EV_LIBS   ?= -lev
ZK_CFLAGS ?= -I/usr/include/zookeeper
ZK_LIBS   ?= -lzookeeper_st
HP_LIBS   ?= -lhttp_parser

PKGS = libcurl jansson yaml-0.1
LOCAL_CFLAGS = -std=gnu11 -D_GNU_SOURCE $(WARNINGS) -I. $(ZK_CFLAGS) \
               $(shell $(PKG_CONFIG) --cflags $(PKGS))
# libcurl is not linked: common/curl_dl.c loads it on first use (see there).
LOCAL_LIBS   = $(shell $(PKG_CONFIG) --libs jansson yaml-0.1) $(EV_LIBS) $(ZK_LIBS) $(HP_LIBS) -ldl -lm
CMOCKA_LIBS  = $(shell $(PKG_CONFIG) --libs cmocka)

# BUILD selects the object folder so that the sanitizer build lives apart.
BUILD ?= build
BIN   ?= bin

COMMON_SRC  = $(wildcard common/*.c)
BACKEND_SRC = $(wildcard backends/*.c)
HOOKS_SRC   = $(wildcard hooks/*.c)
ELECTOR_SRC = $(filter-out elector/main.c,$(wildcard elector/*.c))
LOCKD_SRC   = $(filter-out lockd/main.c lockd/lockctl.c,$(wildcard lockd/*.c))

LIB_SRC = $(COMMON_SRC) $(BACKEND_SRC) $(HOOKS_SRC)
LIB_OBJ = $(LIB_SRC:%.c=$(BUILD)/%.o)
ELECTOR_OBJ = $(ELECTOR_SRC:%.c=$(BUILD)/%.o)

PROGS = $(BIN)/elect $(if $(wildcard lockd/main.c),$(BIN)/lockd) \
        $(if $(wildcard lockd/lockctl.c),$(BIN)/lockctl)

# The version elect --version prints (elector/main.c), the image's tag.
VERSION := $(shell sed -n 's/^\#define ELECT_VERSION "\(.*\)"$$/\1/p' elector/main.c)

.PHONY: all check unit integration consul k8s asan valgrind bench chaos demo install uninstall clean \
        image check-containers
all: $(PROGS)

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(LOCAL_CFLAGS) $(CFLAGS) -MD -MP -c -o $@ $<

$(BIN)/elect: $(BUILD)/elector/main.o $(ELECTOR_OBJ) $(LIB_OBJ)
	@mkdir -p $(BIN)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(LOCAL_LIBS)

$(BIN)/lockd: $(BUILD)/lockd/main.o $(LOCKD_SRC:%.c=$(BUILD)/%.o) $(BUILD)/elector/lease.o $(LIB_OBJ)
	@mkdir -p $(BIN)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(LOCAL_LIBS)

$(BIN)/lockctl: $(BUILD)/lockd/lockctl.o $(LIB_OBJ)
	@mkdir -p $(BIN)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(LOCAL_LIBS)

# ---- unit tests: one cmocka binary per module (tests/unit/test_<module>.c).
# A test declares what it links and wraps in tests/unit/test_<module>.mk:
#   test_<module>_OBJ  = objects under test (paths relative to the build dir)
#   test_<module>_WRAP = functions replaced by -Wl,--wrap=
UNIT_SRC   = $(wildcard tests/unit/test_*.c)
UNIT_TESTS = $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)
-include $(wildcard tests/unit/*.mk)

UNIT_MOCKS = $(if $(wildcard tests/unit/mocks.c),$(BUILD)/tests/unit/mocks.o)

$(BUILD)/tests/%: $(BUILD)/tests/unit/%.o $(UNIT_MOCKS) $(LIB_OBJ) $(ELECTOR_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $(BUILD)/tests/unit/$*.o $(UNIT_MOCKS) \
	  $(addprefix $(BUILD)/,$($*_OBJ)) \
	  $(foreach f,$($*_WRAP),-Wl,--wrap=$(f)) $(LOCAL_LIBS) $(CMOCKA_LIBS)

unit: $(UNIT_TESTS)
	@set -e; for t in $(UNIT_TESTS); do echo "== $$t"; $(UNIT_RUNNER) $$t; done

# ---- process-level and integration tests against real servers.
# The Consul server the tests run, built from Go modules once into a cache
# outside the work tree (tests/consul_server.py; ~12 min cold).
consul:
	python3 tests/consul_server.py --build

# kube-apiserver v1.34.3 and the client-go candidate, the same way
# (tests/k8s_server.py, tests/k8s/go.mod).
k8s:
	python3 tests/k8s_server.py --build

integration: all
	python3 tests/run.py --build-servers $(TESTS)

# The container image (deploy/Dockerfile). BASE: the base image of both
# stages (default debian:12-slim; any local Debian 12 image where no registry
# can be reached), BUILD_BASE: the build stage's alone; NICE: the compile's
# priority.
IMAGE ?= elect:$(VERSION)
image:
	docker build --force-rm -f deploy/Dockerfile $(if $(BASE),--build-arg BASE=$(BASE)) \
	  $(if $(BUILD_BASE),--build-arg BUILD_BASE=$(BUILD_BASE)) \
	  $(if $(NICE),--build-arg NICE=$(NICE)) -t $(IMAGE) .

# The container tests alone (tests/integration/test_containers.py): they make
# their base image with debootstrap when missing, then the image on it.
check-containers: all
	python3 tests/run.py test_containers

# The warning set is an error in checks; the suite runs three times:
# plain, under valgrind (the tests marked fit for it), and as an ASan/UBSan
# build (all but the chaos run, which the plain pass already makes,
# test_k8s_server, which runs no elect, and test_containers, whose elect is
# the image's, built without sanitizers).
check:
	$(MAKE) all unit CFLAGS="$(CFLAGS) -Werror"
	$(MAKE) integration
	$(MAKE) valgrind
	$(MAKE) asan

valgrind: all $(UNIT_TESTS)
	$(MAKE) unit UNIT_RUNNER="valgrind -q --error-exitcode=1 --leak-check=full --errors-for-leak-kinds=definite,indirect"
	ELECT_VALGRIND=1 python3 tests/run.py --valgrind $(if $(TESTS),,--exclude test_containers) $(TESTS)

ASAN_FLAGS = -O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all
asan:
	$(MAKE) BUILD=build-asan BIN=bin-asan CFLAGS="$(ASAN_FLAGS) -Werror" LDFLAGS="-fsanitize=address,undefined" all unit
	ELECT_BIN=bin-asan python3 tests/run.py --asan $(if $(TESTS),,--exclude test_chaos --exclude test_k8s_server --exclude test_containers) $(TESTS)

bench: all
	python3 tests/bench.py $(BENCH)

chaos: all
	python3 tests/chaos.py --backend $(or $(BACKEND),file) --duration $(or $(DURATION),60) $(if $(SEED),--seed $(SEED))

demo: all
	./demo.sh --no-build

install: all
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(MANDIR)/man1
	install -m 0755 $(PROGS) $(DESTDIR)$(BINDIR)/
	install -m 0644 elector/elect.1 lockd/lockd.1 lockd/lockctl.1 $(DESTDIR)$(MANDIR)/man1/

uninstall:
	rm -f $(DESTDIR)$(BINDIR)/elect $(DESTDIR)$(BINDIR)/lockd $(DESTDIR)$(BINDIR)/lockctl
	rm -f $(DESTDIR)$(MANDIR)/man1/elect.1 $(DESTDIR)$(MANDIR)/man1/lockd.1 $(DESTDIR)$(MANDIR)/man1/lockctl.1

clean:
	rm -rf build build-asan bin bin-asan

-include $(shell find $(sort build build-asan $(BUILD)) -name '*.d' 2>/dev/null)
