/*
 * bench_anchors: shmex's matching core against public engines, on their
 * own work, in the same run.
 *
 *   shmex-bench anchors [--replays N] [--runs R] [--lb-orders N] [--cpu C]
 *
 * 1. QuantCup 2011 (third_party/quantcup-2011): the contest's score_feed.h
 *    (35,759 messages, one symbol) replayed N times (default 200) through
 *    - the contest's naive reference engine (qc_reference.c), a new book
 *      per replay;
 *    - shmex's core behind the contest API (tests/qc.h), a new book per
 *      replay ("fresh": qc_ns_per_msg);
 *    - the same with ONE book for the whole benchmark ("steady":
 *      qc_steady_ns_per_msg), as a running matcher keeps it: between two
 *      replays the orders of the last one still open are cancelled
 *      (untimed; otherwise the book would grow without bound) and the
 *      QuantCup ids start again at 1.  The timed replays start only after
 *      warm-up replays have recycled every order record at least once
 *      (every pool has wrapped).
 *    One timer pair per replay, none per batch (the contest's score.c
 *    reads the clock every 10 messages, which costs more than shmex's
 *    core does).  The three run R times (default 3), interleaved; the best
 *    ns/msg of each is reported.  Every replay's executions (count,
 *    volume, and a sum over the parties and sizes) must equal the
 *    reference engine's: prices differ on purpose (shmex trades at the
 *    resting order's limit, QuantCup at the incoming order's).
 * 2. Liquibook (third_party/liquibook): its insert benchmark's stream of
 *    --lb-orders (default 1,000,000) alternating buys at 1880-1889 and
 *    sells at 1884-1893 through shmex's core (lb_inserts_per_s) and
 *    through Liquibook itself, the program shmex-bench-liquibook next to
 *    this one (liquibook_inserts_per_s: the faster of its book with depth
 *    and without).  Skipped, with a message and zeros, when that program
 *    was not built (no C++ compiler).
 *
 * --cpu C pins this process to CPU C (default: the CPU it starts on;
 * -1: no pinning).  Progress goes to stderr; the last stdout line is
 *   RESULT anchors qc_ns_per_msg=<n> qc_steady_ns_per_msg=<n>
 *     qc_reference_ns_per_msg=<n> ratio_vs_reference=<x>
 *     lb_inserts_per_s=<n> liquibook_inserts_per_s=<n> ratio_vs_liquibook=<x>
 * where ratio_vs_reference = qc_steady_ns_per_msg / qc_reference_ns_per_msg
 * (lower is better) and ratio_vs_liquibook = lb / liquibook (higher is
 * better).
 */
#include <errno.h>
#include <getopt.h>
#include <malloc.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "engine/eng_core.h"
#include "shm/shm_msg.h"
#include "shm/shm_settings.h"
#include "tests/bench/bench.h"
#include "tests/bench/qc_reference.h"
#include "tests/qc.h"

#include "tests/bench/third_party/quantcup-2011/score_feed.h"

int bench_anchors(int argc, char **argv);

#define FEED_LEN (sizeof(raw_feed) / sizeof(raw_feed[0]))

/* What a replay's executions add up to: equal between engines. */
struct tally {
	uint64_t n, volume, parties;
};

static struct tally tally_ref, tally_qc;

static void tally_add(struct tally *t, const t_execution *x)
{
	uint64_t k = 0;
	for (int i = 0; i < STRINGLEN && x->trader[i]; i++)
		k = k * 131 + (unsigned char)x->trader[i];
	k = (k * 2 + (uint64_t)x->side) * 1000003 + x->size;
	t->n++;
	t->volume += x->size;
	t->parties += k * UINT64_C(0x9e3779b97f4a7c15) >> 7;
}

void qcref_execution(t_execution exec)
{
	tally_add(&tally_ref, &exec);
}

static void qc_exec(void *ctx, const t_execution *x)
{
	(void)ctx;
	tally_add(&tally_qc, x);
}

/* The clock of one replay: this thread's CPU time, so that time spent
 * descheduled (the machines are shared) is not counted; the figures are
 * medians over the replays, which also drops replays that other
 * processes' cache traffic slowed. */
