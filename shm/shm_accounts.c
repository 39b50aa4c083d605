/*
 * shm_accounts: global cash accounts shared by every matcher (see
 * shm_accounts.h for the contract and docs/accounts.md for the layout).
 *
 * Why this shape.  Any matcher may change any account, so there is no
 * single writer to hand the account to, and a lock in shared memory could
 * be left held by a matcher killed with SIGKILL.  Every change is therefore
 * one or two compare-and-swap loops on independent 128-bit fields (cas16,
 * shm_atomic16.h): each CAS
 * either takes effect completely or not at all, and a process that dies
 * between two of them leaves each field at a value it really had.
 *
 * Invariants (at every instant, for every published account):
 *   balance >= 0 and reserved >= 0: every decrement is a CAS that checks
 *   the current value first (sub_floor), so no interleaving drives a field
 *   negative.
 *   sum of deposited == total_deposited (at quiescent points), 128 bits;
 *   since cash only moves between accounts, every balance and reserved is
 *   bounded by total_deposited, so settlements cannot overflow a consistent
 *   region.  Overflow is still checked on every addition (add_capped).
 *   A key, once set, never changes; a published slot never goes back.
 * Two-step moves (reserve, release, settle_buy, deposit) do the decrement
 * first: if the second step fails (only possible on a corrupted region) the
 * first is undone, so the operation as a whole "changes nothing", though a
 * concurrent reader may have seen the intermediate value.
 *
 * Limits: capacity up to 2^30 accounts (2^31 slots of 64 bytes); ids
 * 0..UINT64_MAX-1.  "Table full" is judged against the capacity, so creators
 * racing for the last units of capacity may see SHMEX_EACCOUNTSFULL while a
 * competing create of an existing id is about to fail.
 */
#include "shm/shm_accounts.h"

#include <errno.h>
#include <string.h>

#include "shm/shm_error.h"
#include "shm/shm_hash.h"
#include "shm/shm_msg.h"

static size_t body_bytes(uint32_t nslots)
{
	return sizeof(struct shm_accounts_sh) +
	       (size_t)nslots * sizeof(struct shm_account_sh);
}

/*
 * The two cash primitives.  All account fields (balance, reserved,
 * deposited) change through these [AC3], the region's total_deposited too
 * [AC6].  Each is a strong CAS loop: the first load may be relaxed because
 * the CAS compares it with the current value and, on failure, reloads it
 * with acquire.  The CAS is acq_rel: its release half orders the first
 * step of a two-step move before the second, so a reader that acquires the
 * second field [AC4] also sees the first one changed.
 */
static int add_capped(shm_cash_t *p, shm_cash_t x)
{
	/* The first load is only the CAS's expected value, re-validated. */
	shm_cash_t v = load16_acquire(p);
	shm_cash_t n;
	do {
		if (__builtin_add_overflow(v, x, &n))
			return SHMEX_EOVERFLOW;
	} while (!cas16(p, &v, n)); /* AC3 / AC6 */
	return 0;
}

static int sub_floor(shm_cash_t *p, shm_cash_t x, int err)
{
	shm_cash_t v = load16_acquire(p); /* re-validated by the CAS */
	do {
		if (v < x)
			return err;
	} while (!cas16(p, &v, v - x)); /* AC3 */
	return 0;
}

/* *p += delta, undoing a step this process has just taken: cannot fail
 * on a consistent region (the value was there a moment ago, and the total
 * of all deposits bounds it). */
static void give_back(shm_cash_t *p, shm_cash_t delta)
{
	(void)fetch_add16(p, delta); /* AC3 / AC6 */
}

static int cpu_check(struct shm_accounts *a)
{
	if (shm_atomic16_check())
		return 0;
	return shmex_error_set(&a->region.err, SHMEX_ENOATOMIC16,
			       "accounts: this CPU lacks CMPXCHG16B or AVX, so 128-bit "
			       "cash cannot be changed lock-free or read atomically");
}

