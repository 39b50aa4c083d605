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
 * Part (a) figures are the median of several runs.  Part (b) does not
 * compare separate runs (the writer's speed on a shared VM drifts by tens
 * of percent over seconds): each mode alternates short slices with its
 * readers parked and reading, and its ratio is the median over adjacent
 * pairs; a control mode with a process spinning on the reader's CPU, not
 * reading the book, shows what sharing the machine costs by itself.
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
#include <linux/futex.h>
#include <limits.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <urcu/urcu-memb.h>

#include "engine/eng_core.h"
#include "shm/shm_error.h"
#include "shm/shm_msg.h"
#include "shm/shm_settings.h"
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
	/* --probe: reader contents to measure one by one (PROBE_* masks). */
	unsigned probe[8];
	int nprobe;
};

/* Shared between the parent and its measuring children. */
struct rcu_shared {
	pthread_rwlock_t lock;        /* part (a): default kind */
	pthread_rwlock_t wlock;       /* part (b): writer-preferring */
	uint64_t go;                  /* W: parent, release; R: children, acquire */
	uint64_t stop;                /* W: parent, release; R: children, acquire */
	uint64_t ready;               /* W: children, fetch_add; R: parent */
	uint32_t active;              /* futex word; W: parent; R: readers:
				       * 0 = readers parked (asleep in the
				       * kernel), 1 = reading */
	uint64_t ns[6];               /* W: child i; R: parent after waitpid */
	uint64_t reads[B_MAXREADERS]; /* W: reader i; R: parent after waitpid */
	uint64_t stale_p99_ns;        /* W: the staleness reader; R: parent, ditto */
	uint64_t stale_p50_ns;
	uint64_t stale_n; /* samples behind the two figures */
	uint64_t sink;
	/* The bench writer's newest order id, every 1024 requests (the
	 * readers ask for the status of recent orders, as clients do); on a
	 * line of its own.  W: writer, relaxed; R: readers, relaxed. */
	uint64_t last_id __attribute__((aligned(64)));
	char pad_last[56];
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
 * poll, reclaim) every 8 requests as the matcher does.  Reader modes:
 *   rcu     one reader process reading depth, top of book and an order's
 *           status in a loop through shm_snap (reader table + seqcounts);
 *   rwlock  the same reader and writer, but the writer holds a
 *           process-shared rwlock (writer-preferring, so it is not starved)
 *           around each request and the reader around each read: the
 *           classic "locked book" design;
 *   rcu-f   rcu with a second book and a fence-mode table;
 *   rcu4    four reader processes reading continuously;
 *   paced   four reader processes at 100 k reads/s in total;
 *   stale   one reader measuring staleness (the writer stamps requests).
 * The machine is shared and its speed drifts by tens of percent over
 * seconds, so each mode is measured as B_PAIRS pairs of adjacent slices:
 * the readers are forked once, then the writer runs a slice with them
 * parked (asleep on a futex, touching nothing: the no-reader baseline),
 * a slice with them reading, and so on, ending with a parked slice.  A
 * mode's ratio is the median over its pairs of (requests/s of the reading
 * slice) / (mean of the parked slices either side of it).
 */
#define B_PAIRS 8
#define B_QTY 10
#define B_MID 100000
#define B_LIVE 200
/* Requests per round: the matcher's default batch from one gateway, what
 * it takes per round under sustained load. */
#define B_ROUND SHM_DEFAULT_BATCH
#define B_RECENT 8192 /* readers ask for one of the newest B_RECENT ids */

enum b_mode {
	B_RCU,
	B_RWLOCK,
	B_RCU_F,
	B_RCU4,  /* four reader processes, polling continuously */
	B_PACED, /* four reader processes, 25 k reads/s each */
	B_STALE, /* one reader measuring staleness; writer stamps the clock */
	B_SPIN,  /* control: a process on the reader's CPU computing in
		  * registers, touching no memory the writer uses */
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
	bool stamp;        /* request time = CLOCK_MONOTONIC now (staleness run) */
	uint64_t *last_id; /* rcu_shared.last_id */
	/* Most finished order records waiting for the grace period (the done
	 * FIFO beyond the window), seen after a reclaim since the slice
	 * began: how far reclamation fell behind the readers. */
	uint32_t backlog_max;
};

