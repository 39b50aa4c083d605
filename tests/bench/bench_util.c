/*
 * Shared helpers of the benchmarks (see bench.h).
 */
#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/vfs.h>
#include <unistd.h>

#include "tests/bench/bench.h"

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

uint64_t bench_percentile(uint64_t *v, size_t n, double p)
{
	if (n == 0)
		return 0;
	qsort(v, n, sizeof(*v), cmp_u64);
	size_t i = (size_t)(p / 100.0 * (double)(n - 1) + 0.5);
	return v[i < n ? i : n - 1];
}

int bench_sibling(char *out, size_t len, const char *prog)
{
	if (len < 2)
		return -1;
	ssize_t n = readlink("/proc/self/exe", out, len - 1);
	if (n <= 0)
		return -1;
	out[n] = 0;
	char *slash = strrchr(out, '/');
	size_t at = slash ? (size_t)(slash + 1 - out) : 0;
	if (at + strlen(prog) + 1 > len)
		return -1;
	strcpy(out + at, prog);
	return 0;
}

#define TMPFS_MAGIC_ 0x01021994

int bench_scratch_dir(char *out, size_t len, const char *tag)
{
	const char *root = getenv("SHMEX_BENCH_DIR");
	if (!root || !*root)
		root = getenv("TMPDIR");
	if (!root || !*root)
		root = "/var/tmp";
	int n = snprintf(out, len, "%s/shmex-bench-%s-XXXXXX", root, tag);
	if (n < 0 || (size_t)n >= len)
		return -1;
	if (!mkdtemp(out)) {
		fprintf(stderr, "bench: mkdtemp %s: %s\n", out, strerror(errno));
		return -1;
	}
	struct statfs fs;
	if (statfs(out, &fs) == 0 && fs.f_type == TMPFS_MAGIC_)
		fprintf(stderr,
			"bench: %s is on tmpfs: fdatasync costs nothing there "
			"(set SHMEX_BENCH_DIR to a disk)\n",
			out);
	return 0;
}

static int remove_one(const char *path, const struct stat *st, int flag, struct FTW *f)
{
	(void)st;
	(void)flag;
	(void)f;
	if (remove(path) != 0)
		fprintf(stderr, "bench: remove %s: %s\n", path, strerror(errno));
	return 0;
}

void bench_remove_dir(const char *dir)
{
	nftw(dir, remove_one, 16, FTW_DEPTH | FTW_PHYS);
}
