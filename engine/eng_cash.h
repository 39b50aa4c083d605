/*
 * eng_cash: a matcher's side of the global cash accounts, made safe to
 * recover.
 *
 * Every shard moves every account's cash (shm_accounts.h), but only its own
 * journal survives its death.  So a shard must never let another shard
 * spend cash that its own journal might lose, and must always know what it
 * did to the accounts.  This module is where both rules are kept:
 *
 *  - Debits happen at once (a reservation must check the balance
 *    atomically against every other shard): balance -= x, reserved += x.
 *    A debit enables nothing for anybody else, so losing it in a crash
 *    only ever means the cash comes back.
 *  - Credits wait (cancels, refunds, sellers' proceeds, new accounts):
 *    they are queued with the journal sequence of the request that made
 *    them, and applied only once eng_cash_commit() says that sequence is
 *    on disk.  Until then this shard's own later requests may already use
 *    them (a reservation counts the account's pending credits as an
 *    allowance), because both records reach the disk in order, but no
 *    other shard can see them.
 *  - Every change this shard applies is also added to its ledger
 *    (shm_ledger.h) in the same step, so a successor can find out exactly
 *    what was applied.
 *
 * A second mode replays a journal: the same operations, no checks (the
 * journal says they succeeded) and no shared accounts, only a private
 * ledger of this shard's part, which recovery then applies (eng_recover).
 *
 * Concurrency: the matcher thread only.
 */
#ifndef SHMEX_ENGINE_ENG_CASH_H
#define SHMEX_ENGINE_ENG_CASH_H

#include <stdbool.h>
#include <stdint.h>

#include "shm/shm_accounts.h"
#include "shm/shm_ledger.h"

struct eng_cash;

/* An account as the cash operations address it. */
struct eng_cash_acct {
	uint64_t id;
	uint32_t idx; /* slot in the accounts region (live mode) */
};

/* Live: accounts and ledger are the shared regions (RDWR).  Replay:
 * both NULL; the part is kept privately. */
int eng_cash_open(struct eng_cash **out, struct shm_accounts *accounts,
		  struct shm_ledger *ledger) __attribute__((warn_unused_result));
void eng_cash_close(struct eng_cash *c);
bool eng_cash_replaying(const struct eng_cash *c);

/* Journal sequence of the request being applied: credits queued from now
 * on wait for it. */
void eng_cash_set_tag(struct eng_cash *c, uint64_t seq);

/* The account, when it exists (published); SHMEX_ENOACCOUNT.  In replay
 * every account exists. */
int eng_cash_find(struct eng_cash *c, uint64_t id, struct eng_cash_acct *a)
	__attribute__((warn_unused_result));

/* A new account with its first deposit.  Live: claimed now, published at
 * commit; SHMEX_EACCOUNTEXISTS, SHMEX_EACCOUNTSFULL, ... as
 * shm_accounts_add. */
int eng_cash_create(struct eng_cash *c, uint64_t id, shm_cash_t deposit)
	__attribute__((warn_unused_result));

/* Debit: balance -= x, reserved += x (SHMEX_ENOFUNDS, checked with this
 * shard's pending credits as allowance). */
int eng_cash_reserve(struct eng_cash *c, const struct eng_cash_acct *a, int64_t x)
	__attribute__((warn_unused_result));
/* Undoes a reservation the current request made and then could not use
 * (the request is rejected and never journaled): at once. */
void eng_cash_unreserve_now(struct eng_cash *c, const struct eng_cash_acct *a, int64_t x);
/* Credits, queued until commit: reserved -= dres_out, balance += dbal_in. */
int eng_cash_release(struct eng_cash *c, const struct eng_cash_acct *a, int64_t x);
void eng_cash_settle_buy(struct eng_cash *c, const struct eng_cash_acct *a,
			 int64_t release, int64_t refund);
void eng_cash_credit(struct eng_cash *c, const struct eng_cash_acct *a, int64_t x);

/* Applies every queued credit (and publishes every new account) whose
 * tag is <= durable.  Returns how many were applied. */
unsigned eng_cash_commit(struct eng_cash *c, uint64_t durable);
/* True when account `id` was created by this shard and its creation is
 * not yet committed (claimed, not yet findable).  Cheap when no creation
 * is queued. */
bool eng_cash_creating(const struct eng_cash *c, uint64_t id);
/* Queued items not yet applied. */
uint64_t eng_cash_pending(const struct eng_cash *c);

/* Replay: the part kept so far, one entry per account (unordered).
 * Returns the number of entries; *parts stays owned by c. */
uint64_t eng_cash_parts(const struct eng_cash *c, const struct shm_ledger_part **parts);
/* Replay: the account's part (zero when none). */
void eng_cash_part(const struct eng_cash *c, uint64_t id, struct shm_ledger_part *p);
/* Replay: the part is loaded from a snapshot's ledger. */
int eng_cash_load_part(struct eng_cash *c, const struct shm_ledger_part *p)
	__attribute__((warn_unused_result));

/* Failures of cash steps that cannot fail on a consistent region. */
uint64_t eng_cash_internal_errors(const struct eng_cash *c);

#endif
