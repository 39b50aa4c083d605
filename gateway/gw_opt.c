/*
 * gw_opt: command-line number parsing (see gw_opt.h).  Only digits are
 * accepted: strtoull alone would take leading blanks, a sign ("-1" wraps
 * to a huge value) and trailing junk.
 */
#include "gateway/gw_opt.h"

#include <errno.h>
#include <stdlib.h>

int gw_opt_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
	if (!s || *s < '0' || *s > '9')
		return -EINVAL;
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (*end != '\0')
		return -EINVAL;
	if (errno == ERANGE || v < min || v > max)
		return -ERANGE;
	*out = v;
	return 0;
}

int gw_opt_u32(const char *s, uint32_t min, uint32_t max, uint32_t *out)
{
	uint64_t v;
	int rc = gw_opt_u64(s, min, max, &v);
	if (rc == 0)
		*out = (uint32_t)v;
	return rc;
}