static uint64_t cpu_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* The contest's driver loop (score.c's feed()), one replay. */
static uint64_t replay_ref(void)
{
	uint64_t t0 = cpu_now_ns();
	for (size_t i = 0; i < FEED_LEN; i++) {
		if (raw_feed[i].price == 0)
			qcref_cancel(raw_feed[i].size);
		else
			qcref_limit(raw_feed[i]);
	}
	return cpu_now_ns() - t0;
}

static uint64_t replay_qc(struct qc *q)
{
	uint64_t t0 = cpu_now_ns();
	for (size_t i = 0; i < FEED_LEN; i++) {
		if (raw_feed[i].price == 0)
			qc_cancel(q, raw_feed[i].size);
		else
			qc_limit(q, &raw_feed[i]);
	}
	return cpu_now_ns() - t0;
}

/* The core's pools for the QuantCup runs: the contest's bound on live
 * orders, and as many again of finished ones (queryable history). */
static struct qc_cfg qc_pools = {
	.caps = {.symbols = 16,
		 .levels = 65536,
		 .orders = 2 * MAX_LIVE_ORDERS,
		 .fills = 4 * MAX_LIVE_ORDERS},
	.max_ids = MAX_LIVE_ORDERS,
	.window = SHM_DEFAULT_DONE_WINDOW,
};

static int check_tally(const char *what, unsigned replay)
{
	if (tally_qc.n == tally_ref.n && tally_qc.volume == tally_ref.volume &&
	    tally_qc.parties == tally_ref.parties)
		return 0;
	fprintf(stderr,
		"anchors: %s replay %u: executions differ from the reference engine: "
		"%llu/%llu reports, volume %llu/%llu\n",
		what, replay, (unsigned long long)tally_qc.n,
		(unsigned long long)tally_ref.n, (unsigned long long)tally_qc.volume,
		(unsigned long long)tally_ref.volume);
	return -1;
}

/* The median replay's ns per message (sorts t). */
static double median_ns_per_msg(uint64_t *t, unsigned n)
{
	return (double)bench_percentile(t, n, 50) / (double)FEED_LEN;
}

/* What is measured: the reference engine, shmex on a fresh book, on a
 * steady book trimmed to the done window, and on a steady book that is
 * never trimmed (every finished order stays until the pool is exhausted,
 * then the oldest is reused: the behaviour before the done window). */
enum { E_REF, E_FRESH, E_STEADY, E_STEADY_ALL, E_N };
static const char *const e_name[E_N] = {"reference", "fresh", "steady", "steady-all"};

struct qc_figures {
	double ns[E_N];         /* best median ns/msg over the runs */
	double warm_first[E_N]; /* steady books: the first warm-up replay */
	double warm_last[E_N];  /* and the last */
	unsigned warm[E_N];     /* warm-up replays */
};

/* One replay per engine, each its own function so that a profiler can
 * tell them apart (callgrind --toggle-collect=replay_steady). */
static __attribute__((noinline)) uint64_t replay_reference(void)
{
	qcref_init();
	tally_ref = (struct tally){0};
	uint64_t t = replay_ref();
	qcref_destroy();
	return t;
}

static __attribute__((noinline)) uint64_t replay_fresh(struct qc *q)
{
	return replay_qc(q);
}

static __attribute__((noinline)) uint64_t replay_steady(struct qc *q)
{
	return replay_qc(q);
}

static __attribute__((noinline)) uint64_t replay_steady_all(struct qc *q)
{
	return replay_qc(q);
}

/* One timed replay of engine e (q: its book); -1 on a wrong tally. */
static int64_t replay_one(int e, struct qc *q, unsigned j)
{
	uint64_t t;
	tally_qc = (struct tally){0};
	switch (e) {
	case E_REF:
		return (int64_t)replay_reference();
	case E_FRESH:
		if (qc_reset(q) != 0) {
			fprintf(stderr, "anchors: qc_reset failed\n");
			return -1;
		}
		t = replay_fresh(q);
		break;
	case E_STEADY:
		t = replay_steady(q);
		qc_session(q, 1);
		break;
	default:
		t = replay_steady_all(q);
		qc_session(q, 1);
		break;
	}
	return check_tally(e_name[e], j) ? -1 : (int64_t)t;
}

