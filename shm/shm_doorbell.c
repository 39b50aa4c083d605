/*
 * shm_doorbell: spin-then-sleep waiting on a futex in shared memory (see
 * shm_doorbell.h for the contract).
 *
 * Why this shape: a consumer that polls forever burns a core while the
 * exchange is idle; one that sleeps on every empty poll pays a system call
 * per message and a wake-up latency per burst.  So the consumer spins for a
 * few tens of microseconds (a burst usually continues within that time),
 * then announces that it sleeps and blocks in FUTEX_WAIT.  A producer pays
 * one full fence per batch and a FUTEX_WAKE only while the consumer sleeps:
 * a busy exchange makes no system calls per message, an idle one uses ~0%
 * CPU.
 *
 * The lost wake-up argument (Dekker; docs/ring.md has the full table):
 *
 *   consumer                          producer
 *   s = seq                [DB1]      publish work (release)
 *   sleeping = 1; fence    [DB2]      fence                   [DB4]
 *   if ready(): return                if sleeping:
 *   FUTEX_WAIT(&seq, s)                   seq++               [DB3]
 *                                         FUTEX_WAKE(&seq)
 *
 * With a full fence between each side's store and its load, the consumer's
 * ready() sees the work or the producer sees sleeping == 1 (or both).  In
 * the second case the producer bumps seq after the consumer read s, so
 * FUTEX_WAIT either finds seq != s and returns at once, or is already
 * queued and gets the FUTEX_WAKE.  The futex is used without
 * FUTEX_PRIVATE_FLAG because waiter and wakers are different processes
 * mapping the same page at different addresses.
 *
 * Invariants: one waiter per doorbell; `seq` only grows; `sleeping` is 1
 * from DB2 until the waiter returns from FUTEX_WAIT (a stale 1 costs one
 * spurious wake, never a lost one).
 *
 * Spinning on a machine with fewer CPUs than busy processes steals the CPU
 * from the very producer we wait for, so the spin phase is a short pure
 * spin (SPIN_PURE_POLLS) followed by polls separated by sched_yield(): a
 * runnable producer on this CPU gets it at once, and with nobody else
 * runnable the yield returns immediately.
 *
 * Limits: the pure spin reads the clock every 16 polls and the yielding
 * spin at every poll, so spin_ns is honoured to within a microsecond or
 * so; a signal interrupts the sleep and the wait returns -EINTR so the
 * caller can look at its flags.
 */
#include "shm/shm_doorbell.h"

#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <sched.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "shm/shm_error.h"
#include "shm/shm_clock.h"

/* Polls of the spin phase that only pause (cpu_relax) before each poll
 * starts with a sched_yield: about a microsecond of pure spinning. */
#define SPIN_PURE_POLLS 64u

/* Shared (not private) futex operations: the word lives in a MAP_SHARED
 * mapping used by several processes. */
static long futex_wait_shared(uint32_t *word, uint32_t expected,
			      const struct timespec *rel)
{
	return syscall(SYS_futex, word, FUTEX_WAIT, expected, rel, NULL, 0);
}