static int check_layout(struct shm_accounts *a)
{
	const struct shm_region_hdr_sh *h = shm_region_hdr(&a->region);
	uint64_t cap = h->capacity[SHM_ACCOUNTS_CAP_ACCOUNTS];
	uint64_t nslots = h->capacity[SHM_ACCOUNTS_CAP_SLOTS];
	if (cap == 0 || cap > SHM_ACCOUNTS_MAX_CAP || nslots < 2 ||
	    nslots > (UINT64_C(1) << 31) || (nslots & (nslots - 1)) != 0 || nslots <= cap)
		return SHMEX_EBADLAYOUT;
	if (shm_region_body_size(&a->region) < body_bytes((uint32_t)nslots))
		return SHMEX_ETOOSHORT;
	a->sh = shm_region_body(&a->region);
	a->slot = (struct shm_account_sh *)(a->sh + 1);
	a->capacity = cap;
	a->nslots = (uint32_t)nslots;
	a->mask = (uint32_t)nslots - 1;
	return 0;
}

size_t shm_accounts_bytes(uint64_t capacity)
{
	return body_bytes(shm_hash_slots(capacity));
}

int shm_accounts_create(struct shm_accounts *a, const char *instance, uint64_t capacity,
			mode_t mode)
{
	memset(a, 0, sizeof(*a));
	if (capacity == 0 || capacity > SHM_ACCOUNTS_MAX_CAP)
		return -EINVAL;
	int rc = cpu_check(a);
	if (rc)
		return rc;
	uint32_t nslots = shm_hash_slots(capacity);
	uint64_t caps[2];
	caps[SHM_ACCOUNTS_CAP_ACCOUNTS] = capacity;
	caps[SHM_ACCOUNTS_CAP_SLOTS] = nslots;
	rc = shm_region_create(&a->region, instance, SHM_REGION_ACCOUNTS,
			       SHM_KIND_ACCOUNTS, body_bytes(nslots), caps, 2, mode);
	if (rc)
		return rc;
	rc = check_layout(a);
	if (rc)
		goto out_unlink;
	/* The body is zero-filled: no keys, no counters.  Publish [R0]. */
	shm_region_publish(&a->region);
	return 0;

out_unlink:
	shm_region_detach(&a->region);
	(void)shm_region_unlink(instance, SHM_REGION_ACCOUNTS);
	return rc;
}

int shm_accounts_attach(struct shm_accounts *a, const char *instance,
			enum shm_attach_mode mode)
{
	memset(a, 0, sizeof(*a));
	int rc = cpu_check(a);
	if (rc)
		return rc;
	rc = shm_region_attach(&a->region, instance, SHM_REGION_ACCOUNTS,
			       SHM_KIND_ACCOUNTS, mode);
	if (rc)
		return rc;
	rc = check_layout(a);
	if (rc)
		goto out_detach;
	return 0;

out_detach:
	shm_region_detach(&a->region);
	a->sh = NULL;
	a->slot = NULL;
	return rc;
}

void shm_accounts_detach(struct shm_accounts *a)
{
	shm_region_detach(&a->region);
	a->sh = NULL;
	a->slot = NULL;
	a->nslots = 0;
	a->mask = 0;
	a->capacity = 0;
}

int shm_accounts_unlink(const char *instance)
{
	return shm_region_unlink(instance, SHM_REGION_ACCOUNTS);
}

/*
 * Probe for key; on success *at is the slot holding it.  Stops at the
 * first empty slot (an insert-only table never has a hole before a key in
 * its probe sequence) and after nslots steps (a corrupted, full table).
 */
static bool probe(const struct shm_accounts *a, uint64_t key, uint32_t *at)
{
	if (!a->slot)
		return false;
	uint32_t i = shm_hash_u64(key) & a->mask;
	for (uint32_t n = 0; n < a->nslots; n++, i = (i + 1) & a->mask) {
		/* AC5: pairs with the claiming CAS AC0. */
		uint64_t k = load_acquire(&a->slot[i].key);
		if (k == 0)
			return false;
		if (k == key) {
			*at = i;
			return true;
		}
	}
	return false;
}

static bool is_ready(const struct shm_account_sh *s)
{
	/* AC2: pairs with AC1; the cash fields the creator wrote before
	 * publishing are visible after this load. */
	return load_acquire(&s->state) == SHM_ACCOUNT_READY;
}

int shm_accounts_find(const struct shm_accounts *a, uint64_t id, uint32_t *idx)
{
	uint32_t at;
	if (id > SHM_ACCOUNT_ID_MAX || !probe(a, id + 1, &at) || !is_ready(&a->slot[at]))
		return SHMEX_ENOACCOUNT;
	*idx = at;
	return 0;
}

