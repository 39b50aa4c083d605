/*
 * shm_opt: strict number parsing for the command lines of every shmex
 * program (shmex, shmex-gateway, shmex-matcher, shmex-replay, shmex-query)
 * and the version string they all print.
 *
 * strtoull plus end-pointer and range checks: "12x", "", " 12", "+12",
 * "-1" and values out of range are usage errors, never silently clamped
 * or wrapped.
 */
#ifndef SHMEX_SHM_OPT_H
#define SHMEX_SHM_OPT_H

#include <stdint.h>
#include <stdio.h>

/* The tools' version, printed by --version next to SHM_LAYOUT_VERSION. */
#define SHMEX_VERSION "0.1.0"

/* Every program's --version line on f:
 *   "<name> <SHMEX_VERSION>, shared-memory layout <N> (signature <hex>)"
 * name as the program calls itself, e.g. "shmex-gateway (shmex)". */
void shm_opt_version(FILE *f, const char *name);

/* Parses a decimal unsigned integer (digits only) in [min, max].  Returns
 * 0, -EINVAL (s NULL, empty, not all digits) or -ERANGE (above UINT64_MAX
 * or outside [min, max]); *out is written only on success. */
int shm_opt_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out)
	__attribute__((warn_unused_result));

/* Same for uint32_t. */
int shm_opt_u32(const char *s, uint32_t min, uint32_t max, uint32_t *out)
	__attribute__((warn_unused_result));

#endif
