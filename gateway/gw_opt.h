/*
 * gw_opt: strict number parsing for the command lines of shmex and
 * shmex-gateway (strtoull plus end-pointer and range checks: "12x", "",
 * "-1" and values out of range are usage errors, never silently clamped).
 */
#ifndef SHMEX_GW_OPT_H
#define SHMEX_GW_OPT_H

#include <stdbool.h>
#include <stdint.h>

#define SHMEX_VERSION "0.1.0"

/* Parses a decimal unsigned integer in [min, max].  Returns 0 or -EINVAL
 * (syntax) / -ERANGE (out of range). */
int gw_opt_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out)
	__attribute__((warn_unused_result));

/* Same for uint32_t. */
int gw_opt_u32(const char *s, uint32_t min, uint32_t max, uint32_t *out)
	__attribute__((warn_unused_result));

#endif