/* Initialises a slot this process has just claimed (still PENDING). */
static void init_claimed(struct shm_account_sh *s, shm_cash_t balance)
{
	/* The slot is ours alone until AC1 publishes it; nobody reads these
	 * fields before acquiring READY (store16 is a release anyway). */
	store16_release(&s->balance, balance);
	store16_release(&s->reserved, 0);
	store16_release(&s->deposited, balance);
}

static void publish_slot(struct shm_accounts *a, struct shm_account_sh *s)
{
	/* AC1: publishes the cash fields; pairs with AC2. */
	store_release(&s->state, (uint32_t)SHM_ACCOUNT_READY);
	/* AC6, relaxed: a statistic, not used for synchronisation. */
	fetch_add_relaxed(&a->sh->naccounts, 1);
}

/* Gives back a unit of capacity taken in shm_accounts_add.  Relaxed [AC6]:
 * `claimed` is a bound, not a publication. */
static void uncount(struct shm_accounts *a)
{
	__atomic_fetch_sub(&a->sh->claimed, 1, __ATOMIC_RELAXED);
}

int shm_accounts_add(struct shm_accounts *a, uint64_t id, shm_cash_t balance,
		     uint32_t *idx)
{
	uint32_t at;
	int rc = shm_accounts_claim(a, id, balance, &at);
	if (rc)
		return rc;
	publish_slot(a, &a->slot[at]);
	if (idx)
		*idx = at;
	return 0;
}

int shm_accounts_publish(struct shm_accounts *a, uint32_t idx)
{
	if (!a->slot || !a->region.writable)
		return -EROFS;
	if (idx >= a->nslots)
		return SHMEX_EBADINDEX;
	struct shm_account_sh *s = &a->slot[idx];
	/* Only a PENDING slot is published (acquire: the claim's fields). */
	if (load_acquire(&s->state) != SHM_ACCOUNT_PENDING || load_acquire(&s->key) == 0)
		return SHMEX_ENOACCOUNT;
	publish_slot(a, s);
	return 0;
}

int shm_accounts_claim(struct shm_accounts *a, uint64_t id, shm_cash_t balance,
		       uint32_t *idx)
{
	if (!a->slot || !a->region.writable)
		return -EROFS;
	if (id > SHM_ACCOUNT_ID_MAX)
		return SHMEX_EBADACCOUNT;
	if (balance < 0)
		return SHMEX_EBADBALANCE;
	if (balance > SHM_CASH_INPUT_MAX)
		return SHMEX_ECASHRANGE;
	const uint64_t key = id + 1;
	/* Take the deposit under the global cap first: every later failure
	 * gives it back, and no account's cash can exceed the total. */
	int rc = add_capped(&a->sh->total_deposited, balance); /* AC6 */
	if (rc)
		return rc;

	bool counted = false;
	uint32_t i = shm_hash_u64(key) & a->mask;
	for (uint32_t n = 0; n < a->nslots; n++, i = (i + 1) & a->mask) {
		struct shm_account_sh *s = &a->slot[i];
		uint64_t k = load_acquire(&s->key); /* AC5 */
		if (k == 0) {
			/* A new slot: take one unit of capacity first, so that
			 * claimed keys never exceed the capacity.  Relaxed
			 * [AC6]: a bound, not a publication. */
			if (!counted) {
				if (fetch_add_relaxed(&a->sh->claimed, 1) >=
				    a->capacity) {
					uncount(a);
					rc = SHMEX_EACCOUNTSFULL;
					goto out_undo_deposit;
				}
				counted = true;
			}
			/* AC0: the claim.  Exactly one creator moves the key
			 * from 0; a loser gets the winner's key in k. */
			uint64_t expected = 0;
			if (cas_acq_rel(&s->key, &expected, key)) {
				init_claimed(s, balance);
				goto out_ok;
			}
			k = expected;
		}
		if (k != key)
			continue;
		/* The id exists (or is being created).  A slot whose creator
		 * died before publishing may be taken over, by one creator. */
		uint32_t st = SHM_ACCOUNT_ABANDONED;
		/* AC7: pairs with the release of ABANDONED in recover. */
		if (cas_acq_rel(&s->state, &st, (uint32_t)SHM_ACCOUNT_PENDING)) {
			if (counted)
				uncount(a);
			counted = false;
			init_claimed(s, balance);
			goto out_ok;
		}
		rc = SHMEX_EACCOUNTEXISTS;
		goto out_uncount;
	}
	/* Only a corrupted table has no empty slot left. */
	rc = SHMEX_EACCOUNTSFULL;

out_uncount:
	if (counted)
		uncount(a);
out_undo_deposit:
	give_back(&a->sh->total_deposited, -balance);
	return rc;

out_ok:
	*idx = i;
	return 0;
}

