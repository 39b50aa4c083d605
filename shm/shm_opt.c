/*
 * shm_opt: command-line number parsing (contract in shm_opt.h).
 *
 * Why not strtoull alone: it takes leading blanks, a sign ("-1" wraps to
 * a huge value) and stops silently at trailing junk.  So the first
 * character must be a digit, the end pointer must reach the terminator,
 * and overflow (errno ERANGE) is an error like any other out-of-range
 * value.  Stateless and reentrant apart from errno.
 */
#include "shm/shm_opt.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>

#include "shm/shm_region.h"

void shm_opt_version(FILE *f, const char *name)
{
	fprintf(f, "%s %s, shared-memory layout %u (signature %016" PRIx64 ")\n",
		name, SHMEX_VERSION, SHM_LAYOUT_VERSION, shm_layout_signature());
}

int shm_opt_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out)
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

int shm_opt_u32(const char *s, uint32_t min, uint32_t max, uint32_t *out)
{
	uint64_t v;
	int rc = shm_opt_u64(s, min, max, &v);
	if (rc == 0)
		*out = (uint32_t)v;
	return rc;
}
