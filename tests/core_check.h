/*
 * core_check: the matching core's invariant checker, for tests and
 * benchmarks (tests/support_core_check.c).
 */
#ifndef SHMEX_TESTS_CORE_CHECK_H
#define SHMEX_TESTS_CORE_CHECK_H

#include <stddef.h>

#include "engine/eng_core.h"

/*
 * Checks every invariant of the book (list order, aggregates, counts,
 * open + executed + cancelled == amount, pool accounting).  Returns 0 or
 * SHMEX_EINTERNAL, with what failed in why[].
 */
int eng_core_check(const struct eng_core *b, char *why, size_t len)
	__attribute__((warn_unused_result));

#endif
