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

/* The path of program `prog` next to shmex-bench into out: 0 or -1. */
int bench_sibling(char *out, size_t len, const char *prog);

/*
 * A new scratch directory for data directories into out:
 * $SHMEX_BENCH_DIR, else $TMPDIR, else /var/tmp, then
 * shmex-bench-<tag>-XXXXXX.  Says on stderr when it is on tmpfs (where
 * fdatasync costs nothing, so durable figures are flattered).  0 or -1.
 */
int bench_scratch_dir(char *out, size_t len, const char *tag);
/* Removes a directory tree made by bench_scratch_dir. */
void bench_remove_dir(const char *dir);

#endif
