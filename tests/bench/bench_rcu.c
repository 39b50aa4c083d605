/*
 * bench_rcu: what a read-side section costs, and what readers cost the
 * writer.
 *
 * Part (a), read side: enter+leave of shmex's cross-process reader table
 * (shm_readers_inline.h) against, in the same run, liburcu's own memb
 * flavour (threads of one process, inline read lock) and a process-shared
 * pthread rwlock (rdlock+unlock).  Also measured, to document the design
 * choices in docs/concurrency.md: the bare Dekker "store, full fence,
 * release store" the protocol minimally needs; each primitive with two
 * reading processes (or threads) at once; the reader table while a writer
 * process advances the epoch and scans; and the asymmetric alternative
 * (readers with a compiler barrier only, writer paying
 * membarrier(MEMBARRIER_CMD_GLOBAL_EXPEDITED) per grace period).
 *
 * Part (b), write side: matcher throughput with no reader, with one reader
 * process reading the book continuously, and with the same reader behind a
 * rwlock, as ratios (bench_rcu_writer below).
 *
 * Each figure is the median of several runs; the ratios compare figures
 * measured in this same run.
 */
#define _LGPL_SOURCE /* liburcu's inline read lock, like our inline enter */

#include <errno.h>
#include <getopt.h>
#include <linux/membarrier.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <urcu/urcu-memb.h>

#include "engine/eng_book.h"
#include "shm/shm_error.h"
#include "shm/shm_msg.h"
#include "shm/shm_read.h"
#include "shm/shm_readers.h"
#include "shm/shm_readers_inline.h"
#include "tests/bench/bench.h"

int bench_rcu(int argc, char **argv);

#define RUNS 5

struct rcu_opts {
	uint64_t iters;   /* enter+leave pairs per run */
	char inst[40];
};

/* Shared between the parent and its measuring children. */
struct rcu_shared {
	pthread_rwlock_t lock;  /* part (a): default kind */
	pthread_rwlock_t wlock; /* part (b): writer-preferring */
	uint64_t go;       /* W: parent, release; R: children, acquire */
	uint64_t stop;     /* W: parent, release; R: children, acquire */
	uint64_t ready;    /* W: children, fetch_add; R: parent */
	uint64_t ns[4];    /* W: child i; R: parent after waitpid */
	uint64_t sink;
};

