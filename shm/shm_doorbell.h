/*
 * shm_doorbell: a futex in shared memory that lets one consumer sleep while
 * its input is empty and lets any number of producers wake it, with a system
 * call only when the consumer really sleeps.
 *
 * One doorbell serves one consumer process, which may drain several rings
 * (the matcher drains one ring per gateway, all of which ring the shard's
 * doorbell).  Producers call shm_doorbell_ring() after publishing work; the
 * consumer calls shm_doorbell_wait() with a predicate that says whether
 * there is work.  The protocol is Dekker's: the consumer announces "I am
 * going to sleep" and then re-checks for work, the producer publishes work
 * and then checks for a sleeper, with a full fence between the store and the
 * load on each side; at least one side sees the other, so a wake-up cannot
 * be lost (docs/ring.md walks through every interleaving).
 *
 * Concurrency: shm_doorbell_wait from exactly one process (thread) at a
 * time; shm_doorbell_ring from any number of processes, concurrently with
 * each other and with the wait; shm_doorbell_stats from anyone, including a
 * read-only mapping.
 */
#ifndef SHMEX_SHM_DOORBELL_H
#define SHMEX_SHM_DOORBELL_H

#include <stdbool.h>
#include <stdint.h>

#include "shm/shm_atomic.h"

/* How long a waiting consumer spins before it sleeps, by default. */
#define SHM_DOORBELL_SPIN_NS_DEFAULT 30000u

/* One cache line in shared memory.  Zero-filled memory is a valid, idle
 * doorbell (shm_doorbell_init only spells that out). */
struct shm_doorbell_sh {
	/* The futex word.  W: producers that saw `sleeping`, fetch_add
	 * (acq_rel) [DB3] before FUTEX_WAKE; R: consumer, acquire [DB1]
	 * before announcing sleep, and the kernel's FUTEX_WAIT compare.
	 * Only grows (wraps at 2^32, harmlessly). */
	uint32_t seq;
	/* 1 while the consumer may be in FUTEX_WAIT, else 0.  W: consumer,
	 * store + full fence [DB2] before re-checking for work;
	 * cleared relaxed after waking (a stale 1 only costs a spurious
	 * wake).  R: producers, after their full fence [DB4]. */
	uint32_t sleeping;
	/* Statistics.  sleeps: W: consumer only, relaxed (single writer,
	 * read by tools that tolerate staleness).  wakes: W: producers,
	 * fetch_add relaxed (several writers, counter only).  R: anyone,
	 * relaxed. */
	uint64_t sleeps;
	uint64_t wakes;
	uint64_t reserved[5];
} shm_aligned;
_Static_assert(sizeof(struct shm_doorbell_sh) == SHM_CACHE_LINE,
	       "a doorbell is one cache line");

struct shm_doorbell_stats {
	uint64_t sleeps; /* times the consumer entered FUTEX_WAIT */
	uint64_t wakes;  /* FUTEX_WAKE calls made by producers */
	bool sleeping;   /* consumer announced sleep (snapshot) */
};

/* Resets a doorbell in memory nobody else uses yet. */
void shm_doorbell_init(struct shm_doorbell_sh *db);

/*
 * Producer side: call after publishing work with a release store.  Issues
 * a full fence [DB4] (pairs with DB2) and then, only when the consumer
 * announced that it sleeps, bumps the futex word [DB3] and FUTEX_WAKEs it.
 * No system call while the consumer is awake.  Safe from several producers.
 */
void shm_doorbell_ring(struct shm_doorbell_sh *db);

/* Says whether there is work; called by the waiting consumer, must read
 * the shared state afresh each time (no private caching of "empty"). */
typedef bool (*shm_doorbell_ready_fn)(void *arg);

/*
 * Consumer side: returns 0 as soon as ready(arg) is true.  Spins for up to
 * spin_ns (cpu_relax between the first 64 checks, sched_yield between the
 * later ones), then sleeps on the futex; wakes on a
 * producer's ring, a signal, or the timeout.  timeout_ms < 0 waits forever;
 * 0 checks once without sleeping.  Returns SHMEX_ETIMEDOUT when the time is
 * up and ready() is still false (the normal idle tick of a consumer loop),
 * -EINTR when a signal interrupted the sleep (so the caller can look at its
 * flags), or another negative errno when the futex call fails unexpectedly
 * (-EFAULT, -ENOSYS).  Only one waiter per doorbell.
 */
int shm_doorbell_wait(struct shm_doorbell_sh *db, shm_doorbell_ready_fn ready, void *arg,
		      uint32_t spin_ns, int timeout_ms)
	__attribute__((warn_unused_result));

/* Snapshot of the counters (relaxed loads; for stats tools and tests). */
void shm_doorbell_stats(const struct shm_doorbell_sh *db, struct shm_doorbell_stats *st);

#endif