static long futex_wake_shared(uint32_t *word)
{
	return syscall(SYS_futex, word, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
}

void shm_doorbell_init(struct shm_doorbell_sh *db)
{
	memset(db, 0, sizeof(*db));
}

void shm_doorbell_ring(struct shm_doorbell_sh *db)
{
	/* DB4: orders the caller's publication of work (its release store
	 * of a ring head) before the load of `sleeping`; pairs with DB2. */
	fence_full();
	/* Relaxed: DB4 already ordered this load after the publication. */
	if (!load_relaxed(&db->sleeping))
		return;
	/* DB3: makes the consumer's FUTEX_WAIT(seq = s) fail or wake;
	 * pairs with DB1. */
	fetch_add_acq_rel(&db->seq, 1);
	/* Relaxed: a statistics counter shared by several producers. */
	fetch_add_relaxed(&db->wakes, 1);
	futex_wake_shared(&db->seq);
}

static int sleep_once(struct shm_doorbell_sh *db, shm_doorbell_ready_fn ready, void *arg,
		      uint64_t deadline, bool forever)
{
	/* DB1: the value FUTEX_WAIT compares against; read before the
	 * announcement so that any DB3 that follows a producer's sight of
	 * our `sleeping` makes the futex word differ.  Pairs with DB3. */
	uint32_t s = load_acquire(&db->seq);
	/* Relaxed store, then DB2: the full fence orders the announcement
	 * before ready()'s loads of the rings; pairs with DB4. */
	store_relaxed(&db->sleeping, 1u);
	fence_full();
	if (ready(arg)) {
		/* Relaxed: a stale 1 costs a producer one spurious wake. */
		store_relaxed(&db->sleeping, 0u);
		return 0;
	}
	struct timespec rel, *relp = NULL;
	if (!forever) {
		uint64_t t = shm_clock_ns(CLOCK_MONOTONIC);
		if (t >= deadline) {
			store_relaxed(&db->sleeping, 0u);
			return SHMEX_ETIMEDOUT;
		}
		uint64_t left = deadline - t;
		rel.tv_sec = (time_t)(left / 1000000000u);
		rel.tv_nsec = (long)(left % 1000000000u);
		relp = &rel;
	}
	/* Relaxed: only this consumer writes `sleeps`. */
	store_relaxed(&db->sleeps, load_relaxed(&db->sleeps) + 1);
	long rc = futex_wait_shared(&db->seq, s, relp);
	int err = rc < 0 ? errno : 0;
	store_relaxed(&db->sleeping, 0u);
	if (err == EINTR)
		return -EINTR;
	if (err && err != EAGAIN && err != ETIMEDOUT)
		return -err;
	return ready(arg) ? 0 : 1; /* 1: go round again */
}

int shm_doorbell_wait(struct shm_doorbell_sh *db, shm_doorbell_ready_fn ready, void *arg,
		      uint32_t spin_ns, int timeout_ms)
{
	if (ready(arg))
		return 0;
	if (timeout_ms == 0)
		return SHMEX_ETIMEDOUT;
	bool forever = timeout_ms < 0;
	uint64_t start = shm_clock_ns(CLOCK_MONOTONIC);
	uint64_t deadline =
		forever ? UINT64_MAX : start + (uint64_t)timeout_ms * 1000000u;
	uint64_t spin_end = start + spin_ns;
	if (spin_end > deadline)
		spin_end = deadline;

	for (unsigned i = 1; spin_ns > 0; i++) {
		/* The first polls are pure spins (the producer is likely
		 * running on another CPU right now); after that each poll
		 * yields, so a producer waiting for this CPU runs at once
		 * (sched_yield returns immediately when nobody else wants
		 * the CPU, and then this is an ordinary spin). */
		if (i <= SPIN_PURE_POLLS)
			cpu_relax();
		else
			sched_yield();
		if (ready(arg))
			return 0;
		if ((i > SPIN_PURE_POLLS || (i & 15) == 0) &&
		    shm_clock_ns(CLOCK_MONOTONIC) >= spin_end)
			break;
	}
	for (;;) {
		int rc = sleep_once(db, ready, arg, deadline, forever);
		if (rc <= 0)
			return rc;
		if (!forever && shm_clock_ns(CLOCK_MONOTONIC) >= deadline)
			return SHMEX_ETIMEDOUT;
	}
}

void shm_doorbell_stats(const struct shm_doorbell_sh *db, struct shm_doorbell_stats *st)
{
	/* Relaxed: a snapshot for humans and tests; no ordering promised. */
	st->sleeps = load_relaxed(&db->sleeps);
	st->wakes = load_relaxed(&db->wakes);
	st->sleeping = load_relaxed(&db->sleeping) != 0;
}