static struct rcu_shared *shared_map(void)
{
	struct rcu_shared *s = mmap(NULL, sizeof(*s), PROT_READ | PROT_WRITE,
				    MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (s == MAP_FAILED)
		return NULL;
	memset(s, 0, sizeof(*s));
	pthread_rwlockattr_t a;
	pthread_rwlockattr_init(&a);
	pthread_rwlockattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
	pthread_rwlock_init(&s->lock, &a);
	pthread_rwlockattr_setkind_np(&a, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
	pthread_rwlock_init(&s->wlock, &a);
	pthread_rwlockattr_destroy(&a);
	return s;
}

static double median(double *v, int n)
{
	for (int i = 1; i < n; i++)
		for (int j = i; j > 0 && v[j - 1] > v[j]; j--) {
			double t = v[j];
			v[j] = v[j - 1];
			v[j - 1] = t;
		}
	return v[n / 2];
}

/* --- the measured loops (ns per enter+leave) ------------------------------ */

static double loop_shmex(struct shm_reader *r, uint64_t n)
{
	uint64_t t0 = bench_now_ns();
	for (uint64_t i = 0; i < n; i++) {
		if (shm_readers_enter_inline(r))
			return NAN;
		fence_compiler();
		if (shm_readers_leave_inline(r))
			return NAN;
	}
	return (double)(bench_now_ns() - t0) / (double)n;
}

/* The protocol's minimum: store the epoch, full fence, release store. */
static double loop_fence(uint64_t *slot, const uint64_t *gp, uint64_t n)
{
	uint64_t t0 = bench_now_ns();
	for (uint64_t i = 0; i < n; i++) {
		store_relaxed(slot, load_acquire(gp));
		fence_full();
		fence_compiler();
		store_release(slot, 0);
	}
	return (double)(bench_now_ns() - t0) / (double)n;
}

/* The asymmetric variant's read side: the writer's membarrier replaces the
 * reader's fence, so a compiler barrier is all that is left. */
static double loop_asym(uint64_t *slot, const uint64_t *gp, uint64_t n)
{
	uint64_t t0 = bench_now_ns();
	for (uint64_t i = 0; i < n; i++) {
		store_relaxed(slot, load_relaxed(gp));
		fence_compiler();
		store_relaxed(slot, 0);
		fence_compiler();
	}
	return (double)(bench_now_ns() - t0) / (double)n;
}

static double loop_urcu(uint64_t n)
{
	uint64_t t0 = bench_now_ns();
	for (uint64_t i = 0; i < n; i++) {
		urcu_memb_read_lock();
		fence_compiler();
		urcu_memb_read_unlock();
	}
	return (double)(bench_now_ns() - t0) / (double)n;
}

static double loop_rwlock(pthread_rwlock_t *l, uint64_t n)
{
	uint64_t t0 = bench_now_ns();
	for (uint64_t i = 0; i < n; i++) {
		if (pthread_rwlock_rdlock(l))
			return NAN;
		fence_compiler();
		pthread_rwlock_unlock(l);
	}
	return (double)(bench_now_ns() - t0) / (double)n;
}

/* --- single reader ---------------------------------------------------------- */

static int measure_shmex(const struct rcu_opts *o, struct shm_readers *rd,
			 double *out)
{
	struct shm_reader r;
	int rc = shm_readers_register(rd, &r);
	if (rc) {
		fprintf(stderr, "rcu: register: %s\n", shmex_strerror(rc));
		return rc;
	}
	double v[RUNS];
	(void)loop_shmex(&r, o->iters / 10);
	for (int i = 0; i < RUNS; i++)
		v[i] = loop_shmex(&r, o->iters);
	*out = median(v, RUNS);
	return shm_readers_unregister(&r);
}

static void measure_fence(const struct rcu_opts *o, struct shm_readers *w,
			  double *fence, double *asym)
{
	double v[RUNS], a[RUNS];
	/* A slot-like word on its own cache line. */
	static uint64_t slot[8] shm_aligned;
	for (int i = 0; i < RUNS; i++) {
		v[i] = loop_fence(&slot[0], &w->hdr->epoch, o->iters);
		a[i] = loop_asym(&slot[0], &w->hdr->epoch, o->iters);
	}
	*fence = median(v, RUNS);
	*asym = median(a, RUNS);
}

static double measure_urcu(const struct rcu_opts *o)
{
	double v[RUNS];
	urcu_memb_register_thread();
	(void)loop_urcu(o->iters / 10);
	for (int i = 0; i < RUNS; i++)
		v[i] = loop_urcu(o->iters);
	urcu_memb_unregister_thread();
	return median(v, RUNS);
}

static double measure_rwlock(const struct rcu_opts *o, struct rcu_shared *s)
{
	double v[RUNS];
	(void)loop_rwlock(&s->lock, o->iters / 10);
	for (int i = 0; i < RUNS; i++)
		v[i] = loop_rwlock(&s->lock, o->iters);
	return median(v, RUNS);
}

/* --- two readers at once ------------------------------------------------------ */

enum kind { K_SHMEX, K_RWLOCK, K_URCU };

struct two_arg {
	const struct rcu_opts *o;
	struct rcu_shared *s;
	enum kind k;
	int idx;
};

static void wait_go(struct rcu_shared *s)
{
	fetch_add_acq_rel(&s->ready, 1);
	while (!load_acquire(&s->go))
		cpu_relax();
}

/* Body of one concurrent reader (a child process or a thread). */
static void *two_body(void *p)
{
	struct two_arg *a = p;
	double ns = NAN;
	if (a->k == K_SHMEX) {
		struct shm_readers t;
		struct shm_reader r;
		if (shm_readers_attach(&t, a->o->inst, 0, SHM_READERS_READER) == 0) {
			if (shm_readers_register(&t, &r) == 0) {
				wait_go(a->s);
				ns = loop_shmex(&r, a->o->iters);
				if (shm_readers_unregister(&r))
					ns = NAN;
			}
			shm_readers_detach(&t);
		}
	} else if (a->k == K_RWLOCK) {
		wait_go(a->s);
		ns = loop_rwlock(&a->s->lock, a->o->iters);
	} else {
		urcu_memb_register_thread();
		wait_go(a->s);
		ns = loop_urcu(a->o->iters);
		urcu_memb_unregister_thread();
	}
	a->s->ns[a->idx] = isnan(ns) ? 0 : (uint64_t)(ns * 1000.0);
	return NULL;
}

/* Two readers at once (processes, or threads for liburcu); returns the
 * mean ns per enter+leave of one reader. */
static double measure_two(const struct rcu_opts *o, struct rcu_shared *s,
			  enum kind k)
{
	struct two_arg args[2];
	pid_t pid[2] = {-1, -1};
	pthread_t th[2];
	s->go = 0;
	s->ready = 0;
	for (int i = 0; i < 2; i++) {
		args[i] = (struct two_arg){o, s, k, i};
		s->ns[i] = 0;
		if (k == K_URCU) {
			if (pthread_create(&th[i], NULL, two_body, &args[i]))
				return NAN;
			continue;
		}
		pid[i] = fork();
		if (pid[i] < 0)
			return NAN;
		if (pid[i] == 0) {
			two_body(&args[i]);
			_exit(0);
		}
	}
	uint64_t deadline = bench_now_ns() + 10000000000ull;
	while (load_acquire(&s->ready) < 2 && bench_now_ns() < deadline)
		usleep(100);
	store_release(&s->go, 1);
	for (int i = 0; i < 2; i++) {
		if (k == K_URCU)
			pthread_join(th[i], NULL);
		else
			waitpid(pid[i], NULL, 0);
	}
	if (!s->ns[0] || !s->ns[1])
		return NAN;
	return (double)(s->ns[0] + s->ns[1]) / 2000.0;
}

/* --- the reader table while a writer advances and scans ---------------------- */

static long membarrier_call(int cmd)
{
	return syscall(__NR_membarrier, cmd, 0, 0);
}

/* Child: the writer role (advance + scan as fast as possible, or advance +
 * membarrier when asym).  Reports ns per grace period in ns[2]. */
static void writer_child(const struct rcu_opts *o, struct rcu_shared *s,
			 bool asym)
{
	struct shm_readers w;
	uint64_t n = 0;
	if (shm_readers_attach(&w, o->inst, 0, SHM_READERS_WRITER) != 0)
		_exit(1);
	fetch_add_acq_rel(&s->ready, 1);
	while (!load_acquire(&s->go))
		cpu_relax();
	uint64_t t0 = bench_now_ns();
	while (!load_acquire(&s->stop)) {
		(void)shm_readers_advance(&w);
		if (asym) {
			if (membarrier_call(MEMBARRIER_CMD_GLOBAL_EXPEDITED) != 0)
				_exit(2);
		} else {
			s->sink += shm_readers_safe_epoch(&w);
		}
		n++;
	}
	s->ns[2] = n ? (bench_now_ns() - t0) / n : 0;
	shm_readers_detach(&w);
	_exit(0);
}

/* Reader table (or the asymmetric variant) with a writer process running
 * concurrently: *read = ns per enter+leave, *grace = writer ns per
 * advance+scan (or advance+membarrier). */
static int measure_with_writer(const struct rcu_opts *o, struct rcu_shared *s,
			       struct shm_readers *creator, struct shm_readers *rd,
			       bool asym, double *read, double *grace)
{
	*read = *grace = NAN;
	if (asym && membarrier_call(MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED) != 0) {
		fprintf(stderr, "rcu: membarrier global expedited unavailable: %s\n",
			strerror(errno));
		return 0;
	}
	/* Hand the writer role to the child for the duration. */
	uint64_t me = creator->ident;
	store_relaxed(&creator->hdr->writer, 0);
	s->go = s->stop = s->ready = 0;
	pid_t pid = fork();
	if (pid < 0)
		return -errno;
	if (pid == 0)
		writer_child(o, s, asym);
	uint64_t deadline = bench_now_ns() + 10000000000ull;
	while (load_acquire(&s->ready) < 1 && bench_now_ns() < deadline)
		usleep(100);
	struct shm_reader r;
	int rc = shm_readers_register(rd, &r);
	store_release(&s->go, 1);
	if (rc == 0) {
		static uint64_t slot[8] shm_aligned;
		double v[RUNS];
		for (int i = 0; i < RUNS; i++)
			v[i] = asym ? loop_asym(&slot[0], &rd->hdr->epoch, o->iters)
				    : loop_shmex(&r, o->iters);
		*read = median(v, RUNS);
		rc = shm_readers_unregister(&r);
	}
	store_release(&s->stop, 1);
	int st;
	waitpid(pid, &st, 0);
	if (WIFEXITED(st) && WEXITSTATUS(st) == 0)
		*grace = (double)s->ns[2];
	store_relaxed(&creator->hdr->writer, me);
	/* The child advanced the shared epoch: continue from it. */
	creator->epoch = load_relaxed(&creator->hdr->epoch);
	return rc;
}

/* --- part (b): matcher throughput with readers ------------------------------- */

/*
 * The writer is the matching core (engine/eng_book) on a book in a real
 * book region, driven by a synthetic flow (limit orders of one size at 21
 * prices around a mid on both sides, so about half of them trade, and
 * cancels that keep some 200 orders resting), with a grace period (advance,
 * poll, reclaim) every 8 requests as the matcher does.  Three configurations,
 * each run RUNS_B times, interleaved:
 *   none    no reader;
 *   rcu     one reader process reading depth, top of book and an order's
 *           status in a loop through shm_read (reader table + seqcounts);
 *   rwlock  the same reader and writer, but the writer holds a
 *           process-shared rwlock (writer-preferring, so it is not starved)
 *           around each request and the reader around each read: the
 *           classic "locked book" design.
 * ratio = requests/s with the reader / requests/s without.
 */
#define RUNS_B 3
#define B_QTY 10
#define B_MID 100000
#define B_LIVE 200

enum b_mode { B_NONE, B_RCU, B_RWLOCK };

struct bwriter {
	struct shm_region reg;
	struct eng_book *b;
	struct shm_readers *w;
	uint32_t sym;
	uint64_t x, seq;
	uint64_t live[B_LIVE + 1], owner[B_LIVE + 1];
	size_t nlive;
};

static int bwriter_init(struct bwriter *bw, const char *inst, struct shm_readers *w)
{
	struct eng_book_cfg cfg = {.caps = {4, 1024, 16384, 1u << 16},
				   .shard = 0, .nshards = 1};
	uint64_t caps[6] = {4, 1024, 16384, 1u << 16, 0, 1};
	size_t bytes = eng_book_bytes(&cfg);
	memset(bw, 0, sizeof(*bw));
	bw->w = w;
	bw->x = 42;
	int rc = shm_region_create(&bw->reg, inst, "book.0", SHM_KIND_BOOK, bytes,
				   caps, 6, 0600);
	if (rc)
		return rc;
	rc = eng_book_init(&bw->b, shm_region_body(&bw->reg),
			   shm_region_body_size(&bw->reg), &cfg, NULL, NULL);
	if (rc)
		goto out_region;
	rc = eng_book_symbol_add(bw->b, "BENCH", 5, &bw->sym);
	if (rc)
		goto out_book;
	shm_region_publish(&bw->reg);
	return 0;

out_book:
	eng_book_destroy(bw->b);
out_region:
	shm_region_detach(&bw->reg);
	(void)shm_region_unlink(inst, "book.0");
	return rc;
}

static void bwriter_free(struct bwriter *bw, const char *inst)
{
	eng_book_destroy(bw->b);
	shm_region_detach(&bw->reg);
	if (shm_region_unlink(inst, "book.0"))
		fprintf(stderr, "rcu: unlink book.0 failed\n");
}

static void bwriter_step(struct bwriter *bw)
{
	bw->x = bw->x * 6364136223846793005ull + 1442695040888963407ull;
	uint32_t r = (uint32_t)(bw->x >> 33);
	struct eng_req q;
	memset(&q, 0, sizeof(q));
	q.seq = ++bw->seq;
	q.time_ns = bw->seq;
	q.epoch = shm_readers_epoch(bw->w);
	q.sym = bw->sym;
	if (bw->nlive > 0 && ((r >> 20) % 4 == 0 || bw->nlive >= B_LIVE)) {
		size_t k = (r >> 2) % bw->nlive;
		q.account = bw->owner[k];
		q.order_id = bw->live[k];
		(void)!eng_book_cancel(bw->b, &q); /* filled or open: both fine */
		bw->live[k] = bw->live[--bw->nlive];
		bw->owner[k] = bw->owner[bw->nlive];
	} else {
		uint64_t id;
		q.account = 1 + (r >> 8) % 4;
		q.side = (uint8_t)(r & 1);
		q.tif = SHM_TIF_GTC;
		q.price = B_MID + (int64_t)((r >> 4) % 21) - 10;
		q.qty = B_QTY;
		if (eng_book_submit(bw->b, &q, &id) == 0) {
			bw->owner[bw->nlive] = q.account;
			bw->live[bw->nlive++] = id;
		}
	}
	if (bw->seq % 8 == 0) {
		(void)shm_readers_advance(bw->w);
		eng_book_reclaim(bw->b, shm_readers_safe_epoch(bw->w));
	}
}

/* The reader process: reads until told to stop; reports reads in ns[3]. */
static void breader(const char *inst, struct rcu_shared *s, bool lock)
{
	struct shm_read rd;
	struct shm_read_level bids[10], asks[10];
	struct shm_read_depth d = {.bids = bids, .asks = asks, .max = 10};
	struct shm_read_top t;
	struct shm_read_order o;
	struct shm_read_fill f[4];
	size_t nf;
	uint64_t n = 0, bad = 0, x = 7;
	if (shm_read_open(&rd, inst, 0) != 0)
		_exit(1);
	fetch_add_acq_rel(&s->ready, 1);
	while (!load_acquire(&s->stop)) {
		x = x * 6364136223846793005ull + 1442695040888963407ull;
		if (lock && pthread_rwlock_rdlock(&s->wlock))
			_exit(2);
		int rc = shm_read_depth(&rd, 0, &d);
		if (rc == 0)
			rc = shm_read_top(&rd, 0, &t);
		if (rc == 0) {
			rc = shm_read_order(&rd, (x >> 40) % 20000 + 1, &o, f, 4, &nf);
			if (rc == SHMEX_ENOORDER)
				rc = 0;
		}
		if (lock)
			pthread_rwlock_unlock(&s->wlock);
		if (rc && rc != SHMEX_EBUSY)
			bad++;
		n++;
	}
	s->ns[3] = n;
	shm_read_close(&rd);
	_exit(bad ? 3 : 0);
}

/* Requests per second of the writer for dur_ns in one mode; *reads gets
 * the reader's reads per second. */
static double bwriter_run(struct bwriter *bw, struct rcu_shared *s,
			  const char *inst, enum b_mode mode, uint64_t dur_ns,
			  double *reads)
{
	pid_t pid = -1;
	s->ready = s->stop = 0;
	s->ns[3] = 0;
	*reads = 0;
	if (mode != B_NONE) {
		pid = fork();
		if (pid < 0)
			return NAN;
		if (pid == 0)
			breader(inst, s, mode == B_RWLOCK);
		uint64_t deadline = bench_now_ns() + 10000000000ull;
		while (load_acquire(&s->ready) < 1 && bench_now_ns() < deadline)
			usleep(100);
	}
	bool lock = mode == B_RWLOCK;
	uint64_t n = 0, t0 = bench_now_ns(), t;
	do {
		for (int i = 0; i < 256; i++) {
			if (lock && pthread_rwlock_wrlock(&s->wlock))
				return NAN;
			bwriter_step(bw);
			if (lock)
				pthread_rwlock_unlock(&s->wlock);
		}
		n += 256;
		t = bench_now_ns() - t0;
	} while (t < dur_ns);
	store_release(&s->stop, 1);
	if (pid > 0) {
		int st;
		waitpid(pid, &st, 0);
		if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
			fprintf(stderr, "rcu: reader process failed (status %d)\n", st);
			return NAN;
		}
		*reads = (double)s->ns[3] * 1e9 / (double)t;
	}
	return (double)n * 1e9 / (double)t;
}

static void bench_rcu_writer(const struct rcu_opts *o, struct rcu_shared *s,
			     struct shm_readers *w, double *ratio_rcu,
			     double *ratio_rwlock)
{
	struct bwriter bw;
	double tput[3][RUNS_B], rd[3][RUNS_B];
	const char *names[3] = {"no reader", "rcu reader", "rwlock reader"};
	uint64_t dur = o->iters >= 10000000 ? 700000000ull : 200000000ull;
	*ratio_rcu = *ratio_rwlock = NAN;
	if (bwriter_init(&bw, o->inst, w) != 0) {
		fprintf(stderr, "rcu: cannot create the bench book\n");
		return;
	}
	/* Warm the book up to its steady state. */
	for (int i = 0; i < 200000; i++)
		bwriter_step(&bw);
	for (int r = 0; r < RUNS_B; r++)
		for (int m = 0; m < 3; m++)
			tput[m][r] = bwriter_run(&bw, s, o->inst, (enum b_mode)m, dur,
						 &rd[m][r]);
	double med[3];
	for (int m = 0; m < 3; m++) {
		double reads = median(rd[m], RUNS_B);
		med[m] = median(tput[m], RUNS_B);
		fprintf(stderr, "rcu: matcher with %-13s %9.0f requests/s, reader "
			"%9.0f reads/s\n", names[m], med[m], reads);
	}
	*ratio_rcu = med[B_RCU] / med[B_NONE];
	*ratio_rwlock = med[B_RWLOCK] / med[B_NONE];
	bwriter_free(&bw, o->inst);
}

/* --------------------------------------------------------------------------- */

static void usage(FILE *f)
{
	fprintf(f, "usage: shmex-bench rcu [--iters N] [--quick]\n"
		   "  read-side enter+leave: shmex reader table vs liburcu memb vs\n"
		   "  process-shared rwlock; writer-side cost of readers.\n");
}

int bench_rcu(int argc, char **argv)
{
	struct rcu_opts o = {.iters = 10000000};
	static const struct option longopts[] = {
		{"iters", required_argument, NULL, 'n'},
		{"quick", no_argument, NULL, 'q'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	int c;
	optind = 1;
	while ((c = getopt_long(argc, argv, "n:qh", longopts, NULL)) != -1) {
		char *end;
		switch (c) {
		case 'n':
			errno = 0;
			o.iters = strtoull(optarg, &end, 10);
			if (errno || *end || o.iters < 1000) {
				fprintf(stderr, "rcu: bad --iters '%s'\n", optarg);
				return 2;
			}
			break;
		case 'q':
			o.iters = 1000000;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	snprintf(o.inst, sizeof(o.inst), "bench-rcu-%d", (int)getpid());
	struct rcu_shared *s = shared_map();
	if (!s)
		return 1;
	struct shm_readers w, rd;
	int rc = shm_readers_create(&w, o.inst, 0, 8, 0600);
	if (rc) {
		fprintf(stderr, "rcu: %s\n", w.region.err);
		return 1;
	}
	rc = shm_readers_attach(&rd, o.inst, 0, SHM_READERS_READER);
	if (rc)
		goto out_unlink;

	double shmex_ns, fence_ns, asym_ns, urcu_ns, rwlock_ns;
	fprintf(stderr, "rcu: %llu enter+leave per run, median of %d runs\n",
		(unsigned long long)o.iters, RUNS);
	rc = measure_shmex(&o, &rd, &shmex_ns);
	if (rc)
		goto out_detach;
	fprintf(stderr, "rcu: shmex reader table          %6.2f ns\n", shmex_ns);
	measure_fence(&o, &w, &fence_ns, &asym_ns);
	fprintf(stderr, "rcu: bare store+fence+store      %6.2f ns\n", fence_ns);
	fprintf(stderr, "rcu: store+compiler barrier only %6.2f ns\n", asym_ns);
	urcu_ns = measure_urcu(&o);
	fprintf(stderr, "rcu: liburcu memb read lock      %6.2f ns\n", urcu_ns);
	rwlock_ns = measure_rwlock(&o, s);
	fprintf(stderr, "rcu: pshared rwlock rdlock       %6.2f ns\n", rwlock_ns);

	double two_shmex = measure_two(&o, s, K_SHMEX);
	double two_urcu = measure_two(&o, s, K_URCU);
	double two_rwlock = measure_two(&o, s, K_RWLOCK);
	fprintf(stderr, "rcu: two readers at once: shmex %.2f ns, liburcu %.2f ns, "
		"rwlock %.2f ns\n", two_shmex, two_urcu, two_rwlock);

	double busy_ns, scan_ns, asym_read_ns, membarrier_ns;
	rc = measure_with_writer(&o, s, &w, &rd, false, &busy_ns, &scan_ns);
	if (rc)
		goto out_detach;
	rc = measure_with_writer(&o, s, &w, &rd, true, &asym_read_ns, &membarrier_ns);
	if (rc)
		goto out_detach;
	fprintf(stderr, "rcu: with a writer process: shmex read %.2f ns, writer "
		"advance+scan %.0f ns\n", busy_ns, scan_ns);
	fprintf(stderr, "rcu: asymmetric variant: read %.2f ns, writer "
		"advance+membarrier %.0f ns\n", asym_read_ns, membarrier_ns);

	double ratio_rcu, ratio_rwlock;
	bench_rcu_writer(&o, s, &w, &ratio_rcu, &ratio_rwlock);

	printf("rcu: read_ns/urcu_read_ns=%.2f rwlock_read_ns/read_ns=%.2f "
	       "two-reader rwlock/shmex=%.2f\n", shmex_ns / urcu_ns,
	       rwlock_ns / shmex_ns, two_rwlock / two_shmex);
	printf("RESULT rcu read_ns=%.2f urcu_read_ns=%.2f rwlock_read_ns=%.2f "
	       "writer_ratio_rcu=%.3f writer_ratio_rwlock=%.3f "
	       "fence_read_ns=%.2f read2_ns=%.2f urcu_read2_ns=%.2f "
	       "rwlock_read2_ns=%.2f read_busy_ns=%.2f writer_scan_ns=%.0f "
	       "asym_read_ns=%.2f writer_membarrier_ns=%.0f\n",
	       shmex_ns, urcu_ns, rwlock_ns, ratio_rcu, ratio_rwlock, fence_ns,
	       two_shmex, two_urcu, two_rwlock, busy_ns, scan_ns, asym_read_ns,
	       membarrier_ns);
	rc = 0;

out_detach:
	shm_readers_detach(&rd);
out_unlink:
	shm_readers_detach(&w);
	if (shm_readers_unlink(o.inst, 0) && !rc)
		rc = 1;
	munmap(s, sizeof(*s));
	return rc ? 1 : 0;
}