static int run_quantcup(unsigned replays, unsigned runs, int only, struct qc_figures *f)
{
	/* The reference engine's tally of one replay (the same every time). */
	replay_reference();
	struct tally want = tally_ref;

	/* The fresh book is one core re-made empty before each replay over
	 * the same memory, so its pages are resident: what is timed is
	 * matching on an empty book, not page faults. */
	struct qc *q[E_N] = {NULL};
	uint64_t *t = calloc(replays, sizeof(uint64_t));
	int rc = t ? 0 : -ENOMEM;
	for (int e = E_FRESH; e < E_N && !rc; e++) {
		struct qc_cfg cfg = qc_pools;
		if (e == E_STEADY_ALL)
			cfg.window = 0;
		rc = qc_open(&q[e], &cfg, qc_exec, NULL);
	}
	if (rc) {
		fprintf(stderr, "anchors: qc_open: %s\n", strerror(-rc));
		goto out_close;
	}
	tally_ref = want;
	/* Warm-up of the steady books until as many records were recycled
	 * as the pool holds (every pool has wrapped). */
	for (int e = E_STEADY; e < E_N; e++) {
		if (only >= 0 && only != e)
			continue;
		f->warm[e] = 0;
		while (eng_core_recycled(qc_core(q[e])) < qc_pools.caps.orders) {
			int64_t x = replay_one(e, q[e], f->warm[e]);
			if (x < 0)
				goto out_close;
			if (f->warm[e] == 0)
				f->warm_first[e] = (double)x / FEED_LEN;
			f->warm_last[e] = (double)x / FEED_LEN;
			f->warm[e]++;
		}
	}
	for (int e = 0; e < E_N; e++)
		f->ns[e] = 0;
	for (unsigned run = 0; run < runs; run++) {
		fprintf(stderr, "anchors: run %u:", run + 1);
		for (int e = 0; e < E_N; e++) {
			if (only >= 0 && only != e)
				continue;
			for (unsigned j = 0; j < replays; j++) {
				int64_t x = replay_one(e, q[e], j);
				if (x < 0)
					goto out_close;
				t[j] = (uint64_t)x;
			}
			double ns = median_ns_per_msg(t, replays);
			fprintf(stderr, " %s %.1f", e_name[e], ns);
			if (run == 0 || ns < f->ns[e])
				f->ns[e] = ns;
		}
		fprintf(stderr, " ns/msg\n");
	}
	for (int e = E_STEADY; e < E_N; e++) {
		if (only >= 0 && only != e)
			continue;
		struct eng_core_stats cs;
		eng_core_stats(qc_core(q[e]), &cs);
		fprintf(stderr,
			"anchors: %s book: %u warm-up replays (first %.1f ns/msg, last "
			"%.1f), %llu records recycled, %u done, %u never used\n",
			e_name[e], f->warm[e], f->warm_first[e], f->warm_last[e],
			(unsigned long long)cs.orders_recycled, cs.orders_done,
			cs.orders_unused);
	}
	free(t);
	for (int e = 0; e < E_N; e++)
		qc_close(q[e]);
	return 0;

out_close:
	free(t);
	for (int e = 0; e < E_N; e++)
		qc_close(q[e]);
	return -1;
}

