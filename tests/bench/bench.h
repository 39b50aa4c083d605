/*
 * Shared helpers of the benchmarks (tests/bench/).
 */
#ifndef SHMEX_TESTS_BENCH_BENCH_H
#define SHMEX_TESTS_BENCH_BENCH_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

static inline uint64_t bench_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Sorts v in place and returns the p-th percentile (0 <= p <= 100). */
uint64_t bench_percentile(uint64_t *v, size_t n, double p);

#endif
