/*
 * eng_matcher: the matcher process of one symbol shard, as a library.
 *
 * It owns the shard's regions (book.<k>, positions.<k>, readers.<k>),
 * attaches the instance's control, rings and accounts regions, and runs
 * the loop: drain every gateway's request ring in batches, copy each
 * message out once, validate it, apply it (matching core + account and
 * position rules), answer on the (shard, gateway) reply ring, advance the
 * reader epoch once per batch and poll reclamation, sleep on the shard's
 * doorbell when there is nothing to do.  docs/matcher.md has the loop,
 * the apply rules, the reservation arithmetic and the startup protocol.
 *
 * Everything but the instance and the shard comes from the instance's
 * settings (shm/shm_settings.h), recorded by its creator in the control
 * region: capacities, self-trade mode, batch, spin, idle tick, drain time,
 * logging.
 *
 * Startup (eng_matcher_open), in this order, so that the readiness test
 * (shm_instance_matcher_ready: member slot names us AND the three regions
 * attach) can only pass once everything is usable:
 *   1. attach the instance read-only to learn its settings;
 *   2. remove stale leftovers of book.<k>, positions.<k>, readers.<k>
 *      (SHMEX_EINUSE when a live process created them: another matcher);
 *   3. attach accounts (RDWR), recover abandoned account creations of
 *      this home shard;
 *   4. create positions.<k> and readers.<k> (published), create book.<k>
 *      (mode 0640) and lay the book out in it;
 *   5. attach the instance as SHM_ROLE_MATCHER (member slot = our pid),
 *      attach every request and reply ring;
 *   6. publish book.<k> [R0]: the last step, the "ready" signal.
 *
 * Concurrency: one thread calls everything but eng_matcher_stop, which is
 * async-signal-safe (a relaxed store of a flag the loop polls; the doorbell
 * sleep returns on EINTR and on its idle tick, so a stop is seen within one
 * tick).  Other processes (gateways, readers, other shards' matchers) run
 * concurrently through the shared regions; none of them can block this
 * loop: a full reply ring parks that gateway's replies privately (and stops
 * reading that gateway's requests) instead of waiting.
 */
#ifndef SHMEX_ENGINE_ENG_MATCHER_H
#define SHMEX_ENGINE_ENG_MATCHER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "shm/shm_error.h"
#include "shm/shm_msg.h"

struct eng_matcher;

struct eng_matcher_stats {
	uint64_t requests; /* messages taken from request rings */
	uint64_t rejects;  /* answered with a non-zero status */
	uint64_t invalid;  /* of those: failed shm_msg validation */
	uint64_t orders, cancels, modifies, accounts, add_shares; /* applied */
	uint64_t fills;                                           /* trades settled */
	uint64_t rounds;          /* loop rounds that took messages */
	uint64_t sleeps;          /* doorbell waits that went to sleep */
	uint64_t replies_parked;  /* replies that found their ring full */
	uint64_t replies_dropped; /* undeliverable at stop (gateway gone) */
	uint64_t ring_errors;     /* corrupt ring indexes seen */
	uint64_t ring_repairs;    /* gateway paths repaired with us */
	uint64_t internal;        /* account steps that failed mid-request */
	uint64_t epoch;           /* current reader epoch */
	uint64_t safe_epoch;      /* last safe epoch given to the book */
	uint64_t levels_reclaimed;
	uint64_t freezes;           /* pauses for another shard's restart */
	uint64_t journal_failed;    /* 1 once the journal could not be written */
	uint64_t recovered_records; /* journal records replayed at start */
	uint64_t recovery_ns;       /* time the replay took */
	uint64_t snapshot_seq;      /* last record of the snapshot started from */
	uint64_t snapshots;         /* snapshots written */
	uint64_t snapshot_ns;       /* time the last one took to write */
};

/*
 * Startup of shard `shard` of `instance`, steps 1-6 above.  On failure
 * nothing this call created is left behind (its regions are unlinked
 * again), and err (may be NULL) gets one line naming the object and the
 * reason, e.g. "shm_open /shmex.x.control: No such file or directory".
 * Errors: SHMEX_EBADNAME (instance name), SHMEX_EBADINDEX (shard out of
 * range), SHMEX_EINUSE (another live matcher owns the shard), region and
 * capacity errors.
 */
int eng_matcher_open(struct eng_matcher **out, const char *instance, uint32_t shard,
		     struct shmex_error *err) __attribute__((warn_unused_result));

/* The settings this matcher runs with (a validated copy). */
const struct shm_settings *eng_matcher_settings(const struct eng_matcher *m);

/*
 * The loop.  Returns 0 after a stop (eng_matcher_stop, or the instance's
 * `stopping` flag) once every request ring was drained and every reply
 * delivered (replies for a gateway whose ring stays full past drain_ms are
 * dropped and counted).  Returns a negative error only when sleeping on
 * the doorbell fails unexpectedly.
 */
int eng_matcher_run(struct eng_matcher *m) __attribute__((warn_unused_result));

/* Asks the loop to drain and return.  Async-signal-safe. */
void eng_matcher_stop(struct eng_matcher *m);

/*
 * Applies one request (a private copy, validated here) and fills *rep as
 * the reply contract in shm/shm_msg.h says.  The loop calls it for every
 * message; exposed for benchmarks.  Time is CLOCK_REALTIME, the sequence
 * number the next of this shard.
 */
void eng_matcher_apply(struct eng_matcher *m, const struct shm_msg *req,
		       struct shm_msg *rep);

void eng_matcher_get_stats(const struct eng_matcher *m, struct eng_matcher_stats *st);

/* Detaches everything (regions stay: the supervisor unlinks them) and
 * frees the handle.  The member slot is cleared.  Safe on NULL. */
void eng_matcher_close(struct eng_matcher *m);

#endif
