#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include "common/clock.h"
#include "common/duration.h"

static const struct { const char *unit; int64_t ns; } units[] = {
	{ "ns", 1 }, { "us", 1000 }, { "ms", NS_PER_MS },
	{ "s", NS_PER_SEC }, { "m", 60 * NS_PER_SEC }, { "h", 3600 * NS_PER_SEC },
};

/* Longest unit name that s starts with ("ms" before "m"). */
static int match_unit(const char *s, int64_t *ns, size_t *len)
{
	size_t best = 0;

	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
		size_t l = strlen(units[i].unit);
		if (l > best && strncmp(s, units[i].unit, l) == 0 && !isalpha((unsigned char)s[l])) {
			best = l;
			*ns = units[i].ns;
		}
	}
	*len = best;
	return best ? 0 : -1;
}

int duration_parse(const char *s, int64_t *out)
{
	int64_t total = 0;

	if (s == NULL || *s == '\0')
		return -1;
	if (strcmp(s, "0") == 0) {
		*out = 0;
		return 0;
	}
	while (*s) {
		int64_t whole = 0, frac = 0, frac_div = 1, unit;
		__int128 add;
		size_t ulen;
		int digits = 0;

		while (isdigit((unsigned char)*s)) {
			if (whole > INT64_MAX / 10 - 10)
				return -1;
			whole = whole * 10 + (*s++ - '0');
			digits++;
		}
		if (*s == '.') {
			s++;
			while (isdigit((unsigned char)*s)) {
				if (frac_div < NS_PER_SEC) {
					frac = frac * 10 + (*s - '0');
					frac_div *= 10;
				}
				s++;
				digits++;
			}
		}
		if (digits == 0 || match_unit(s, &unit, &ulen) < 0)
			return -1;
		s += ulen;
		/* In 128 bits: frac (up to 9 digits) times an hour in ns does
		 * not fit in 64 ("0.123456789h"). */
		add = (__int128)whole * unit + (__int128)frac * unit / frac_div;
		if (add > (__int128)(INT64_MAX - total))
			return -1;
		total += (int64_t)add;
	}
	*out = total;
	return 0;
}

char *duration_format(int64_t ns, char *buf, size_t len)
{
	/* Negative as "-" + the magnitude: "%.3g" of a negative value below
	 * -1s would take the millisecond branch ("-1.23e+03ms"). */
	if (ns < 0 && ns > INT64_MIN && len > 1) {
		buf[0] = '-';
		duration_format(-ns, buf + 1, len - 1);
		return buf;
	}
	if (ns % NS_PER_SEC == 0)
		snprintf(buf, len, "%llds", (long long)(ns / NS_PER_SEC));
	else if (ns >= NS_PER_SEC)
		snprintf(buf, len, "%.3gs", (double)ns / NS_PER_SEC);
	else if (ns % NS_PER_MS == 0)
		snprintf(buf, len, "%lldms", (long long)(ns / NS_PER_MS));
	else
		snprintf(buf, len, "%.3gms", (double)ns / NS_PER_MS);
	return buf;
}
