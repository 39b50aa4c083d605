/*
 * bench_rcu: what a read-side section costs, and what readers cost the
 * writer.
 *
 * Part (a), read side: enter+leave of shmex's cross-process reader table
 * (shm_rcu_inline.h) in the mode a table gets by default (asymmetric,
 * with membarrier, where the kernel has it) and, on a separate line, in
 * fence mode; against, in the same run, liburcu's own memb flavour
 * (threads of one process, inline read lock) and a process-shared pthread
 * rwlock (rdlock+unlock).  Also measured, to document the design choices
 * in docs/concurrency.md: the bare "store, full fence, release store" and
 * "store, compiler barrier, store" sequences the two modes reduce to; each
 * primitive with two reading processes (or threads) at once; the reader
 * table while a writer process advances the epoch and polls as fast as it
 * can, in fence mode, in asymmetric mode with the default rate limit, and
 * in asymmetric mode with a membarrier on every poll (the raw cost of one
 * barrier while a reader runs on the other CPU).
 *
 * Part (b), write side: matcher throughput with no reader, with one reader
 * process reading the book continuously, and with the same reader behind a
 * rwlock, as ratios (bench_rcu_writer below), for a table in the default
 * mode and for a fence-mode table; with four reader processes polling
 * continuously, and with four paced at 100 k reads/s in total (a gateway's
 * query rate); the writer's CPU time per request in each (its share of a
 * CPU says how much of a loss is CPU time taken by readers on 2 cores, its
 * CPU ns per request how much is cache traffic); the staleness a reader
 * sees (writer's request time to the reader's first sight of it); and how
 * many membarrier calls the matcher made and what share of its time they
 * took.
 *
 * Each figure is the median of several runs; the ratios compare figures
 * measured in this same run.
 */
#define _LGPL_SOURCE /* liburcu's inline read lock, like our inline enter */

#include <errno.h>
#include <time.h>
#include <getopt.h>
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <urcu/urcu-memb.h>

#include "engine/eng_core.h"
#include "shm/shm_error.h"
#include "shm/shm_msg.h"
#include "shm/shm_snap.h"
#include "shm/shm_rcu.h"
#include "shm/shm_rcu_inline.h"
#include "tests/bench/bench.h"

int bench_rcu(int argc, char **argv);

#define RUNS 5
#define B_MAXREADERS 4

struct rcu_opts {
	uint64_t iters;  /* enter+leave pairs per run */
	char inst[40];   /* tables in the default mode */
	char inst_f[40]; /* tables in fence mode */
};

