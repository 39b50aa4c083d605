/*
 * shm_accounts: the global cash accounts of an exchange, in the region
 * /shmex.<instance>.accounts (kind SHM_KIND_ACCOUNTS).
 *
 * Accounts are global while books are sharded, so the matchers of ALL
 * shards change any account's cash at the same time.  They do it with
 * atomic read-modify-writes (compare-and-swap loops) on the account's
 * fields, never with a lock: a matcher that dies in the middle of an
 * operation leaves every field at a value it really had, and nobody waits
 * for it.  Gateways and query tools read accounts (possibly through a
 * read-only mapping) with acquire loads through shm_accounts_read().
 *
 * The table is open addressing with linear probing, keyed by account id,
 * insert-only (accounts are never deleted).  An account is created by
 * claiming a slot with a CAS on its key (so two processes creating the same
 * id at the same moment get exactly one success), then initialising its
 * cash and publishing it with a release store of its state [AC1]; nobody
 * sees the account as existing before that.  In shmex CREATE_ACCOUNT is
 * applied by the account's home-shard matcher (shm_shard_of_account), but
 * the table does not depend on that: any number of processes may create.
 *
 * Cash is in CASH scale (shm_dec.h).  Per account:
 *   balance    available cash (>= 0)
 *   reserved   cash held by open buy orders (>= 0)
 *   deposited  every deposit ever made, the initial balance included
 * and the region keeps total_deposited = the sum over all accounts.  All
 * four are shm_cash_t (128 bits, shm_dec.h), changed with 16-byte CAS
 * (shm_atomic16.h): a deposit is at most SHM_CASH_INPUT_MAX (10^18
 * dollars), so 10^12 of the largest still fit, and no run exhausts them.
 * Because cash only moves between accounts, every balance and every
 * reserved value is bounded by that total, so no settlement on a
 * consistent region can overflow; overflow is still checked everywhere.
 * The amount of one operation (a reservation, a fill) is an int64.
 *
 * Moving cash between balance and reserved is two atomic operations, so a
 * concurrent reader may see balance + reserved off by the amount in
 * flight; each field it sees is a value the field really had and is never
 * negative.  Conservation (sum of balances + sum of reserved == sum of
 * deposits) holds exactly at quiescent points (see docs/accounts.md).
 *
 * Concurrency contract:
 *   shm_accounts_add, _reserve, _release, _settle_buy, _credit, _deposit:
 *       any number of processes at once, on the same or different accounts
 *       (RDWR handles only).
 *   shm_accounts_find, _read, _read_slot, _totals, _count: any process at
 *       any time, read-only handles included; never blocks a writer.
 *   shm_accounts_recover: only the home-shard matcher, at start, while no
 *       other process creates accounts of that shard.
 */
#ifndef SHMEX_SHM_ACCOUNTS_H
#define SHMEX_SHM_ACCOUNTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "shm/shm_atomic.h"
#include "shm/shm_atomic16.h"
#include "shm/shm_dec.h"
#include "shm/shm_region.h"

/* Largest configurable capacity (accounts); the table has at least twice
 * as many slots, a power of two, so probes stay short. */
#define SHM_ACCOUNTS_MAX_CAP (UINT64_C(1) << 30)
/* Largest account id (ids are stored as id + 1; 0 marks an empty slot). */
#define SHM_ACCOUNT_ID_MAX (UINT64_MAX - 1)

/* Region header capacity[] of an accounts region. */
enum {
	SHM_ACCOUNTS_CAP_ACCOUNTS = 0, /* accounts that may be created */
	SHM_ACCOUNTS_CAP_SLOTS = 1,    /* hash slots (power of two) */
};

/* Slot states. */
enum shm_account_state {
	SHM_ACCOUNT_PENDING = 0,   /* key claimed, cash not yet published */
	SHM_ACCOUNT_READY = 1,     /* exists; cash fields valid */
	SHM_ACCOUNT_ABANDONED = 2, /* creator died before publishing: may be
				    * claimed again by a creator of that id */
};

/* Body header: counters of the whole table.  One cache line. */
struct shm_accounts_sh {
	/* Slots that hold a key, plus units taken by creators about to claim
	 * one; never above the capacity, so an empty slot always remains and
	 * every probe ends.
	 * W: creators, relaxed fetch_add/sub [AC6]; R: creators. */
	uint64_t claimed;
	/* Accounts published (READY).  W: creators, relaxed fetch_add after
	 * AC1 [AC6]; R: tools, relaxed (a statistic). */
	uint64_t naccounts;
	/* Sum of every deposit accepted (initial balances included): the
	 * bound that makes per-account overflow impossible.  16-byte aligned.
	 * W: creators and depositors, cas16 [AC6]; R: audits, load16 [AC6]. */
	shm_cash_t total_deposited;
	uint64_t pad[4];
} shm_aligned;

/* One account: one cache line, so that matchers of different shards
 * working on different accounts never share a line. */