/* The published account at idx, for a cash operation. */
static int writable_slot(struct shm_accounts *a, uint32_t idx, int64_t x,
			 struct shm_account_sh **out)
{
	if (!a->slot || !a->region.writable)
		return -EROFS;
	if (x < 0)
		return -EINVAL;
	if (idx >= a->nslots)
		return SHMEX_EBADINDEX;
	struct shm_account_sh *s = &a->slot[idx];
	if (!is_ready(s)) /* AC2 */
		return SHMEX_ENOACCOUNT;
	*out = s;
	return 0;
}

int shm_accounts_reserve(struct shm_accounts *a, uint32_t idx, int64_t x)
{
	return shm_accounts_reserve_allow(a, idx, x, 0);
}

int shm_accounts_reserve_allow(struct shm_accounts *a, uint32_t idx, int64_t x,
			       shm_cash_t allowance)
{
	struct shm_account_sh *s;
	int rc = writable_slot(a, idx, x, &s);
	if (rc)
		return rc;
	if (allowance < 0)
		return -EINVAL;
	/* balance - x >= -allowance, i.e. balance + allowance >= x. */
	shm_cash_t v = load16_acquire(&s->balance); /* re-validated by the CAS */
	do {
		/* No overflow: |v| stays far below 2^126 (see the top). */
		if (v + allowance < x)
			return SHMEX_ENOFUNDS;
	} while (!cas16(&s->balance, &v, v - x)); /* AC3 */
	rc = add_capped(&s->reserved, x);
	if (rc)
		give_back(&s->balance, x);
	return rc;
}

int shm_accounts_release(struct shm_accounts *a, uint32_t idx, int64_t x)
{
	struct shm_account_sh *s;
	int rc = writable_slot(a, idx, x, &s);
	if (rc)
		return rc;
	rc = sub_floor(&s->reserved, x, SHMEX_EINTERNAL);
	if (rc)
		return rc;
	rc = add_capped(&s->balance, x);
	if (rc)
		give_back(&s->reserved, x);
	return rc;
}

int shm_accounts_settle_buy(struct shm_accounts *a, uint32_t idx, int64_t release,
			    int64_t refund)
{
	struct shm_account_sh *s;
	int rc = writable_slot(a, idx, release, &s);
	if (rc)
		return rc;
	if (refund < 0 || refund > release)
		return -EINVAL;
	rc = sub_floor(&s->reserved, release, SHMEX_EINTERNAL);
	if (rc)
		return rc;
	rc = add_capped(&s->balance, refund);
	if (rc)
		give_back(&s->reserved, release);
	return rc;
}

int shm_accounts_credit(struct shm_accounts *a, uint32_t idx, int64_t x)
{
	struct shm_account_sh *s;
	int rc = writable_slot(a, idx, x, &s);
	if (rc)
		return rc;
	return add_capped(&s->balance, x);
}

int shm_accounts_deposit(struct shm_accounts *a, uint32_t idx, shm_cash_t x)
{
	struct shm_account_sh *s;
	if (x > SHM_CASH_INPUT_MAX)
		return SHMEX_ECASHRANGE;
	int rc = writable_slot(a, idx, x < 0 ? -1 : 0, &s);
	if (rc)
		return rc;
	rc = add_capped(&a->sh->total_deposited, x); /* AC6 */
	if (rc)
		return rc;
	rc = add_capped(&s->deposited, x);
	if (rc)
		goto out_total;
	rc = add_capped(&s->balance, x);
	if (rc)
		goto out_deposited;
	return 0;

out_deposited:
	give_back(&s->deposited, -x);
out_total:
	give_back(&a->sh->total_deposited, -x);
	return rc;
}

static void view_of(const struct shm_account_sh *s, uint64_t key,
		    struct shm_account_view *v)
{
	v->id = key - 1;
	/* AC4: pair with the acq_rel CASes AC3.  reserved is read before
	 * balance: a reader that sees a reservation in `reserved` also sees
	 * its debit in `balance` (reserve debits first). */
	v->reserved = load16_acquire(&s->reserved);
	v->balance = load16_acquire(&s->balance);
	v->deposited = load16_acquire(&s->deposited);
}