/* Shared between the parent and its measuring children. */
struct rcu_shared {
	pthread_rwlock_t lock;        /* part (a): default kind */
	pthread_rwlock_t wlock;       /* part (b): writer-preferring */
	uint64_t go;                  /* W: parent, release; R: children, acquire */
	uint64_t stop;                /* W: parent, release; R: children, acquire */
	uint64_t ready;               /* W: children, fetch_add; R: parent */
	uint64_t ns[6];               /* W: child i; R: parent after waitpid */
	uint64_t reads[B_MAXREADERS]; /* W: reader i; R: parent after waitpid */
	uint64_t stale_p99_ns;        /* W: the staleness reader; R: parent, ditto */
	uint64_t stale_p50_ns;
	uint64_t stale_n; /* samples behind the two figures */
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

static double loop_shmex(struct shm_rcu_reader *r, uint64_t n)
{
	uint64_t t0 = bench_now_ns();
	for (uint64_t i = 0; i < n; i++) {
		if (shm_rcu_enter_inline(r))
			return NAN;
		fence_compiler();
		if (shm_rcu_leave_inline(r))
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

/* The asymmetric mode's minimum: the writer's membarrier replaces the
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

static int measure_shmex(const struct rcu_opts *o, struct shm_rcu *rd, double *out)
{
	struct shm_rcu_reader r;
	int rc = shm_rcu_register(rd, &r);
	if (rc) {
		fprintf(stderr, "rcu: register: %s\n", shmex_strerror(rc));
		return rc;
	}
	double v[RUNS];
	(void)loop_shmex(&r, o->iters / 10);
	for (int i = 0; i < RUNS; i++)
		v[i] = loop_shmex(&r, o->iters);
	*out = median(v, RUNS);
	return shm_rcu_unregister(&r);
}

static void measure_fence(const struct rcu_opts *o, struct shm_rcu *w, double *fence,
			  double *asym)
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
		struct shm_rcu t;
		struct shm_rcu_reader r;
		if (shm_rcu_attach(&t, a->o->inst, 0, SHM_RCU_READER) == 0) {
			if (shm_rcu_register(&t, &r) == 0) {
				wait_go(a->s);
				ns = loop_shmex(&r, a->o->iters);
				if (shm_rcu_unregister(&r))
					ns = NAN;
			}
			shm_rcu_detach(&t);
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
static double measure_two(const struct rcu_opts *o, struct rcu_shared *s, enum kind k)
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

/* --- the reader table while a writer advances and polls ---------------------- */

/* How the writer child polls. */
enum wpoll {
	WP_DEFAULT,    /* the table's mode with its default rate limit */
	WP_EVERY_POLL, /* asymmetric: a membarrier on every poll */
};

/* Child: the writer role, advance + safe_epoch as fast as possible.
 * Reports ns per advance+poll in ns[2] and membarrier calls in ns[4]. */
static void writer_child(const char *inst, struct rcu_shared *s, enum wpoll wp)
{
	struct shm_rcu w;
	uint64_t n = 0;
	if (shm_rcu_attach(&w, inst, 0, SHM_RCU_WRITER) != 0)
		_exit(1);
	if (wp == WP_EVERY_POLL)
		shm_rcu_set_barrier_interval(&w, 0, 0);
	fetch_add_acq_rel(&s->ready, 1);
	while (!load_acquire(&s->go))
		cpu_relax();
	uint64_t t0 = bench_now_ns();
	while (!load_acquire(&s->stop)) {
		(void)shm_rcu_advance(&w);
		s->sink += shm_rcu_safe_epoch(&w);
		n++;
	}
	s->ns[2] = n ? (bench_now_ns() - t0) / n : 0;
	s->ns[4] = w.barriers;
	int bad = w.barrier_errors != 0;
	shm_rcu_detach(&w);
	_exit(bad ? 2 : 0);
}

/* Reader table with a writer process running concurrently: *read = ns per
 * enter+leave, *poll = writer ns per advance+poll, *barriers = membarrier
 * calls per second. */
static int measure_with_writer(const struct rcu_opts *o, struct rcu_shared *s,
			       const char *inst, struct shm_rcu *creator,
			       struct shm_rcu *rd, enum wpoll wp, double *read,
			       double *poll, double *barriers)
{
	*read = *poll = *barriers = NAN;
	/* Hand the writer role to the child for the duration. */
	uint64_t me = creator->ident;
	store_relaxed(&creator->hdr->writer, 0);
	s->go = s->stop = s->ready = 0;
	s->ns[2] = s->ns[4] = 0;
	pid_t pid = fork();
	if (pid < 0)
		return -errno;
	if (pid == 0)
		writer_child(inst, s, wp);
	uint64_t deadline = bench_now_ns() + 10000000000ull;
	while (load_acquire(&s->ready) < 1 && bench_now_ns() < deadline)
		usleep(100);
	struct shm_rcu_reader r;
	int rc = shm_rcu_register(rd, &r);
	uint64_t t0 = bench_now_ns();
	store_release(&s->go, 1);
	if (rc == 0) {
		double v[RUNS];
		for (int i = 0; i < RUNS; i++)
			v[i] = loop_shmex(&r, o->iters / 2);
		*read = median(v, RUNS);
		rc = shm_rcu_unregister(&r);
	}
	store_release(&s->stop, 1);
	int st;
	waitpid(pid, &st, 0);
	uint64_t dt = bench_now_ns() - t0;
	if (WIFEXITED(st) && WEXITSTATUS(st) == 0) {
		*poll = (double)s->ns[2];
		*barriers = (double)s->ns[4] * 1e9 / (double)dt;
	}
	store_relaxed(&creator->hdr->writer, me);
	/* The child advanced the shared epoch: continue from it. */
	creator->epoch = load_relaxed(&creator->hdr->epoch);
	return rc;
}

/* --- part (b): matcher throughput with readers ------------------------------- */

/*
 * The writer is the matching core (engine/eng_core) on a book in a real
 * book region, driven by a synthetic flow (limit orders of one size at 21
 * prices around a mid on both sides, so about half of them trade, and
 * cancels that keep some 200 orders resting), with a grace period (advance,
 * poll, reclaim) every 8 requests as the matcher does.  Five configurations,
 * each run RUNS_B times, interleaved:
 *   none    no reader (book and table in the default mode);
 *   rcu     one reader process reading depth, top of book and an order's
 *           status in a loop through shm_snap (reader table + seqcounts);
 *   rwlock  the same reader and writer, but the writer holds a
 *           process-shared rwlock (writer-preferring, so it is not starved)
 *           around each request and the reader around each read: the
 *           classic "locked book" design;
 *   none-f, rcu-f   the same as none and rcu with a second book and a
 *           fence-mode table (the other instance).
 * ratio = requests/s with the reader / requests/s without, each against
 * the no-reader run of its own book.
 */
#define RUNS_B 3
#define B_QTY 10
#define B_MID 100000
#define B_LIVE 200

enum b_mode {
	B_NONE,
	B_RCU,
	B_RWLOCK,
	B_NONE_F,
	B_RCU_F,
	B_RCU4,  /* four reader processes, polling continuously */
	B_PACED, /* four reader processes, 25 k reads/s each */
	B_STALE, /* one reader measuring staleness; writer stamps the clock */
	B_NMODES
};

/* Total read rate of the paced readers (a gateway's query rate). */
#define B_PACED_READS_PER_S 100000

struct bwriter {
	struct shm_region reg;
	struct eng_core *b;
	struct shm_rcu *w;
	uint32_t sym;
	uint64_t x, seq;
	uint64_t live[B_LIVE + 1], owner[B_LIVE + 1];
	size_t nlive;
	bool stamp; /* request time = CLOCK_MONOTONIC now (staleness run) */
};

static int bwriter_init(struct bwriter *bw, const char *inst, struct shm_rcu *w)
{
	struct eng_core_cfg cfg = {
		.caps = {4, 1024, 16384, 1u << 16}, .shard = 0, .nshards = 1};
	memset(bw, 0, sizeof(*bw));
	bw->w = w;
	bw->x = 42;
	int rc = shm_book_region_create(&bw->reg, inst, &cfg.caps, 0, 1, 0600);
	if (rc)
		return rc;
	rc = eng_core_init(&bw->b, shm_region_body(&bw->reg),
			   shm_region_body_size(&bw->reg), &cfg, NULL, NULL);
	if (rc)
		goto out_region;
	rc = eng_core_symbol_add(bw->b, "BENCH", 5, &bw->sym);
	if (rc)
		goto out_book;
	shm_region_publish(&bw->reg);
	return 0;

out_book:
	eng_core_destroy(bw->b);
out_region:
	shm_region_detach(&bw->reg);
	(void)shm_region_unlink(inst, "book.0");
	return rc;
}

static void bwriter_free(struct bwriter *bw, const char *inst)
{
	eng_core_destroy(bw->b);
	shm_region_detach(&bw->reg);
	if (shm_region_unlink(inst, "book.0"))
		fprintf(stderr, "rcu: unlink %s book.0 failed\n", inst);
}

static void bwriter_step(struct bwriter *bw)
{
	bw->x = bw->x * 6364136223846793005ull + 1442695040888963407ull;
	uint32_t r = (uint32_t)(bw->x >> 33);
	struct eng_req q;
	memset(&q, 0, sizeof(q));
	q.seq = ++bw->seq;
	q.time_ns = bw->stamp ? bench_now_ns() : bw->seq;
	q.epoch = shm_rcu_epoch(bw->w);
	q.sym = bw->sym;
	if (bw->nlive > 0 && ((r >> 20) % 4 == 0 || bw->nlive >= B_LIVE)) {
		size_t k = (r >> 2) % bw->nlive;
		q.account = bw->owner[k];
		q.order_id = bw->live[k];
		(void)!eng_core_cancel(bw->b, &q); /* filled or open: both fine */
		bw->live[k] = bw->live[--bw->nlive];
		bw->owner[k] = bw->owner[bw->nlive];
	} else {
		uint64_t id;
		q.account = 1 + (r >> 8) % 4;
		q.side = (uint8_t)(r & 1);
		q.tif = SHM_TIF_GTC;
		q.price = B_MID + (int64_t)((r >> 4) % 21) - 10;
		q.qty = B_QTY;
		if (eng_core_submit(bw->b, &q, &id) == 0) {
			bw->owner[bw->nlive] = q.account;
			bw->live[bw->nlive++] = id;
		}
	}
	if (bw->seq % 8 == 0) {
		(void)shm_rcu_advance(bw->w);
		eng_core_reclaim(bw->b, shm_rcu_safe_epoch(bw->w));
	}
}

/* --pin: part (b)'s writer on CPU 0, its readers on the other CPUs
 * (reader i on CPU 1 + i % (ncpu - 1)), so that a reader's cost to the
 * writer is cache traffic, not the writer's CPU time. */
static bool pin_cpus;

static void pin_to(int cpu)
{
	cpu_set_t set;
	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	if (sched_setaffinity(0, sizeof(set), &set) != 0)
		fprintf(stderr, "rcu: cannot pin to CPU %d: %s\n", cpu, strerror(errno));
}

static void pin_reader(int idx)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);
	if (pin_cpus && n > 1)
		pin_to(1 + idx % (int)(n - 1));
}

/* Staleness histogram of the staleness reader: 100 ns buckets. */
#define STALE_BUCKET_NS 100
#define STALE_BUCKETS 100000

static uint64_t stale_pct(const uint32_t *h, uint64_t n, double pct)
{
	uint64_t want = (uint64_t)ceil((double)n * pct), acc = 0;
	for (uint32_t i = 0; i < STALE_BUCKETS; i++) {
		acc += h[i];
		if (acc >= want && want)
			return (uint64_t)(i + 1) * STALE_BUCKET_NS;
	}
	return (uint64_t)STALE_BUCKETS * STALE_BUCKET_NS;
}

/*
 * A reader process: reads depth, top of book and an order's status until
 * told to stop; reports its reads in reads[idx].  pace_ns > 0: one read
 * every pace_ns (absolute deadlines, timer slack 1 ns; a late reader does
 * not burst to catch up).  stale: the writer stamps each request with
 * CLOCK_MONOTONIC, and every time the top-of-book snapshot shows a new last
 * trade the reader records now - that trade's time: how long after the
 * writer started applying a change the reader first saw it (a change
 * superseded before any read is not counted).
 */
static void breader(const char *inst, struct rcu_shared *s, bool lock, int idx,
		    uint64_t pace_ns, bool stale)
{
	struct shm_snap rd;
	struct shm_snap_level bids[10], asks[10];
	struct shm_snap_depth d = {.bids = bids, .asks = asks, .max = 10};
	struct shm_snap_top t;
	struct shm_snap_order o;
	struct shm_snap_fill f[4];
	size_t nf;
	uint64_t n = 0, bad = 0, x = 7 + (uint64_t)idx, last_seen = 0, ns_n = 0;
	static uint32_t hist[STALE_BUCKETS];
	pin_reader(idx);
	if (shm_snap_open(&rd, inst, 0) != 0)
		_exit(1);
	if (pace_ns)
		(void)prctl(PR_SET_TIMERSLACK, 1UL, 0UL, 0UL, 0UL);
	fetch_add_acq_rel(&s->ready, 1);
	uint64_t next = bench_now_ns();
	while (!load_acquire(&s->stop)) {
		if (pace_ns) {
			next += pace_ns;
			uint64_t now = bench_now_ns();
			if (next + pace_ns < now)
				next = now;
			struct timespec ts = {(time_t)(next / 1000000000u),
					      (long)(next % 1000000000u)};
			while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts,
					       NULL) == EINTR)
				;
		}
		x = x * 6364136223846793005ull + 1442695040888963407ull;
		if (lock && pthread_rwlock_rdlock(&s->wlock))
			_exit(2);
		int rc = shm_snap_depth(&rd, 0, &d);
		if (rc == 0)
			rc = shm_snap_top(&rd, 0, &t);
		if (rc == 0 && stale && t.last_time_ns != last_seen) {
			uint64_t now = bench_now_ns();
			if (last_seen && now > t.last_time_ns) {
				uint64_t b = (now - t.last_time_ns) / STALE_BUCKET_NS;
				hist[b < STALE_BUCKETS ? b : STALE_BUCKETS - 1]++;
				ns_n++;
			}
			last_seen = t.last_time_ns;
		}
		if (rc == 0) {
			rc = shm_snap_order(&rd, (x >> 40) % 20000 + 1, &o, f, 4, &nf);
			if (rc == SHMEX_ENOORDER)
				rc = 0;
		}
		if (lock)
			pthread_rwlock_unlock(&s->wlock);
		if (rc && rc != SHMEX_EBUSY)
			bad++;
		n++;
	}
	s->reads[idx] = n;
	if (stale) {
		s->stale_n = ns_n;
		s->stale_p99_ns = stale_pct(hist, ns_n, 0.99);
		s->stale_p50_ns = stale_pct(hist, ns_n, 0.50);
	}
	shm_snap_close(&rd);
	_exit(bad ? 3 : 0);
}

