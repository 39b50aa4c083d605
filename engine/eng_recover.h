/*
 * eng_recover: puts one shard's durable part of the cash back into the
 * shared accounts, after the shard's journal was replayed (eng_matcher.c
 * replays it into a fresh book and positions and into a private part,
 * eng_cash in replay mode).
 *
 * Two situations (docs/durability.md has the argument for each):
 *
 *  - The whole exchange starts on its data directory (every ledger's
 *    incarnation is 0): every matcher recovers at once.  A barrier on the
 *    ledgers' phase orders it: each matcher first creates its home
 *    accounts (phase ACCOUNTS), waits until every shard has, then adds its
 *    part to the accounts (phase READY).  Nobody trades before every
 *    matcher is ready (the supervisor starts gateways after).
 *
 *  - One matcher restarts while the others trade.  Its predecessor's
 *    part is in the accounts, exactly as far as it was applied, which its
 *    journal may not cover (debits of requests that never reached the
 *    disk, credits of durable requests not applied yet).  The restarting
 *    matcher pauses every other matcher at a clean point (the freeze:
 *    control region FZ*, ledgers' freeze_ack), computes what its
 *    predecessor applied as "the accounts minus the deposits minus every
 *    other shard's ledger", corrects each account by the difference to
 *    its durable part, rewrites its ledger, and lets the others go.  A
 *    pause of milliseconds; it needs every other matcher alive.
 *
 * Concurrency: called by the recovering matcher before it is ready.
 */
#ifndef SHMEX_ENGINE_ENG_RECOVER_H
#define SHMEX_ENGINE_ENG_RECOVER_H

#include <stdbool.h>
#include <stdint.h>

#include "engine/eng_cash.h"
#include "shm/shm_accounts.h"
#include "shm/shm_error.h"
#include "shm/shm_instance.h"
#include "shm/shm_ledger.h"

struct eng_recover_in {
	struct shm_instance *inst;     /* attached as this shard's matcher */
	struct shm_accounts *accounts; /* RDWR */
	struct shm_ledger *ledger;     /* this shard's, RDWR */
	const struct eng_cash *parts;  /* the replayed durable part */
	uint32_t shard, nshards;
	uint32_t timeout_ms; /* for the barrier or the freeze */
};

struct eng_recover_stats {
	uint64_t accounts_created; /* home accounts published */
	uint64_t abandoned;        /* creations that were not durable */
	uint64_t corrected;        /* accounts whose cash was corrected */
	uint64_t freeze_ns;        /* how long the others were paused */
};

/* The whole exchange starts: the barrier, then this shard's part. */
int eng_recover_full(const struct eng_recover_in *in, struct eng_recover_stats *st,
		     struct shmex_error *e) __attribute__((warn_unused_result));

/* This shard restarts while the others trade: the freeze.  SHMEX_ERECOVERY
 * when another matcher is not running (only a restart of the whole
 * exchange can then recover exactly) or does not pause in time. */
int eng_recover_restart(const struct eng_recover_in *in, struct eng_recover_stats *st,
			struct shmex_error *e) __attribute__((warn_unused_result));

/*
 * Every matcher, at the start of each loop round: when another matcher
 * holds the freeze, acknowledge it [LG1] (this is a clean point: every
 * cash step is applied and in the ledger) and wait until it is released
 * or `stop` becomes non-zero.  Returns true when it paused.
 */
bool eng_recover_freeze_point(struct shm_instance *inst, struct shm_ledger *ledger,
			      uint32_t shard, const int *stop);

#endif