static int bwriter_init(struct bwriter *bw, const char *inst, struct shm_rcu *w)
{
	struct eng_core_cfg cfg = {
		.caps = {4, SHM_DEFAULT_LEVELS, SHM_DEFAULT_ORDERS, SHM_DEFAULT_FILLS},
		.shard = 0,
		.nshards = 1};
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
	eng_core_set_batched(bw->b, true);
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
			if (bw->last_id && bw->seq % 1024 == 0)
				store_relaxed(bw->last_id, id);
			bw->owner[bw->nlive] = q.account;
			bw->live[bw->nlive++] = id;
		}
	}
	/* As the matcher after a round of B_ROUND requests (round_once and
	 * reclaim in eng_matcher.c): the round's quotes are published,
	 * finished orders beyond the default done window go back to the
	 * free stack, and the reader epoch is advanced and polled when the
	 * core says it is due. */
	if (bw->seq % B_ROUND != 0)
		return;
	eng_core_publish(bw->b);
	(void)eng_core_trim(bw->b, SHM_DEFAULT_DONE_WINDOW);
	if (eng_core_reclaim_due(bw->b, bench_now_ns())) {
		(void)shm_rcu_advance(bw->w);
		eng_core_reclaim(bw->b, shm_rcu_safe_epoch(bw->w));
		struct eng_core_stats st;
		eng_core_stats(bw->b, &st);
		uint32_t back = st.orders_done > SHM_DEFAULT_DONE_WINDOW
					? st.orders_done - SHM_DEFAULT_DONE_WINDOW
					: 0;
		if (back > bw->backlog_max)
			bw->backlog_max = back;
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

/* Parks a reader until the parent sets s->active (a shared futex: the
 * parked reader is asleep in the kernel and touches nothing). */
static void park(struct rcu_shared *s)
{
	while (!load_acquire(&s->active) && !load_acquire(&s->stop))
		(void)syscall(SYS_futex, &s->active, FUTEX_WAIT, 0u, NULL, NULL, 0);
}

static void set_active(struct rcu_shared *s, uint32_t v)
{
	store_release(&s->active, v);
	(void)syscall(SYS_futex, &s->active, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
}

/* Paced readers read in small bursts: a reader that wakes owes the reads
 * its rate gave it since it started reading, at most this many at once
 * (a gateway answers the queries one wake-up of its event loop found). */
#define PACE_BURST 16

/*
 * A reader process: reads depth, top of book and an order's status while
 * s->active, sleeps in park() while not, until told to stop; reports its
 * reads in reads[idx].  pace_ns > 0: one read per pace_ns on average
 * (absolute deadlines, timer slack 1 ns; a reader woken late does the
 * reads it owes, up to PACE_BURST).  stale: the writer stamps each request
 * with CLOCK_MONOTONIC, and every time the top-of-book snapshot shows a new
 * last trade the reader records now - that trade's time: how long after
 * the writer started applying a change the reader first saw it (a change
 * superseded before any read is not counted).
 */
/* What a reader reads each time round (--probe): all three by default.
 * PROBE_PRIVATE alone: no shared memory at all, only loads and stores to a
 * private buffer of L2 size (the control for what sharing the machine
 * costs: another hardware thread of the host's core, its caches). */
enum {
	PROBE_DEPTH = 1,
	PROBE_TOP = 2,
	PROBE_ORDER = 4,
	PROBE_ALL = 7,
	PROBE_PRIVATE = 8
};
#define PRIVATE_BYTES (256 * 1024)
static unsigned probe_reads = PROBE_ALL;
static int probe_nreaders = 1; /* --readers: reader processes of a probe */
static bool in_probe;          /* bench_rcu_writer is running the probes */

static const char *probe_name(unsigned m)
{
	static const char *const n[8] = {"none",      "depth",          "top",
					 "depth+top", "order",          "depth+order",
					 "top+order", "depth+top+order"};
	return m == PROBE_PRIVATE ? "private" : n[m & 7];
}

static int probe_parse(const char *arg, struct rcu_opts *o)
{
	char buf[256];
	snprintf(buf, sizeof(buf), "%s", arg);
	o->nprobe = 0;
	for (char *save, *t = strtok_r(buf, ",", &save); t;
	     t = strtok_r(NULL, ",", &save)) {
		unsigned m = 0;
		if (strcmp(t, "private") == 0) {
			m = PROBE_PRIVATE;
		} else if (strcmp(t, "none") != 0) {
			for (char *s2, *u = strtok_r(t, "+", &s2); u;
			     u = strtok_r(NULL, "+", &s2)) {
				if (strcmp(u, "depth") == 0)
					m |= PROBE_DEPTH;
				else if (strcmp(u, "top") == 0)
					m |= PROBE_TOP;
				else if (strcmp(u, "order") == 0)
					m |= PROBE_ORDER;
				else
					return -1;
			}
		}
		if (o->nprobe == 8)
			return -1;
		o->probe[o->nprobe++] = m;
	}
	return o->nprobe > 0 ? 0 : -1;
}

static int probe_empty(struct shm_snap *rd, void *arg)
{
	return 0;
}

/* About one read's worth of work on memory no other process touches:
 * 64 dependent loads at random places of a private L2-sized buffer and a
 * store to each line. */
static void private_work(uint64_t x)
{
	static unsigned char buf[PRIVATE_BYTES];
	uint32_t at = (uint32_t)(x >> 20);
	for (int i = 0; i < 64; i++) {
		at = (at * 2654435761u + buf[at % PRIVATE_BYTES]) % PRIVATE_BYTES;
		buf[at]++;
	}
}

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
	uint64_t start = 0, done = 0; /* pacing: since the last unpark */
	uint64_t hi = 0;              /* newest order id we know of */
	bool parked = true;
	static uint32_t hist[STALE_BUCKETS];
	pin_reader(idx);
	if (shm_snap_open(&rd, inst, 0) != 0)
		_exit(1);
	if (pace_ns)
		(void)prctl(PR_SET_TIMERSLACK, 1UL, 0UL, 0UL, 0UL);
	fetch_add_acq_rel(&s->ready, 1);
	while (!load_acquire(&s->stop)) {
		if (!load_acquire(&s->active)) {
			park(s);
			parked = true;
			continue;
		}
		if (parked) {
			/* The first sight after a pause is not staleness. */
			last_seen = 0;
			start = bench_now_ns();
			done = 0;
			parked = false;
		}
		if (pace_ns) {
			uint64_t now = bench_now_ns();
			uint64_t owed = (now - start) / pace_ns;
			if (owed <= done) {
				uint64_t next = start + (done + 1) * pace_ns;
				struct timespec ts = {(time_t)(next / 1000000000u),
						      (long)(next % 1000000000u)};
				(void)clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts,
						      NULL);
				continue;
			}
			if (owed - done > PACE_BURST)
				done = owed - PACE_BURST;
			done++;
		}
		x = x * 6364136223846793005ull + 1442695040888963407ull;
		if (lock && pthread_rwlock_rdlock(&s->wlock))
			_exit(2);
		int rc = 0;
		if (probe_reads == 0)
			rc = shm_snap_section(&rd, probe_empty, NULL);
		if (probe_reads == PROBE_PRIVATE)
			private_work(x);
		if (probe_reads & PROBE_DEPTH)
			rc = shm_snap_depth(&rd, 0, &d);
		if (rc == 0 && (probe_reads & PROBE_TOP))
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
		if (n % 1024 == 0)
			hi = load_relaxed(&s->last_id);
		if (rc == 0 && (probe_reads & PROBE_ORDER)) {
			uint64_t back = (x >> 40) % B_RECENT;
			rc = shm_snap_order(&rd, hi > back ? hi - back : 1, &o, f, 4,
					    &nf);
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

/* The control of the reader modes: a process on the reader's CPU that
 * computes in registers and touches no memory the writer uses (only the
 * futex word, between slices).  What it costs the writer is what sharing
 * the machine costs (the host's core, its caches, its frequency), not
 * what reading the book costs. */
static void bspinner(struct rcu_shared *s)
{
	uint64_t x = 1, n = 0;
	pin_reader(0);
	fetch_add_acq_rel(&s->ready, 1);
	while (!load_acquire(&s->stop)) {
		if (!load_acquire(&s->active)) {
			park(s);
			continue;
		}
		for (int i = 0; i < 4096; i++) {
			x = x * 6364136223846793005ull + 1442695040888963407ull;
			__asm__ volatile("" : "+r"(x));
		}
		n++;
	}
	s->reads[0] = n + (x & 1);
	_exit(0);
}

static uint64_t cpu_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int mode_readers(enum b_mode m)
{
	return m == B_RCU4 || m == B_PACED ? 4 : 1;
}

/* One slice of writer time. */
struct bslice {
	double tput;      /* requests per second of wall time */
	double cpu_ns;    /* writer CPU ns per request (its process CPU time) */
	double cpu_share; /* writer CPU time / wall time */
	uint64_t ns;      /* wall time */
	uint64_t bars;    /* membarrier calls */
	uint64_t bar_ns;  /* time in them */
	uint32_t backlog; /* bwriter.backlog_max over the slice */
};

/* Runs the writer for dur_ns (the parent is the writer: its process CPU
 * time is the writer's); lock: around each request. */
static int bwriter_slice(struct bwriter *bw, struct rcu_shared *s, bool lock,
			 uint64_t dur_ns, struct bslice *out)
{
	uint64_t nb = bw->w->barriers, nbns = bw->w->barrier_ns;
	uint64_t n = 0, t0 = bench_now_ns(), c0 = cpu_now_ns(), t;
	bw->backlog_max = 0;
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
	out->backlog = bw->backlog_max;
	out->ns = t;
	out->tput = (double)n * 1e9 / (double)t;
	out->cpu_ns = (double)c / (double)n;
	out->cpu_share = (double)c / (double)t;
	out->bars = bw->w->barriers - nb;
	out->bar_ns = bw->w->barrier_ns - nbns;
	return 0;
}

/* What one mode found. */
struct bmode {
	struct bslice parked[B_PAIRS + 1], active[B_PAIRS];
	double ratio;       /* median per pair: active / parked requests/s */
	double cpu_ratio;   /* median per pair: parked / active CPU ns/request */
	double tput_parked; /* medians of the slices */
	double tput_active;
	double cpu_parked, cpu_active, share_active;
	double reads;        /* reads/s over the active slices, all readers */
	double bars_per_s;   /* membarrier calls per second, active slices */
	double bar_share;    /* share of active time in them */
	double bar_ns;       /* mean cost of one */
	double stale_p50_us; /* stale mode */
	double stale_p99_us;
	double stale_n;
	/* Medians over the slices of the largest reclamation backlog
	 * (bwriter.backlog_max), finished order records. */
	double backlog_parked, backlog_active;
};

/* Runs one mode: forks its readers, alternates parked and reading slices,
 * collects the readers. */
static int bwriter_mode(struct bwriter *bw, struct rcu_shared *s, const char *inst,
			enum b_mode mode, uint64_t slice_ns, struct bmode *out)
{
	pid_t pid[B_MAXREADERS];
	int nr = in_probe ? probe_nreaders : mode_readers(mode);
	int rc = 0;
	uint64_t pace =
		mode == B_PACED ? 1000000000ull * (uint64_t)nr / B_PACED_READS_PER_S : 0;
	bool lock = mode == B_RWLOCK;
	uint64_t active_ns = 0, bars = 0, bar_ns = 0;
	s->ready = s->stop = 0;
	s->active = 0;
	memset(s->reads, 0, sizeof(s->reads));
	s->stale_n = s->stale_p99_ns = s->stale_p50_ns = 0;
	memset(out, 0, sizeof(*out));
	for (int i = 0; i < nr; i++) {
		pid[i] = fork();
		if (pid[i] < 0) {
			nr = i;
			rc = -errno;
			goto collect;
		}
		if (pid[i] == 0) {
			if (mode == B_SPIN)
				bspinner(s);
			breader(inst, s, lock, i, pace, mode == B_STALE);
		}
	}
	uint64_t deadline = bench_now_ns() + 10000000000ull;
	while (load_acquire(&s->ready) < (uint64_t)nr && bench_now_ns() < deadline)
		usleep(100);
	bw->stamp = mode == B_STALE;
	for (int p = 0; p < B_PAIRS && rc == 0; p++) {
		rc = bwriter_slice(bw, s, false, slice_ns, &out->parked[p]);
		set_active(s, 1);
		if (rc == 0)
			rc = bwriter_slice(bw, s, lock, slice_ns, &out->active[p]);
		set_active(s, 0);
		active_ns += out->active[p].ns;
		bars += out->active[p].bars;
		bar_ns += out->active[p].bar_ns;
	}
	if (rc == 0)
		rc = bwriter_slice(bw, s, false, slice_ns, &out->parked[B_PAIRS]);
	bw->stamp = false;
collect:
	store_release(&s->stop, 1);
	set_active(s, 1);
	uint64_t reads = 0;
	for (int i = 0; i < nr; i++) {
		int st;
		waitpid(pid[i], &st, 0);
		if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
			fprintf(stderr, "rcu: reader process failed (status %d)\n", st);
			rc = rc ? rc : -EIO;
		}
		reads += s->reads[i];
	}
	if (rc)
		return rc;
	double r[B_PAIRS], cr[B_PAIRS], tp[B_PAIRS + 1], ta[B_PAIRS];
	double cp[B_PAIRS + 1], ca[B_PAIRS], sa[B_PAIRS];
	for (int p = 0; p <= B_PAIRS; p++) {
		tp[p] = out->parked[p].tput;
		cp[p] = out->parked[p].cpu_ns;
	}
	for (int p = 0; p < B_PAIRS; p++) {
		const struct bslice *a = &out->active[p], *b0 = &out->parked[p],
				    *b1 = &out->parked[p + 1];
		r[p] = a->tput / ((b0->tput + b1->tput) / 2.0);
		cr[p] = ((b0->cpu_ns + b1->cpu_ns) / 2.0) / a->cpu_ns;
		ta[p] = a->tput;
		ca[p] = a->cpu_ns;
		sa[p] = a->cpu_share;
	}
	out->ratio = median(r, B_PAIRS);
	out->cpu_ratio = median(cr, B_PAIRS);
	out->tput_parked = median(tp, B_PAIRS + 1);
	out->tput_active = median(ta, B_PAIRS);
	out->cpu_parked = median(cp, B_PAIRS + 1);
	out->cpu_active = median(ca, B_PAIRS);
	out->share_active = median(sa, B_PAIRS);
	out->reads = (double)reads * 1e9 / (double)active_ns;
	out->bars_per_s = (double)bars * 1e9 / (double)active_ns;
	out->bar_share = (double)bar_ns / (double)active_ns;
	out->bar_ns = bars ? (double)bar_ns / (double)bars : 0;
	for (int p = 0; p <= B_PAIRS; p++)
		cp[p] = out->parked[p].backlog;
	for (int p = 0; p < B_PAIRS; p++)
		ca[p] = out->active[p].backlog;
	out->backlog_parked = median(cp, B_PAIRS + 1);
	out->backlog_active = median(ca, B_PAIRS);
	out->stale_p50_us = (double)s->stale_p50_ns / 1000.0;
	out->stale_p99_us = (double)s->stale_p99_ns / 1000.0;
	out->stale_n = (double)s->stale_n;
	return 0;
}

static void bench_rcu_writer(const struct rcu_opts *o, struct rcu_shared *s,
			     struct shm_rcu *w, struct shm_rcu *wf,
			     struct bmode res[B_NMODES])
{
	struct bwriter bw, bwf;
	static const char *const names[B_NMODES] = {
		"rcu reader",      "rwlock reader", "rcu reader (f)", "4 rcu readers",
		"4 paced readers", "stale reader",  "cpu spinner"};
	uint64_t slice = o->iters >= 10000000 ? 100000000ull : 25000000ull;
	for (int m = 0; m < B_NMODES; m++) {
		memset(&res[m], 0, sizeof(res[m]));
		res[m].ratio = NAN;
	}
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
	bw.last_id = bwf.last_id = &s->last_id;
	/* Warm the books up to their steady state: every order record used
	 * and recycled at least once. */
	for (int i = 0; i < 600000; i++) {
		bwriter_step(&bw);
		bwriter_step(&bwf);
	}
	fprintf(stderr,
		"rcu: writer with readers, %d pairs of %.0f ms slices per mode "
		"(readers parked | reading)%s\n",
		B_PAIRS, (double)slice / 1e6, pinned ? ", writer on CPU 0" : "");
	for (int k = 0; k < o->nprobe; k++) {
		struct bmode *r = &res[k];
		probe_reads = o->probe[k];
		in_probe = true;
		if (bwriter_mode(&bw, s, o->inst, B_RCU, slice, r) != 0) {
			r->ratio = NAN;
			fprintf(stderr, "rcu: probe %s: run failed\n",
				probe_name(o->probe[k]));
			continue;
		}
		fprintf(stderr,
			"rcu: probe %-17s writer %9.0f | %9.0f requests/s (ratio %.3f), "
			"%8.0f reads/s, writer CPU %5.1f | %5.1f ns/request, "
			"%.0f ns of writer time per read, backlog %.0f | %.0f records\n",
			probe_name(o->probe[k]), r->tput_parked, r->tput_active, r->ratio,
			r->reads, r->cpu_parked, r->cpu_active,
			r->reads > 0 ? (r->cpu_active - r->cpu_parked) * r->tput_active /
					       r->reads
				     : 0.0,
			r->backlog_parked, r->backlog_active);
	}
	probe_reads = PROBE_ALL;
	in_probe = false;
	for (int m = 0; o->nprobe == 0 && m < B_NMODES; m++) {
		bool f = m == B_RCU_F;
		struct bmode *r = &res[m];
		if (bwriter_mode(f ? &bwf : &bw, s, f ? o->inst_f : o->inst,
				 (enum b_mode)m, slice, r) != 0) {
			r->ratio = NAN;
			fprintf(stderr, "rcu: %s: run failed\n", names[m]);
			continue;
		}
		fprintf(stderr,
			"rcu: %-15s %9.0f | %9.0f requests/s (ratio %.3f), "
			"%8.0f reads/s, writer CPU %5.1f | %5.1f ns/request "
			"(ratio %.3f), %5.1f%% of a CPU, %4.0f membarrier/s "
			"(%.1f%% of its time), backlog %.0f | %.0f records\n",
			names[m], r->tput_parked, r->tput_active, r->ratio, r->reads,
			r->cpu_parked, r->cpu_active, r->cpu_ratio,
			r->share_active * 100.0, r->bars_per_s, r->bar_share * 100.0,
			r->backlog_parked, r->backlog_active);
	}
	if (pinned && sched_setaffinity(0, sizeof(old), &old) != 0)
		fprintf(stderr, "rcu: cannot restore the CPU mask\n");
	bwriter_free(&bwf, o->inst_f);
	bwriter_free(&bw, o->inst);
}

/* --------------------------------------------------------------------------- */

static void usage(FILE *f)
{
	fprintf(f, "usage: shmex-bench rcu [--iters N] [--quick] [--pin] [--probe=LIST] "
		   "[--readers=N]\n"
		   "  read-side enter+leave: shmex reader table (default mode and\n"
		   "  fence mode) vs liburcu memb vs process-shared rwlock;\n"
		   "  writer-side cost of readers and of the membarrier calls.\n"
		   "  --pin: the matcher runs on CPU 0, its readers on the others.\n"
		   "  --probe=LIST: only the one-reader writer ratio, once per entry\n"
		   "  of LIST, a comma list of what the reader reads: none (empty\n"
		   "  read-side sections) or depth, top, order joined by + (which\n"
		   "  structure's lines cost the writer); private: no shared memory,\n"
		   "  loads and stores to the reader's own buffer (the control).\n"
		   "  --readers=N: reader processes of each probe (1 to 4).\n"
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
		{"probe", required_argument, NULL, 'P'},
		{"readers", required_argument, NULL, 'r'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	int c;
	optind = 1;
	while ((c = getopt_long(argc, argv, "n:qpP:r:h", longopts, NULL)) != -1) {
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
		case 'r':
			errno = 0;
			probe_nreaders = (int)strtol(optarg, &end, 10);
			if (errno || *end || probe_nreaders < 1 ||
			    probe_nreaders > B_MAXREADERS) {
				fprintf(stderr, "rcu: bad --readers '%s' (1 to %d)\n",
					optarg, B_MAXREADERS);
				return 2;
			}
			break;
		case 'P':
			if (probe_parse(optarg, &o) != 0) {
				fprintf(stderr,
					"rcu: bad --probe '%s' (a comma list of none, "
					"private, or depth, top, order joined by +)\n",
					optarg);
				return 2;
			}
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

	if (o.nprobe > 0) {
		struct bmode b[B_NMODES > 8 ? B_NMODES : 8];
		bench_rcu_writer(&o, s, &w, &wf, b);
		printf("RESULT rcu_probe");
		for (int k = 0; k < o.nprobe; k++)
			printf(" %s=%.3f", probe_name(o.probe[k]), b[k].ratio);
		printf("\n");
		rc = 0;
		goto out_detach_f;
	}
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

	struct bmode b[B_NMODES];
	bench_rcu_writer(&o, s, &w, &wf, b);
	const struct bmode *b1 = &b[B_RCU], *b4 = &b[B_RCU4], *bp = &b[B_PACED],
			   *bs = &b[B_STALE];
	fprintf(stderr,
		"rcu: matcher membarrier calls (%s table, rcu runs): %.0f/s, "
		"%.0f ns each, %.3f%% of its time\n",
		mode_name(&w), b1->bars_per_s, b1->bar_ns, b1->bar_share * 100.0);

	printf("rcu: table mode %s: read_ns/urcu_read_ns=%.2f rwlock_read_ns/read_ns=%.2f "
	       "two-reader rwlock/shmex=%.2f\n",
	       mode_name(&w), shmex_ns / urcu_ns, rwlock_ns / shmex_ns,
	       two_rwlock / two_shmex);
	printf("rcu: fence mode for comparison: fence_mode_read_ns=%.2f "
	       "fence_mode_writer_ratio_rcu=%.3f read_ns/fence_mode_read_ns=%.3f\n",
	       shmexf_ns, b[B_RCU_F].ratio, shmex_ns / shmexf_ns);
	printf("rcu: readers' cost: writer CPU ns/request parked | reading: 1 reader "
	       "%.1f | %.1f, 4 readers %.1f | %.1f (writer had %.0f%% of a CPU with "
	       "4 readers), 4 paced %.1f | %.1f; staleness p50 %.1f us, p99 %.1f us "
	       "over %.0f samples; paced readers did %.0f reads/s\n",
	       b1->cpu_parked, b1->cpu_active, b4->cpu_parked, b4->cpu_active,
	       b4->share_active * 100.0, bp->cpu_parked, bp->cpu_active, bs->stale_p50_us,
	       bs->stale_p99_us, bs->stale_n, bp->reads);
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
	       "writer_cpu_ratio_rcu_paced=%.3f paced_reads_per_s=%.0f "
	       "staleness_p50_us=%.1f staleness_p99_us=%.1f "
	       "writer_ratio_spinner=%.3f\n",
	       shmex_ns, urcu_ns, rwlock_ns, b1->ratio, b[B_RWLOCK].ratio, fence_ns,
	       two_shmex, two_urcu, two_rwlock, busy_ns, poll_ns, asym_ns, polle_ns,
	       shmexf_ns, b[B_RCU_F].ratio, busyf_ns, pollf_ns,
	       shm_rcu_table_mode(&w) == SHM_RCU_MODE_ASYM, b1->bars_per_s, b1->bar_ns,
	       b1->bar_share, b4->ratio, bp->ratio, b1->cpu_ratio, b4->cpu_ratio,
	       b4->share_active, bp->cpu_ratio, bp->reads, bs->stale_p50_us,
	       bs->stale_p99_us, b[B_SPIN].ratio);
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