static uint64_t cpu_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int mode_readers(enum b_mode m)
{
	switch (m) {
	case B_NONE:
	case B_NONE_F:
		return 0;
	case B_RCU4:
	case B_PACED:
		return 4;
	default:
		return 1;
	}
}

/* One run of the writer in one mode. */
struct brun {
	double tput;      /* requests per second of wall time */
	double reads;     /* reads per second, all readers */
	double cpu_ns;    /* writer CPU ns per request (its process CPU time) */
	double cpu_share; /* writer CPU time / wall time */
	uint64_t elapsed;
};

/* Runs the writer for dur_ns in one mode (the parent is the writer: its
 * process CPU time is the writer's). */
static int bwriter_run(struct bwriter *bw, struct rcu_shared *s, const char *inst,
		       enum b_mode mode, uint64_t dur_ns, struct brun *out)
{
	pid_t pid[B_MAXREADERS];
	int nr = mode_readers(mode);
	uint64_t pace =
		mode == B_PACED ? 1000000000ull * (uint64_t)nr / B_PACED_READS_PER_S : 0;
	s->ready = s->stop = 0;
	memset(s->reads, 0, sizeof(s->reads));
	s->stale_n = s->stale_p99_ns = s->stale_p50_ns = 0;
	memset(out, 0, sizeof(*out));
	out->tput = NAN;
	for (int i = 0; i < nr; i++) {
		pid[i] = fork();
		if (pid[i] < 0)
			return -errno;
		if (pid[i] == 0)
			breader(inst, s, mode == B_RWLOCK, i, pace, mode == B_STALE);
	}
	uint64_t deadline = bench_now_ns() + 10000000000ull;
	while (load_acquire(&s->ready) < (uint64_t)nr && bench_now_ns() < deadline)
		usleep(100);
	bool lock = mode == B_RWLOCK;
	bw->stamp = mode == B_STALE;
	uint64_t n = 0, t0 = bench_now_ns(), c0 = cpu_now_ns(), t;
	do {
		for (int i = 0; i < 256; i++) {
			if (lock && pthread_rwlock_wrlock(&s->wlock))
				return -EINVAL;
			bwriter_step(bw);
			if (lock)
				pthread_rwlock_unlock(&s->wlock);
		}
		n += 256;
		t = bench_now_ns() - t0;
	} while (t < dur_ns);
	uint64_t c = cpu_now_ns() - c0;
	bw->stamp = false;
	store_release(&s->stop, 1);
	int bad = 0;
	uint64_t reads = 0;
	for (int i = 0; i < nr; i++) {
		int st;
		waitpid(pid[i], &st, 0);
		if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
			fprintf(stderr, "rcu: reader process failed (status %d)\n", st);
			bad = 1;
		}
		reads += s->reads[i];
	}
	if (bad)
		return -EIO;
	out->reads = (double)reads * 1e9 / (double)t;
	out->elapsed = t;
	out->tput = (double)n * 1e9 / (double)t;
	out->cpu_ns = (double)c / (double)n;
	out->cpu_share = (double)c / (double)t;
	return 0;
}

