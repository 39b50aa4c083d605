/*
 * shm_ledger: what one shard has done to the global cash accounts, in the
 * region /shmex.<instance>.ledger.<shard> (kind SHM_KIND_LEDGER).
 *
 * Cash is global (shm_accounts.h: every matcher moves it with CAS), but a
 * shard's journal holds only that shard's part of it.  The ledger keeps
 * that part per account: the deposits the shard made as the accounts'
 * home shard, and the net change it applied to `balance` and `reserved`.
 * Whenever no cash operation is in the middle of being applied,
 *
 *     account.balance  = account.deposited + sum over shards of ledger.balance
 *     account.reserved =                     sum over shards of ledger.reserved
 *
 * which is how a restarted matcher learns exactly what its dead
 * predecessor applied (the accounts minus every other shard's ledger, with
 * the other matchers paused at a clean point: docs/durability.md), and how
 * recovery puts a shard's durable part back.
 *
 * The supervisor creates the ledgers with the instance, so they outlive a
 * matcher; the matcher of the shard is the only writer (its member slot
 * makes it the only one), every other process reads.
 *
 *   body + 0     struct shm_ledger_hdr_sh    (9 cache lines)
 *   body + 576   struct shm_ledger_ent_sh [nslots]  (64 bytes each)
 *
 * Entries: open addressing by account id, insert-only while a matcher
 * runs (rewritten whole during recovery, while the other matchers are
 * paused or not yet trading).  Fields are written with relaxed stores by
 * the single writer; a reader that needs exact values reads them while the
 * writer is paused at a clean point (freeze, after acquiring its ack
 * [LG2]) or stopped; otherwise the values are informative.
 *
 * Concurrency: one writer (shard k's matcher), any readers; readers never
 * block it.
 */
#ifndef SHMEX_SHM_LEDGER_H
#define SHMEX_SHM_LEDGER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "shm/shm_atomic.h"
#include "shm/shm_atomic16.h"
#include "shm/shm_dec.h"
#include "shm/shm_region.h"
#include "shm/shm_settings.h"

/* Region header capacity[] of a ledger region. */
enum {
	SHM_LEDGER_CAP_SHARD = 0,
	SHM_LEDGER_CAP_SLOTS = 1, /* power of two */
};

/* Start barrier of a whole exchange (every matcher recovers at once). */
enum shm_ledger_phase {
	SHM_LEDGER_PHASE_NONE = 0,     /* no matcher has started */
	SHM_LEDGER_PHASE_ACCOUNTS = 1, /* its home accounts are created */
	SHM_LEDGER_PHASE_READY = 2,    /* its contributions are applied */
};

struct shm_ledger_hdr_sh {
	/* Matchers of this shard that became ready in this instance.
	 * W: the matcher, release when ready [LG3]; R: its successor, the
	 * supervisor, tools, acquire [LG4].  0 means "first start". */
	uint64_t incarnation;
	/* enum shm_ledger_phase.  W: the matcher, release [LG5] after the
	 * step it names; R: the other matchers at start, acquire [LG6]. */
	uint32_t phase;
	/* Last freeze generation this matcher is paused for.  W: the
	 * matcher, release [LG1] at a clean point (every cash operation
	 * applied, its ledger updated); R: the freezing matcher, acquire
	 * [LG2], before it reads this ledger and the accounts. */
	uint32_t freeze_ack;
	/* Journal sequence whose cash effects are all applied (to the
	 * accounts and to this ledger).  W: matcher, relaxed; R: tools. */
	uint64_t applied_seq;
	/* Entries in use.  W: matcher, relaxed; R: tools. */
	uint64_t used;
	uint64_t pad0[4];
	/* Per gateway: the last journal sequence whose replies to that
	 * gateway are all on its reply ring.  A successor answers again
	 * what comes after (the gateway drops what it already has).
	 * W: matcher, release [LG7] after the ring's own release; R: the
	 * successor, acquire [LG8]. */
	uint64_t replied[SHM_INSTANCE_GATEWAYS_MAX];
};
_Static_assert(sizeof(struct shm_ledger_hdr_sh) == 9 * 64, "ledger header");

/* Cash fields are shm_cash_t (128 bits, 16-byte aligned), stored and
 * loaded whole with store16/load16 (shm_atomic16.h), so a reader that
 * races the writer sees each field at a value it had, never torn. */
struct shm_ledger_ent_sh {
	uint64_t key; /* account id + 1; 0 = empty.  Set once. */
	uint64_t pad;
	shm_cash_t deposit;  /* deposits made here (home shard), CASH */
	shm_cash_t balance;  /* net change applied to balance, CASH */
	shm_cash_t reserved; /* net change applied to reserved, CASH */
};
_Static_assert(sizeof(struct shm_ledger_ent_sh) == 64, "ledger entry");
_Static_assert(offsetof(struct shm_ledger_ent_sh, deposit) == 16, "ledger entry");

struct shm_ledger {
	struct shm_region region;
	struct shm_ledger_hdr_sh *hdr;
	struct shm_ledger_ent_sh *ent;
	uint32_t shard;
	uint32_t nslots, mask;
};

/* The part of one account, as the ledger holds it. */
struct shm_ledger_part {
	uint64_t account;
	uint64_t pad; /* zero */
	shm_cash_t deposit, balance, reserved;
};

/* Bytes of the body of one ledger for `accounts` accounts. */
size_t shm_ledger_bytes(uint64_t accounts);

/* Supervisor: creates and publishes the ledger of shard k for `accounts`
 * accounts (at least twice as many slots). */
int shm_ledger_create(struct shm_ledger *l, const char *instance, uint32_t shard,
		      uint64_t accounts, mode_t mode) __attribute__((warn_unused_result));
int shm_ledger_attach(struct shm_ledger *l, const char *instance, uint32_t shard,
		      enum shm_attach_mode mode) __attribute__((warn_unused_result));
void shm_ledger_detach(struct shm_ledger *l);

/* Writer: adds to the account's part (creating its entry).  SHMEX_EACCOUNTSFULL
 * when the table is full (never with as many slots as accounts), -EROFS. */
int shm_ledger_add(struct shm_ledger *l, uint64_t account, shm_cash_t deposit,
		   shm_cash_t balance, shm_cash_t reserved)
	__attribute__((warn_unused_result));
/* Writer, during recovery: empties the table (all entries). */
void shm_ledger_clear(struct shm_ledger *l);

/* Reader: the account's part (all zero when it has none). */
void shm_ledger_get(const struct shm_ledger *l, uint64_t account,
		    struct shm_ledger_part *p);
/* Reader: slot i (0 .. nslots-1); false when empty. */
bool shm_ledger_slot(const struct shm_ledger *l, uint32_t i, struct shm_ledger_part *p);

#endif