struct shm_account_sh {
	/* Account id + 1; 0 = empty.  Set once from 0 by a creator's CAS
	 * [AC0] and never changed after.  R: everyone, acquire [AC5]. */
	uint64_t key;
	/* enum shm_account_state.  W: the claiming creator, release READY
	 * [AC1] after the cash fields; recover, CAS PENDING -> ABANDONED
	 * [AC7];
	 * a creator of the same id, CAS ABANDONED -> PENDING [AC7].
	 * R: everyone, acquire [AC2] before reading the cash fields. */
	uint32_t state;
	uint32_t pad0;
	/* Available cash, CASH scale, >= 0, 16-byte aligned.  W: creator
	 * before AC1 (store16), then any matcher by cas16 [AC3]; R: readers,
	 * load16 (acquire) [AC4]. */
	shm_cash_t balance;
	/* Cash held by open buys, CASH scale, >= 0.  W/R as balance. */
	shm_cash_t reserved;
	/* Deposits of this account, CASH scale.  W/R as balance. */
	shm_cash_t deposited;
} shm_aligned;

_Static_assert(sizeof(struct shm_accounts_sh) == 64, "one cache line");
_Static_assert(sizeof(struct shm_account_sh) == 64, "one cache line");
_Static_assert(offsetof(struct shm_account_sh, state) == 8, "layout");
_Static_assert(offsetof(struct shm_account_sh, balance) == 16, "layout");
_Static_assert(offsetof(struct shm_account_sh, reserved) == 32, "layout");
_Static_assert(offsetof(struct shm_account_sh, deposited) == 48, "layout");
_Static_assert(offsetof(struct shm_accounts_sh, total_deposited) == 16, "layout");

/* Per-process handle (never in shared memory). */
struct shm_accounts {
	struct shm_region region;
	struct shm_accounts_sh *sh;  /* body header */
	struct shm_account_sh *slot; /* nslots slots after the header */
	uint64_t capacity;           /* accounts that may be created */
	uint32_t nslots;             /* power of two, > capacity */
	uint32_t mask;               /* nslots - 1 */
};

/* What a reader sees of one account. */
struct shm_account_view {
	uint64_t id;
	shm_cash_t balance;
	shm_cash_t reserved;
	shm_cash_t deposited;
};

/* Sums over all published accounts (an audit; exact at quiescent points). */
struct shm_accounts_totals {
	uint64_t accounts;
	shm_cash_t balance;
	shm_cash_t reserved;
	shm_cash_t deposited;       /* sum of the per-account counters */
	shm_cash_t total_deposited; /* the region's counter */
};

/* Creates, initialises and publishes the region for `capacity` accounts
 * (1..SHM_ACCOUNTS_MAX_CAP); the handle is writable. */
/* Bytes of the body of an accounts region for `capacity` accounts (for
 * sizing /dev/shm before creating anything). */
size_t shm_accounts_bytes(uint64_t capacity);

int shm_accounts_create(struct shm_accounts *a, const char *instance, uint64_t capacity,
			mode_t mode) __attribute__((warn_unused_result));
/* Both refuse a CPU without 16-byte atomics (SHMEX_ENOATOMIC16, with the
 * reason in a->region.err): shm_atomic16.h. */
/* Attaches to an existing region and validates its capacities against
 * its size (a corrupted header gives SHMEX_EBADLAYOUT / SHMEX_ETOOSHORT). */
int shm_accounts_attach(struct shm_accounts *a, const char *instance,
			enum shm_attach_mode mode) __attribute__((warn_unused_result));
/* Unmaps; safe on a zeroed or detached handle. */
void shm_accounts_detach(struct shm_accounts *a);
/* Removes the region's name (-ENOENT when absent). */
int shm_accounts_unlink(const char *instance);

/* Creates account `id` with `balance` (CASH scale, 0..SHM_CASH_INPUT_MAX).  Exactly one of
 * any number of concurrent creators of one id succeeds.  Returns 0 (and
 * the slot index in *idx when idx is not NULL), SHMEX_EACCOUNTEXISTS,
 * SHMEX_EACCOUNTSFULL, SHMEX_EBADACCOUNT (id > SHM_ACCOUNT_ID_MAX),
 * SHMEX_EBADBALANCE (negative), SHMEX_ECASHRANGE (above
 * SHM_CASH_INPUT_MAX), SHMEX_EOVERFLOW (the sum of all deposits would pass
 * the 128-bit range: never in practice) or -EROFS; on error nothing is changed. */
int shm_accounts_add(struct shm_accounts *a, uint64_t id, shm_cash_t balance,
		     uint32_t *idx) __attribute__((warn_unused_result));

/* The two halves of shm_accounts_add, for a creator that may publish only
 * later (a matcher, once the creation is in its journal on disk): claim
 * takes the slot and writes its cash, still PENDING (nobody can find or
 * use the account); publish makes it READY [AC1].  A creator that dies in
 * between leaves a PENDING slot for shm_accounts_recover. */