/* What part (b) found. */
struct bres {
	double ratio_rcu, ratio_rwlock, ratio_rcu_f;
	double ratio_rcu4, ratio_paced;
	double cpu_ratio_rcu, cpu_ratio_rcu4;        /* requests per writer CPU second */
	double cpu_share_rcu4;                       /* writer CPU / wall, 4 readers */
	double cpu_ns_none, cpu_ns_rcu, cpu_ns_rcu4; /* writer CPU ns/request */
	double paced_reads;                          /* reads/s the paced readers did */
	double stale_p50_us, stale_p99_us, stale_n;
	double barriers_per_s; /* matcher's membarrier calls, rcu runs */
	double barrier_ns;     /* mean cost of one */
	double barrier_share;  /* fraction of the matcher's time in them */
};

static void bench_rcu_writer(const struct rcu_opts *o, struct rcu_shared *s,
			     struct shm_rcu *w, struct shm_rcu *wf, struct bres *res)
{
	struct bwriter bw, bwf;
	struct brun run[B_NMODES][RUNS_B];
	double stale99[RUNS_B], stale50[RUNS_B], stalen[RUNS_B];
	const char *names[B_NMODES] = {
		"no reader",      "rcu reader",    "rwlock reader",   "no reader (f)",
		"rcu reader (f)", "4 rcu readers", "4 paced readers", "stale reader"};
	uint64_t dur = o->iters >= 10000000 ? 700000000ull : 200000000ull;
	uint64_t rcu_ns = 0, b0, bns0;
	memset(res, 0, sizeof(*res));
	res->ratio_rcu = res->ratio_rwlock = res->ratio_rcu_f = NAN;
	res->barriers_per_s = res->barrier_ns = res->barrier_share = NAN;
	if (bwriter_init(&bw, o->inst, w) != 0) {
		fprintf(stderr, "rcu: cannot create the bench book\n");
		return;
	}
	if (bwriter_init(&bwf, o->inst_f, wf) != 0) {
		fprintf(stderr, "rcu: cannot create the fence-mode bench book\n");
		bwriter_free(&bw, o->inst);
		return;
	}
	cpu_set_t old;
	bool pinned = pin_cpus && sched_getaffinity(0, sizeof(old), &old) == 0;
	if (pinned)
		pin_to(0);
	/* Warm the books up to their steady state. */
	for (int i = 0; i < 200000; i++) {
		bwriter_step(&bw);
		bwriter_step(&bwf);
	}
	b0 = w->barriers;
	bns0 = w->barrier_ns;
	for (int r = 0; r < RUNS_B; r++)
		for (int m = 0; m < B_NMODES; m++) {
			bool f = m == B_NONE_F || m == B_RCU_F;
			uint64_t nb = w->barriers, nbns = w->barrier_ns;
			if (bwriter_run(f ? &bwf : &bw, s, f ? o->inst_f : o->inst,
					(enum b_mode)m, dur, &run[m][r]) != 0)
				run[m][r].tput = NAN;
			if (m == B_RCU)
				rcu_ns += run[m][r].elapsed;
			else {
				/* Count the calls of the rcu runs only. */
				b0 += w->barriers - nb;
				bns0 += w->barrier_ns - nbns;
			}
			if (m == B_STALE) {
				stale99[r] = (double)s->stale_p99_ns / 1000.0;
				stale50[r] = (double)s->stale_p50_ns / 1000.0;
				stalen[r] = (double)s->stale_n;
			}
		}
	double med[B_NMODES], cpu[B_NMODES], share[B_NMODES], reads[B_NMODES];
	for (int m = 0; m < B_NMODES; m++) {
		double v[RUNS_B], c[RUNS_B], sh[RUNS_B], rd[RUNS_B];
		for (int r = 0; r < RUNS_B; r++) {
			v[r] = run[m][r].tput;
			c[r] = run[m][r].cpu_ns;
			sh[r] = run[m][r].cpu_share;
			rd[r] = run[m][r].reads;
		}
		med[m] = median(v, RUNS_B);
		cpu[m] = median(c, RUNS_B);
		share[m] = median(sh, RUNS_B);
		reads[m] = median(rd, RUNS_B);
		fprintf(stderr,
			"rcu: matcher with %-15s %9.0f requests/s, reader(s) "
			"%9.0f reads/s, writer CPU %6.1f ns/request, %5.1f%% of "
			"a CPU\n",
			names[m], med[m], reads[m], cpu[m], share[m] * 100.0);
	}
	res->ratio_rcu = med[B_RCU] / med[B_NONE];
	res->ratio_rwlock = med[B_RWLOCK] / med[B_NONE];
	res->ratio_rcu_f = med[B_RCU_F] / med[B_NONE_F];
	res->ratio_rcu4 = med[B_RCU4] / med[B_NONE];
	res->ratio_paced = med[B_PACED] / med[B_NONE];
	/* Per writer CPU second: what is left once the CPU time the readers
	 * took from the writer is taken out, i.e. the cache traffic. */
	res->cpu_ratio_rcu = cpu[B_NONE] / cpu[B_RCU];
	res->cpu_ratio_rcu4 = cpu[B_NONE] / cpu[B_RCU4];
	res->cpu_share_rcu4 = share[B_RCU4];
	res->cpu_ns_none = cpu[B_NONE];
	res->cpu_ns_rcu = cpu[B_RCU];
	res->cpu_ns_rcu4 = cpu[B_RCU4];
	res->paced_reads = reads[B_PACED];
	res->stale_p99_us = median(stale99, RUNS_B);
	res->stale_p50_us = median(stale50, RUNS_B);
	res->stale_n = median(stalen, RUNS_B);
	uint64_t nb = w->barriers - b0, nbns = w->barrier_ns - bns0;
	if (rcu_ns) {
		res->barriers_per_s = (double)nb * 1e9 / (double)rcu_ns;
		res->barrier_ns = nb ? (double)nbns / (double)nb : 0;
		res->barrier_share = (double)nbns / (double)rcu_ns;
	}
	if (pinned && sched_setaffinity(0, sizeof(old), &old) != 0)
		fprintf(stderr, "rcu: cannot restore the CPU mask\n");
	bwriter_free(&bwf, o->inst_f);
	bwriter_free(&bw, o->inst);
}