/* Liquibook's stream through the core: best inserts/s of `runs`. */
static int run_lb_shmex(unsigned n, unsigned seed, unsigned runs, double *best)
{
	struct eng_req *reqs = calloc(n, sizeof(*reqs));
	if (!reqs)
		return -1;
	srand(seed);
	for (unsigned i = 0; i < n; i++) {
		bool buy = (i % 2) == 0;
		int64_t delta = buy ? 1880 : 1884;
		reqs[i].price = (rand() % 10) + delta;
		reqs[i].qty = ((rand() % 10) + 1) * 100;
		reqs[i].side = buy ? SHM_SIDE_BUY : SHM_SIDE_SELL;
		reqs[i].tif = SHM_TIF_GTC;
		reqs[i].account = 1;
		reqs[i].seq = reqs[i].time_ns = i + 1;
	}
	/* The stream's far prices never trade: about half the orders stay. */
	uint32_t cap = 1024;
	while (cap < n)
		cap <<= 1;
	struct eng_core_cfg cfg = {
		.caps = {.symbols = 1, .levels = 1024, .orders = cap, .fills = 2 * cap},
		.nshards = 1,
	};
	size_t bytes = eng_core_bytes(&cfg);
	void *mem = aligned_alloc(64, (bytes + 63) & ~(size_t)63);
	if (!mem) {
		free(reqs);
		return -1;
	}
	*best = 0;
	int rc = 0;
	for (unsigned r = 0; r < runs && !rc; r++) {
		struct eng_core *b;
		uint32_t sym;
		rc = eng_core_init(&b, mem, bytes, &cfg, NULL, NULL);
		if (rc)
			break;
		rc = eng_core_symbol_add(b, "LB", 2, &sym);
		eng_core_reclaim(b, UINT64_MAX);
		/* As a matcher: quotes published once per round of requests. */
		eng_core_set_batched(b, true);
		uint64_t t0 = cpu_now_ns(), id;
		for (unsigned i = 0; i < n && !rc; i++) {
			rc = eng_core_submit(b, &reqs[i], &id);
			if (i % SHM_DEFAULT_BATCH == SHM_DEFAULT_BATCH - 1)
				eng_core_publish(b);
		}
		eng_core_publish(b);
		double rate = (double)n * 1e9 / (double)(cpu_now_ns() - t0);
		struct eng_core_stats st;
		eng_core_stats(b, &st);
		if (r == runs - 1)
			fprintf(stderr,
				"anchors: liquibook stream through shmex: %u resting\n",
				st.orders_live);
		eng_core_destroy(b);
		if (rate > *best)
			*best = rate;
	}
	if (rc)
		fprintf(stderr, "anchors: liquibook stream through shmex: error %d\n",
			rc);
	free(mem);
	free(reqs);
	return rc ? -1 : 0;
}

/* Runs shmex-bench-liquibook; 0 and the rate, 1 when it is not built. */
static int run_lb_liquibook(unsigned n, unsigned seed, unsigned runs, double *rate)
{
	char path[4096];
	*rate = 0;
	if (bench_sibling(path, sizeof(path), "shmex-bench-liquibook") != 0 ||
	    access(path, X_OK) != 0)
		return 1;
	char cmd[4200];
	snprintf(cmd, sizeof(cmd), "'%s' %u %u %u", path, n, seed, runs);
	FILE *p = popen(cmd, "r");
	if (!p)
		return -1;
	char line[256];
	double depth = 0, nodepth = 0;
	unsigned long remain = 0;
	int got = 0;
	while (fgets(line, sizeof(line), p))
		if (sscanf(line,
			   "liquibook depth_inserts_per_s=%lf nodepth_inserts_per_s=%lf "
			   "remain=%lu",
			   &depth, &nodepth, &remain) == 3)
			got = 1;
	int st = pclose(p);
	if (!got || st != 0) {
		fprintf(stderr, "anchors: %s failed (status %d)\n", path, st);
		return -1;
	}
	fprintf(stderr,
		"anchors: liquibook: %.0f inserts/s with depth, %.0f without; %lu resting\n",
		depth, nodepth, remain);
	*rate = depth > nodepth ? depth : nodepth;
	return 0;
}

static unsigned parse_count(const char *opt, const char *s, unsigned min)
{
	char *end;
	errno = 0;
	long long v = strtoll(s, &end, 10);
	if (errno || *end || v < min || v > 100000000) {
		fprintf(stderr, "anchors: %s: bad number '%s'\n", opt, s);
		exit(2);
	}
	return (unsigned)v;
}

