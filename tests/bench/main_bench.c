/*
 * shmex-bench: the benchmarks.  Each benchmark lives in its own file as
 * `int bench_<name>(int argc, char **argv)` and prints, as its last line,
 * `RESULT <name> key=value ...`.  Every benchmark measures its own baseline
 * in the same run and reports a ratio, because these machines are shared
 * and noisy.
 */
#include <stdio.h>
#include <string.h>

#include "shm/shm_opt.h"
#include "tests/bench/bench.h"

/* Weak: a benchmark whose file is not built yet reports so. */
int bench_ring(int argc, char **argv) __attribute__((weak));
int bench_match(int argc, char **argv) __attribute__((weak));
int bench_rcu(int argc, char **argv) __attribute__((weak));
int bench_e2e(int argc, char **argv) __attribute__((weak));
int bench_durability(int argc, char **argv) __attribute__((weak));
int bench_scaling(int argc, char **argv) __attribute__((weak));
int bench_fix(int argc, char **argv) __attribute__((weak));
int bench_anchors(int argc, char **argv) __attribute__((weak));

static const struct {
	const char *name;
	const char *what;
} benches[] = {
	{"ring", "shared-memory ring vs pipe: throughput, round trip"},
	{"match", "pure matching core vs naive book"},
	{"rcu", "reader table vs liburcu vs rwlock"},
	{"e2e", "TCP clients through gateways and matchers"},
	{"durability", "the e2e load with --sync fsync vs none; replay speed"},
	{"scaling", "matcher throughput vs shards, and vs one mutex around one book"},
	{"fix", "one FIX session pipelining orders, ack latency, XML baseline"},
	{"anchors", "the core vs QuantCup 2011 and Liquibook, same run"},
};

static int (*lookup(const char *name))(int, char **)
{
	if (!strcmp(name, "ring"))
		return bench_ring;
	if (!strcmp(name, "match"))
		return bench_match;
	if (!strcmp(name, "rcu"))
		return bench_rcu;
	if (!strcmp(name, "e2e"))
		return bench_e2e;
	if (!strcmp(name, "durability"))
		return bench_durability;
	if (!strcmp(name, "scaling"))
		return bench_scaling;
	if (!strcmp(name, "fix"))
		return bench_fix;
	if (!strcmp(name, "anchors"))
		return bench_anchors;
	return NULL;
}

static void usage(FILE *f)
{
	fprintf(f, "usage: shmex-bench NAME [options]   (NAME: all");
	for (size_t i = 0; i < sizeof(benches) / sizeof(benches[0]); i++)
		fprintf(f, ", %s", benches[i].name);
	fprintf(f, ")\n");
	for (size_t i = 0; i < sizeof(benches) / sizeof(benches[0]); i++)
		fprintf(f, "  %-10s %s\n", benches[i].name, benches[i].what);
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
		usage(stdout);
		return 0;
	}
	if (!strcmp(argv[1], "--version")) {
		shm_opt_version(stdout, "shmex-bench (shmex)");
		return 0;
	}
	if (!strcmp(argv[1], "all")) {
		int rc = 0;
		for (size_t i = 0; i < sizeof(benches) / sizeof(benches[0]); i++) {
			int (*fn)(int, char **) = lookup(benches[i].name);
			if (!fn) {
				printf("bench %s: not built yet\n", benches[i].name);
				continue;
			}
			char *args[] = {(char *)benches[i].name, NULL};
			rc |= fn(1, args);
			fflush(stdout);
		}
		return rc ? 1 : 0;
	}
	int (*fn)(int, char **) = lookup(argv[1]);
	if (!fn) {
		fprintf(stderr, "shmex-bench: unknown or unbuilt benchmark '%s'\n",
			argv[1]);
		usage(stderr);
		return 2;
	}
	return fn(argc - 1, argv + 1) ? 1 : 0;
}