/* --------------------------------------------------------------------------- */

static void usage(FILE *f)
{
	fprintf(f, "usage: shmex-bench rcu [--iters N] [--quick] [--pin]\n"
		   "  read-side enter+leave: shmex reader table (default mode and\n"
		   "  fence mode) vs liburcu memb vs process-shared rwlock;\n"
		   "  writer-side cost of readers and of the membarrier calls.\n"
		   "  --pin: the matcher runs on CPU 0, its readers on the others.\n"
		   "  SHMEX_READERS_FENCE=1 makes the default mode the fence mode.\n");
}

static const char *mode_name(const struct shm_rcu *t)
{
	return shm_rcu_table_mode(t) == SHM_RCU_MODE_ASYM ? "asymmetric" : "fence";
}

int bench_rcu(int argc, char **argv)
{
	struct rcu_opts o = {.iters = 10000000};
	static const struct option longopts[] = {
		{"iters", required_argument, NULL, 'n'},
		{"quick", no_argument, NULL, 'q'},
		{"pin", no_argument, NULL, 'p'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	int c;
	optind = 1;
	while ((c = getopt_long(argc, argv, "n:qph", longopts, NULL)) != -1) {
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
		case 'p':
			pin_cpus = true;
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
	snprintf(o.inst_f, sizeof(o.inst_f), "bench-rcuf-%d", (int)getpid());
	struct rcu_shared *s = shared_map();
	if (!s)
		return 1;
	struct shm_rcu w, rd, wf, rdf;
	memset(&wf, 0, sizeof(wf));
	memset(&rdf, 0, sizeof(rdf));
	int rc = shm_rcu_create(&w, o.inst, 0, 8, 0600);
	if (rc) {
		fprintf(stderr, "rcu: %s\n", w.region.err.msg);
		munmap(s, sizeof(*s));
		return 1;
	}
	rc = shm_rcu_attach(&rd, o.inst, 0, SHM_RCU_READER);
	if (rc)
		goto out_unlink;
	rc = shm_rcu_create_mode(&wf, o.inst_f, 0, 8, 0600, SHM_RCU_MODE_FENCE);
	if (rc)
		goto out_detach;
	rc = shm_rcu_attach(&rdf, o.inst_f, 0, SHM_RCU_READER);
	if (rc)
		goto out_unlink_f;

	double shmex_ns, shmexf_ns, fence_ns, asym_ns, urcu_ns, rwlock_ns;
	fprintf(stderr,
		"rcu: %llu enter+leave per run, median of %d runs; default "
		"table mode: %s\n",
		(unsigned long long)o.iters, RUNS, mode_name(&w));
	rc = measure_shmex(&o, &rd, &shmex_ns);
	if (rc)
		goto out_detach_f;
	fprintf(stderr, "rcu: shmex reader table, default mode: %-10s %6.2f ns\n",
		mode_name(&w), shmex_ns);
	rc = measure_shmex(&o, &rdf, &shmexf_ns);
	if (rc)
		goto out_detach_f;
	fprintf(stderr, "rcu: shmex reader table, fence mode              %6.2f ns\n",
		shmexf_ns);
	measure_fence(&o, &w, &fence_ns, &asym_ns);
	fprintf(stderr, "rcu: bare store+fence+store                      %6.2f ns\n",
		fence_ns);
	fprintf(stderr, "rcu: bare store+compiler barrier                 %6.2f ns\n",
		asym_ns);
	urcu_ns = measure_urcu(&o);
	fprintf(stderr, "rcu: liburcu memb read lock                      %6.2f ns\n",
		urcu_ns);
	rwlock_ns = measure_rwlock(&o, s);
	fprintf(stderr, "rcu: pshared rwlock rdlock                       %6.2f ns\n",
		rwlock_ns);

	double two_shmex = measure_two(&o, s, K_SHMEX);
	double two_urcu = measure_two(&o, s, K_URCU);
	double two_rwlock = measure_two(&o, s, K_RWLOCK);
	fprintf(stderr,
		"rcu: two readers at once: shmex %.2f ns, liburcu %.2f ns, "
		"rwlock %.2f ns\n",
		two_shmex, two_urcu, two_rwlock);

	/* With a writer process polling as fast as it can. */
	double busy_ns, poll_ns, bps, busyf_ns, pollf_ns, bpsf;
	double busye_ns = NAN, polle_ns = NAN, bpse = NAN;
	rc = measure_with_writer(&o, s, o.inst, &w, &rd, WP_DEFAULT, &busy_ns, &poll_ns,
				 &bps);
	if (rc)
		goto out_detach_f;
	rc = measure_with_writer(&o, s, o.inst_f, &wf, &rdf, WP_DEFAULT, &busyf_ns,
				 &pollf_ns, &bpsf);
	if (rc)
		goto out_detach_f;
	if (shm_rcu_table_mode(&w) == SHM_RCU_MODE_ASYM) {
		rc = measure_with_writer(&o, s, o.inst, &w, &rd, WP_EVERY_POLL, &busye_ns,
					 &polle_ns, &bpse);
		if (rc)
			goto out_detach_f;
	}
	fprintf(stderr,
		"rcu: with a writer process polling flat out:\n"
		"rcu:   %-10s read %6.2f ns, writer advance+poll %6.0f ns, "
		"%.0f membarrier/s\n"
		"rcu:   fence      read %6.2f ns, writer advance+poll %6.0f ns\n"
		"rcu:   asymmetric, membarrier on every poll: read %.2f ns, writer "
		"advance+poll+membarrier %.0f ns\n",
		mode_name(&w), busy_ns, poll_ns, bps, busyf_ns, pollf_ns, busye_ns,
		polle_ns);

	struct bres b;
	bench_rcu_writer(&o, s, &w, &wf, &b);
	fprintf(stderr,
		"rcu: matcher membarrier calls (%s table, rcu runs): %.0f/s, "
		"%.0f ns each, %.3f%% of its time\n",
		mode_name(&w), b.barriers_per_s, b.barrier_ns, b.barrier_share * 100.0);

	printf("rcu: table mode %s: read_ns/urcu_read_ns=%.2f rwlock_read_ns/read_ns=%.2f "
	       "two-reader rwlock/shmex=%.2f\n",
	       mode_name(&w), shmex_ns / urcu_ns, rwlock_ns / shmex_ns,
	       two_rwlock / two_shmex);
	printf("rcu: fence mode for comparison: fence_mode_read_ns=%.2f "
	       "fence_mode_writer_ratio_rcu=%.3f read_ns/fence_mode_read_ns=%.3f\n",
	       shmexf_ns, b.ratio_rcu_f, shmex_ns / shmexf_ns);
	printf("rcu: readers' cost: writer CPU ns/request none %.1f, 1 reader %.1f, "
	       "4 readers %.1f (writer had %.0f%% of a CPU with 4 readers); "
	       "staleness p50 %.1f us, p99 %.1f us over %.0f samples; paced "
	       "readers did %.0f reads/s\n",
	       b.cpu_ns_none, b.cpu_ns_rcu, b.cpu_ns_rcu4, b.cpu_share_rcu4 * 100.0,
	       b.stale_p50_us, b.stale_p99_us, b.stale_n, b.paced_reads);
	printf("RESULT rcu read_ns=%.2f urcu_read_ns=%.2f rwlock_read_ns=%.2f "
	       "writer_ratio_rcu=%.3f writer_ratio_rwlock=%.3f "
	       "fence_read_ns=%.2f read2_ns=%.2f urcu_read2_ns=%.2f "
	       "rwlock_read2_ns=%.2f read_busy_ns=%.2f writer_scan_ns=%.0f "
	       "asym_read_ns=%.2f writer_membarrier_ns=%.0f "
	       "fence_mode_read_ns=%.2f fence_mode_writer_ratio_rcu=%.3f "
	       "fence_mode_read_busy_ns=%.2f fence_mode_writer_scan_ns=%.0f "
	       "asym_mode=%d writer_barriers_per_s=%.0f writer_barrier_ns=%.0f "
	       "writer_barrier_share=%.5f writer_ratio_rcu_4readers=%.3f "
	       "writer_ratio_rcu_paced=%.3f writer_cpu_ratio_rcu=%.3f "
	       "writer_cpu_ratio_rcu_4readers=%.3f writer_cpu_share_4readers=%.3f "
	       "staleness_p50_us=%.1f staleness_p99_us=%.1f\n",
	       shmex_ns, urcu_ns, rwlock_ns, b.ratio_rcu, b.ratio_rwlock, fence_ns,
	       two_shmex, two_urcu, two_rwlock, busy_ns, poll_ns, asym_ns, polle_ns,
	       shmexf_ns, b.ratio_rcu_f, busyf_ns, pollf_ns,
	       shm_rcu_table_mode(&w) == SHM_RCU_MODE_ASYM, b.barriers_per_s,
	       b.barrier_ns, b.barrier_share, b.ratio_rcu4, b.ratio_paced,
	       b.cpu_ratio_rcu, b.cpu_ratio_rcu4, b.cpu_share_rcu4, b.stale_p50_us,
	       b.stale_p99_us);
	rc = 0;

out_detach_f:
	shm_rcu_detach(&rdf);
out_unlink_f:
	shm_rcu_detach(&wf);
	if (shm_rcu_unlink(o.inst_f, 0) && !rc)
		rc = 1;
out_detach:
	shm_rcu_detach(&rd);
out_unlink:
	shm_rcu_detach(&w);
	if (shm_rcu_unlink(o.inst, 0) && !rc)
		rc = 1;
	munmap(s, sizeof(*s));
	return rc ? 1 : 0;
}