int shm_accounts_read(const struct shm_accounts *a, uint64_t id,
		      struct shm_account_view *v)
{
	uint32_t at;
	int rc = shm_accounts_find(a, id, &at);
	if (rc)
		return rc;
	view_of(&a->slot[at], id + 1, v);
	return 0;
}

int shm_accounts_read_slot(const struct shm_accounts *a, uint32_t idx,
			   struct shm_account_view *v)
{
	if (!a->slot || idx >= a->nslots)
		return SHMEX_EBADINDEX;
	const struct shm_account_sh *s = &a->slot[idx];
	uint64_t k = load_acquire(&s->key); /* AC5 */
	if (k == 0 || !is_ready(s))
		return SHMEX_ENOACCOUNT;
	view_of(s, k, v);
	return 0;
}

int shm_accounts_totals(const struct shm_accounts *a, struct shm_accounts_totals *t)
{
	memset(t, 0, sizeof(*t));
	if (!a->slot)
		return SHMEX_EBADINDEX;
	shm_cash_t bal = 0, res = 0, dep = 0;
	bool over = false;
	for (uint32_t i = 0; i < a->nslots; i++) {
		struct shm_account_view v;
		if (shm_accounts_read_slot(a, i, &v) != 0)
			continue;
		t->accounts++;
		over |= __builtin_add_overflow(bal, v.balance, &bal);
		over |= __builtin_add_overflow(res, v.reserved, &res);
		over |= __builtin_add_overflow(dep, v.deposited, &dep);
	}
	/* An audit figure, exact only at quiescent points. */
	t->total_deposited = load16_acquire(&a->sh->total_deposited);
	t->balance = bal;
	t->reserved = res;
	t->deposited = dep;
	return over ? SHMEX_EOVERFLOW : 0;
}

int shm_accounts_add_delta(struct shm_accounts *a, uint32_t idx, shm_cash_t balance,
			   shm_cash_t reserved)
{
	if (!a->slot || !a->region.writable)
		return -EROFS;
	if (idx >= a->nslots)
		return SHMEX_EBADINDEX;
	struct shm_account_sh *s = &a->slot[idx];
	if (!is_ready(s)) /* AC2 */
		return SHMEX_ENOACCOUNT;
	if (balance)
		(void)fetch_add16(&s->balance, balance); /* AC3 */
	if (reserved)
		(void)fetch_add16(&s->reserved, reserved); /* AC3 */
	return 0;
}

uint64_t shm_accounts_count(const struct shm_accounts *a)
{
	/* Relaxed: a statistic [AC6]. */
	return a->sh ? load_relaxed(&a->sh->naccounts) : 0;
}

int shm_accounts_recover(struct shm_accounts *a, uint32_t shard, uint32_t nshards,
			 bool (*keep)(void *ctx, uint64_t id), void *ctx, uint64_t *n)
{
	*n = 0;
	if (!a->slot || !a->region.writable)
		return -EROFS;
	if (nshards == 0 || shard >= nshards)
		return -EINVAL;
	for (uint32_t i = 0; i < a->nslots; i++) {
		struct shm_account_sh *s = &a->slot[i];
		uint64_t k = load_acquire(&s->key); /* AC5 */
		if (k == 0 || shm_shard_of_account(k - 1, nshards) != shard)
			continue;
		/* AC7: CAS PENDING -> ABANDONED (acq_rel), not a plain store:
		 * a creator that publishes READY [AC1] between a load and a
		 * store would have its live account hidden and then taken
		 * over.  A failed CAS (READY or ABANDONED already) changes
		 * nothing.  Pairs with the CAS that takes the slot over in
		 * add. */
		if (load_acquire(&s->state) != SHM_ACCOUNT_PENDING)
			continue;
		/* A creation whose journal record survived is finished. */
		if (keep && keep(ctx, k - 1)) {
			publish_slot(a, s);
			continue;
		}
		uint32_t st = SHM_ACCOUNT_PENDING;
		if (!cas_acq_rel(&s->state, &st, (uint32_t)SHM_ACCOUNT_ABANDONED))
			continue;
		/* Its deposit never became cash: take it out of the total. */
		give_back(&a->sh->total_deposited, -load16_acquire(&s->deposited));
		(*n)++;
	}
	return 0;
}