int shm_accounts_claim(struct shm_accounts *a, uint64_t id, shm_cash_t balance,
		       uint32_t *idx) __attribute__((warn_unused_result));
int shm_accounts_publish(struct shm_accounts *a, uint32_t idx)
	__attribute__((warn_unused_result));

/* Slot index of a published account, or SHMEX_ENOACCOUNT. */
int shm_accounts_find(const struct shm_accounts *a, uint64_t id, uint32_t *idx)
	__attribute__((warn_unused_result));

/*
 * Cash operations on a published account by slot index (from add or find).
 * Amounts are CASH scale and >= 0 (-EINVAL otherwise).  Each returns 0 or
 * an error with nothing changed; SHMEX_EBADINDEX for an index out of
 * range, SHMEX_ENOACCOUNT for a slot that is not a published account,
 * -EROFS on a read-only handle.
 */
/* Open buy: balance -= x, reserved += x; SHMEX_ENOFUNDS when balance < x. */
int shm_accounts_reserve(struct shm_accounts *a, uint32_t idx, int64_t x)
	__attribute__((warn_unused_result));
/* The same, counting `allowance` (>= 0) of cash that is on its way to
 * this account from the caller's own shard (credited once its journal
 * record is on disk): the balance may dip to -allowance meanwhile, and
 * is >= 0 again once the caller applies its credits. */
int shm_accounts_reserve_allow(struct shm_accounts *a, uint32_t idx, int64_t x,
			       shm_cash_t allowance) __attribute__((warn_unused_result));
/* Cancel / kill of an open buy: reserved -= x, balance += x.
 * SHMEX_EINTERNAL when less than x is reserved (a caller bug). */
int shm_accounts_release(struct shm_accounts *a, uint32_t idx, int64_t x)
	__attribute__((warn_unused_result));
/* Buy fill: reserved -= release (limit x qty), balance += refund
 * ((limit - price) x qty); 0 <= refund <= release.  The difference leaves
 * the account (it is the seller's credit).  SHMEX_EINTERNAL when less than
 * `release` is reserved. */
int shm_accounts_settle_buy(struct shm_accounts *a, uint32_t idx, int64_t release,
			    int64_t refund) __attribute__((warn_unused_result));
/* Sell fill: balance += x (price x qty).  SHMEX_EOVERFLOW. */
int shm_accounts_credit(struct shm_accounts *a, uint32_t idx, int64_t x)
	__attribute__((warn_unused_result));
/* New money: balance += x, deposited += x, total_deposited += x.
 * SHMEX_ECASHRANGE above SHM_CASH_INPUT_MAX, SHMEX_EOVERFLOW when the
 * total would pass the 128-bit range. */
int shm_accounts_deposit(struct shm_accounts *a, uint32_t idx, shm_cash_t x)
	__attribute__((warn_unused_result));

/* balance += dbal, reserved += dres, unconditionally (atomic adds): for a
 * matcher applying cash moves its journal already decided (credits whose
 * record is durable, recovery's corrections), whose results are valid by
 * construction.  SHMEX_ENOACCOUNT for an unpublished slot. */
int shm_accounts_add_delta(struct shm_accounts *a, uint32_t idx, shm_cash_t dbal,
			   shm_cash_t dres) __attribute__((warn_unused_result));

/* Reader: the account `id` (acquire loads, bounds-checked probes).
 * SHMEX_ENOACCOUNT when it does not exist (or is not yet published). */
int shm_accounts_read(const struct shm_accounts *a, uint64_t id,
		      struct shm_account_view *v) __attribute__((warn_unused_result));
/* Reader: slot `idx` (iteration over 0..nslots-1).  SHMEX_ENOACCOUNT for
 * an empty or unpublished slot, SHMEX_EBADINDEX past the end. */
int shm_accounts_read_slot(const struct shm_accounts *a, uint32_t idx,
			   struct shm_account_view *v)
	__attribute__((warn_unused_result));
/* Audit: sums over all published accounts.  SHMEX_EOVERFLOW when a sum
 * does not fit (never at a quiescent point of a consistent region). */
int shm_accounts_totals(const struct shm_accounts *a, struct shm_accounts_totals *t)
	__attribute__((warn_unused_result));
/* Published accounts (a statistic). */
uint64_t shm_accounts_count(const struct shm_accounts *a);

/* Start of the home-shard matcher: every PENDING slot whose id has home
 * shard `shard` was left by a previous matcher of this shard that died
 * between claim and publish.  When keep(ctx, id) says its creation is in
 * the journal, the slot is published; otherwise it is marked ABANDONED
 * (the id can be created again) and its deposit leaves the total.  keep
 * may be NULL (abandon all).  Precondition: nobody else creates accounts
 * of this shard meanwhile.  *n gets the number of slots abandoned. */
int shm_accounts_recover(struct shm_accounts *a, uint32_t shard, uint32_t nshards,
			 bool (*keep)(void *ctx, uint64_t id), void *ctx, uint64_t *n)
	__attribute__((warn_unused_result));

#endif