int bench_anchors(int argc, char **argv)
{
	unsigned replays = 200, runs = 3, lb_orders = 1000000, seed = 3;
	int cpu = sched_getcpu(), only = -1;
	static const struct option opts[] = {
		{"replays", required_argument, NULL, 'n'},
		{"runs", required_argument, NULL, 'r'},
		{"lb-orders", required_argument, NULL, 'l'},
		{"cpu", required_argument, NULL, 'c'},
		{"window", required_argument, NULL, 'w'},
		{"only", required_argument, NULL, 'o'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	int c;
	optind = 1;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'n':
			replays = parse_count("--replays", optarg, 1);
			break;
		case 'r':
			runs = parse_count("--runs", optarg, 1);
			break;
		case 'l':
			lb_orders = parse_count("--lb-orders", optarg, 2);
			break;
		case 'c':
			cpu = strcmp(optarg, "-1") == 0
				      ? -1
				      : (int)parse_count("--cpu", optarg, 0);
			break;
		case 'o':
			for (only = 0; only < E_N && strcmp(optarg, e_name[only]); only++)
				;
			if (only == E_N && strcmp(optarg, "lb") != 0) {
				fprintf(stderr,
					"anchors: --only: reference, fresh, steady, "
					"steady-all or lb\n");
				return 2;
			}
			break;
		case 'w':
			qc_pools.window = parse_count("--window", optarg, 0);
			break;
		case 'h':
			printf("usage: shmex-bench anchors [--replays N] [--runs R] "
			       "[--lb-orders N] [--cpu C|-1] [--window N]\n"
			       "       [--only reference|fresh|steady|steady-all|lb]\n");
			return 0;
		default:
			return 2;
		}
	}
	if (cpu >= 0) {
		cpu_set_t set;
		CPU_ZERO(&set);
		CPU_SET(cpu, &set);
		if (sched_setaffinity(0, sizeof(set), &set) != 0)
			fprintf(stderr, "anchors: cannot pin to CPU %d: %s\n", cpu,
				strerror(errno));
		else
			fprintf(stderr, "anchors: pinned to CPU %d\n", cpu);
	}
	fprintf(stderr, "anchors: QuantCup feed: %zu messages x %u replays x %u runs\n",
		FEED_LEN, replays, runs);
	/* Keep freed arrays in the heap (a reset core's calloc reuses them,
	 * resident) instead of returning them to the kernel. */
	mallopt(M_MMAP_THRESHOLD, 32 << 20);
	mallopt(M_TRIM_THRESHOLD, 256 << 20);
	fprintf(stderr,
		"anchors: done window %u finished orders (steady), none "
		"(steady-all)\n",
		qc_pools.window);
	struct qc_figures f = {0};
	double lb = 0, liquibook = 0;
	if (only == E_N) { /* --only lb: shmex on Liquibook's stream, for profiling */
		if (run_lb_shmex(lb_orders, seed, runs, &lb) != 0)
			return 1;
		fprintf(stderr, "anchors: shmex on liquibook's stream: %.0f inserts/s\n",
			lb);
		return 0;
	}
	if (run_quantcup(replays, runs, only, &f) != 0)
		return 1;
	if (only >= 0)
		return 0;

	if (run_lb_shmex(lb_orders, seed, runs, &lb) != 0)
		return 1;
	int lrc = run_lb_liquibook(lb_orders, seed, runs, &liquibook);
	if (lrc < 0)
		return 1;
	if (lrc > 0)
		fprintf(stderr,
			"anchors: shmex-bench-liquibook was not built (needs a C++ "
			"compiler): Liquibook skipped\n");
	printf("RESULT anchors qc_ns_per_msg=%.1f qc_steady_ns_per_msg=%.1f "
	       "qc_reference_ns_per_msg=%.1f ratio_vs_reference=%.3f lb_inserts_per_s=%.0f "
	       "liquibook_inserts_per_s=%.0f ratio_vs_liquibook=%.2f\n",
	       f.ns[E_FRESH], f.ns[E_STEADY], f.ns[E_REF], f.ns[E_STEADY] / f.ns[E_REF],
	       lb, liquibook, liquibook > 0 ? lb / liquibook : 0.0);
	return 0;
}
