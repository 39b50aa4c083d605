/*
 * shm_accounts_suite: the global cash accounts region: creation and lookup,
 * every rejection (and that it changes nothing), read-only and corrupted
 * regions, recovery of an abandoned creation, and real processes creating
 * the same ids at once and moving cash on the same accounts at once.
 */
#include "tests/shmex_test.h"

#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "shm/shm_accounts.h"
#include "shm/shm_dec.h"
#include "shm/shm_error.h"
#include "shm/shm_msg.h"

static char inst[64];

/* The instance is named once per test case, in check's parent process
 * (unchecked fixture), so that the parent can remove what a failed test
 * left behind: a failing assertion ends the test's process before its own
 * teardown runs.  Each test starts from a clean instance. */
static void name_instance(void)
{
	test_instance(inst, sizeof(inst));
}

static void setup(void)
{
	test_cleanup_instance(inst);
}

static void teardown(void)
{
	test_cleanup_instance(inst);
}

#define CASH(x) ((int64_t)(x)*SHM_CASH_ONE)

static void make(struct shm_accounts *a, uint64_t cap)
{
	int rc = shm_accounts_create(a, inst, cap, 0600);
	ck_assert_msg(rc == 0, "create: %s (%s)", shmex_strerror(rc), a->region.err.msg);
}

static struct shm_account_view get(const struct shm_accounts *a, uint64_t id)
{
	struct shm_account_view v;
	int rc = shm_accounts_read(a, id, &v);
	ck_assert_msg(rc == 0, "read %llu: %s", (unsigned long long)id,
		      shmex_errname(rc));
	ck_assert_uint_eq(v.id, id);
	return v;
}

static void assert_conserved(const struct shm_accounts *a)
{
	struct shm_accounts_totals t;
	ck_assert_int_eq(shm_accounts_totals(a, &t), 0);
	ck_assert_int_eq(t.balance + t.reserved, t.deposited);
	ck_assert_int_eq(t.deposited, t.total_deposited);
}

START_TEST(create_find_read)
{
	struct shm_accounts a, r;
	make(&a, 16);
	uint32_t idx, idx2;
	ck_assert_int_eq(shm_accounts_add(&a, 123456, CASH(1000), &idx), 0);
	ck_assert_int_eq(shm_accounts_add(&a, 0, 0, NULL), 0);
	ck_assert_int_eq(shm_accounts_add(&a, SHM_ACCOUNT_ID_MAX, 5, NULL), 0);
	ck_assert_int_eq(shm_accounts_find(&a, 123456, &idx2), 0);
	ck_assert_uint_eq(idx, idx2);
	ck_assert_int_eq(shm_accounts_find(&a, 123457, &idx2), SHMEX_ENOACCOUNT);
	ck_assert_int_eq(shm_accounts_find(&a, UINT64_MAX, &idx2), SHMEX_ENOACCOUNT);
	ck_assert_uint_eq(shm_accounts_count(&a), 3);

	/* Another mapping, read-only, sees the same accounts. */
	ck_assert_int_eq(shm_accounts_attach(&r, inst, SHM_RDONLY), 0);
	struct shm_account_view v = get(&r, 123456);
	ck_assert_int_eq(v.balance, CASH(1000));
	ck_assert_int_eq(v.reserved, 0);
	ck_assert_int_eq(v.deposited, CASH(1000));
	ck_assert_int_eq(get(&r, 0).balance, 0);
	ck_assert_int_eq(get(&r, SHM_ACCOUNT_ID_MAX).balance, 5);
	struct shm_account_view none;
	ck_assert_int_eq(shm_accounts_read(&r, 42, &none), SHMEX_ENOACCOUNT);

	/* Iteration finds exactly the three accounts. */
	uint64_t seen = 0;
	for (uint32_t i = 0; i < r.nslots; i++) {
		int rc = shm_accounts_read_slot(&r, i, &v);
		ck_assert(rc == 0 || rc == SHMEX_ENOACCOUNT);
		seen += rc == 0;
	}
	ck_assert_uint_eq(seen, 3);
	ck_assert_int_eq(shm_accounts_read_slot(&r, r.nslots, &v), SHMEX_EBADINDEX);
	assert_conserved(&r);
	shm_accounts_detach(&r);
	shm_accounts_detach(&a);
	ck_assert_int_eq(shm_accounts_unlink(inst), 0);
	ck_assert_int_eq(test_count_objects(inst), 0);
}
END_TEST

START_TEST(duplicate_create_fails)
{
	struct shm_accounts a;
	make(&a, 8);
	ck_assert_int_eq(shm_accounts_add(&a, 7, CASH(10), NULL), 0);
	ck_assert_int_eq(shm_accounts_add(&a, 7, CASH(99), NULL), SHMEX_EACCOUNTEXISTS);
	ck_assert_int_eq(get(&a, 7).balance, CASH(10));
	ck_assert_uint_eq(shm_accounts_count(&a), 1);
	ck_assert_uint_eq(a.sh->claimed, 1);
	assert_conserved(&a);
	shm_accounts_detach(&a);
}
END_TEST

START_TEST(bad_id_and_balance_rejected)
{
	struct shm_accounts a;
	make(&a, 8);
	ck_assert_int_eq(shm_accounts_add(&a, UINT64_MAX, 1, NULL), SHMEX_EBADACCOUNT);
	ck_assert_int_eq(shm_accounts_add(&a, 1, -1, NULL), SHMEX_EBADBALANCE);
	ck_assert_uint_eq(shm_accounts_count(&a), 0);
	ck_assert_int_eq(a.sh->total_deposited, 0);
	ck_assert_uint_eq(a.sh->claimed, 0);
	shm_accounts_detach(&a);
}
END_TEST

START_TEST(reserve_short_changes_nothing)
{
	struct shm_accounts a;
	make(&a, 8);
	uint32_t i;
	ck_assert_int_eq(shm_accounts_add(&a, 1, CASH(100), &i), 0);
	ck_assert_int_eq(shm_accounts_reserve(&a, i, CASH(100) + 1), SHMEX_ENOFUNDS);
	struct shm_account_view v = get(&a, 1);
	ck_assert_int_eq(v.balance, CASH(100));
	ck_assert_int_eq(v.reserved, 0);

	ck_assert_int_eq(shm_accounts_reserve(&a, i, CASH(60)), 0);
	ck_assert_int_eq(shm_accounts_reserve(&a, i, CASH(41)), SHMEX_ENOFUNDS);
	ck_assert_int_eq(shm_accounts_reserve(&a, i, CASH(40)), 0);
	v = get(&a, 1);
	ck_assert_int_eq(v.balance, 0);
	ck_assert_int_eq(v.reserved, CASH(100));

	/* Releasing more than is reserved is refused and changes nothing. */
	ck_assert_int_eq(shm_accounts_release(&a, i, CASH(100) + 1), SHMEX_EINTERNAL);
	ck_assert_int_eq(shm_accounts_settle_buy(&a, i, CASH(101), 0), SHMEX_EINTERNAL);
	v = get(&a, 1);
	ck_assert_int_eq(v.balance, 0);
	ck_assert_int_eq(v.reserved, CASH(100));
	ck_assert_int_eq(shm_accounts_release(&a, i, CASH(60)), 0);
	v = get(&a, 1);
	ck_assert_int_eq(v.balance, CASH(60));
	ck_assert_int_eq(v.reserved, CASH(40));
	assert_conserved(&a);
	shm_accounts_detach(&a);
}
END_TEST

START_TEST(settle_refunds_price_improvement)
{
	/* Buy 10 @ 130 executed at 127: the buyer's reservation of 1300
	 * leaves, 30 comes back, the seller gets 1270. */
	struct shm_accounts a;
	make(&a, 8);
	uint32_t b, s;
	ck_assert_int_eq(shm_accounts_add(&a, 1, CASH(2000), &b), 0);
	ck_assert_int_eq(shm_accounts_add(&a, 2, CASH(0), &s), 0);
	ck_assert_int_eq(shm_accounts_reserve(&a, b, CASH(1300)), 0);
	ck_assert_int_eq(shm_accounts_settle_buy(&a, b, CASH(1300), CASH(30)), 0);
	ck_assert_int_eq(shm_accounts_credit(&a, s, CASH(1270)), 0);
	struct shm_account_view vb = get(&a, 1), vs = get(&a, 2);
	ck_assert_int_eq(vb.balance, CASH(2000 - 1270));
	ck_assert_int_eq(vb.reserved, 0);
	ck_assert_int_eq(vs.balance, CASH(1270));
	ck_assert_int_eq(shm_accounts_settle_buy(&a, b, CASH(1), CASH(2)), -EINVAL);
	ck_assert_int_eq(shm_accounts_credit(&a, s, -1), -EINVAL);
	assert_conserved(&a);

	ck_assert_int_eq(shm_accounts_deposit(&a, s, CASH(5)), 0);
	vs = get(&a, 2);
	ck_assert_int_eq(vs.balance, CASH(1275));
	ck_assert_int_eq(vs.deposited, CASH(5));
	assert_conserved(&a);
	shm_accounts_detach(&a);
}
END_TEST

#define CASH128_MAX ((shm_cash_t)(((unsigned __int128)1 << 127) - 1))
#define DOLLARS(n) ((shm_cash_t)(n)*SHM_CASH_ONE)

START_TEST(overflow_rejected_changes_nothing)
{
	struct shm_accounts a;
	make(&a, 8);
	uint32_t i, j;
	/* Balances far past the old int64 cap; a deposit above
	 * SHM_CASH_INPUT_MAX is refused as out of range, not an overflow. */
	ck_assert_int_eq(shm_accounts_add(&a, 1, SHM_CASH_INPUT_MAX + 1, &i),
			 SHMEX_ECASHRANGE);
	ck_assert_int_eq(shm_accounts_add(&a, 1, SHM_CASH_INPUT_MAX, &i), 0);
	ck_assert_int_eq(shm_accounts_add(&a, 2, 10, &j), 0);
	ck_assert_int_eq(shm_accounts_deposit(&a, j, SHM_CASH_INPUT_MAX + 1),
			 SHMEX_ECASHRANGE);
	ck_assert(a.sh->total_deposited == SHM_CASH_INPUT_MAX + 10);
	ck_assert_uint_eq(shm_accounts_count(&a), 2);

	/* Only a corrupted region reaches the 128-bit limits: the second
	 * step of a move fails and the first is undone. */
	a.slot[j].reserved = CASH128_MAX;
	ck_assert_int_eq(shm_accounts_reserve(&a, j, 5), SHMEX_EOVERFLOW);
	ck_assert(get(&a, 2).balance == 10);
	a.slot[j].reserved = 0;
	a.slot[j].balance = CASH128_MAX;
	ck_assert_int_eq(shm_accounts_reserve(&a, j, 1), 0);
	ck_assert(a.slot[j].reserved == 1);
	a.slot[j].balance = CASH128_MAX;
	ck_assert_int_eq(shm_accounts_release(&a, j, 1), SHMEX_EOVERFLOW);
	ck_assert(a.slot[j].reserved == 1);
	ck_assert_int_eq(shm_accounts_settle_buy(&a, j, 1, 1), SHMEX_EOVERFLOW);
	ck_assert(a.slot[j].reserved == 1);
	ck_assert_int_eq(shm_accounts_credit(&a, j, 1), SHMEX_EOVERFLOW);
	shm_accounts_detach(&a);
}
END_TEST

/* Issue 10 item 6: ten accounts of 10^12 dollars and one of 10^15 (the
 * old int64 total stopped at 9.2 x 10^10), exact totals, exact moves and
 * conservation; then an account at the old maximum still takes sells'
 * credits. */
START_TEST(large_balances_exact)
{
	struct shm_accounts a;
	make(&a, 64);
	uint32_t idx[12];
	for (uint64_t id = 0; id < 10; id++)
		ck_assert_int_eq(
			shm_accounts_add(&a, id, DOLLARS(1000000000000), &idx[id]), 0);
	ck_assert_int_eq(shm_accounts_add(&a, 10, DOLLARS(1000000000000000), &idx[10]),
			 0);
	ck_assert_int_eq(shm_accounts_add(&a, 11, INT64_MAX, &idx[11]), 0);
	shm_cash_t want = DOLLARS(10000000000000) + DOLLARS(1000000000000000) + INT64_MAX;
	ck_assert(a.sh->total_deposited == want);
	/* Buys and sells: reserve, settle with a refund, credit a seller. */
	ck_assert_int_eq(shm_accounts_reserve(&a, idx[10], INT64_MAX), 0);
	ck_assert_int_eq(shm_accounts_settle_buy(&a, idx[10], INT64_MAX, 12345), 0);
	ck_assert_int_eq(shm_accounts_credit(&a, idx[11], INT64_MAX - 12345), 0);
	ck_assert_int_eq(shm_accounts_credit(&a, idx[11], 0), 0);
	struct shm_account_view v = get(&a, 10);
	ck_assert(v.balance == DOLLARS(1000000000000000) - INT64_MAX + 12345);
	ck_assert(v.reserved == 0);
	v = get(&a, 11);
	ck_assert(v.balance == (shm_cash_t)INT64_MAX * 2 - 12345);
	char b[SHM_DEC_CASH_BUF];
	ck_assert_int_gt(shm_dec_format_cash(b, sizeof(b), get(&a, 10).balance), 0);
	ck_assert_str_eq(b, "999907766279631.45236538");
	struct shm_accounts_totals t;
	ck_assert_int_eq(shm_accounts_totals(&a, &t), 0);
	ck_assert_uint_eq(t.accounts, 12);
	ck_assert(t.balance + t.reserved == t.deposited);
	ck_assert(t.deposited == t.total_deposited);
	ck_assert(t.total_deposited == want);
	shm_accounts_detach(&a);
}
END_TEST

/* The start check of 16-byte atomics is real: this CPU passes it (the
 * suite could not run otherwise), the CAS is inline (no libatomic call:
 * -mcx16), and a 128-bit CAS and load see whole values. */
START_TEST(atomic16_lock_free)
{
	ck_assert(shm_atomic16_check());
	ck_assert(__GCC_HAVE_SYNC_COMPARE_AND_SWAP_16);
	static shm_cash_t x __attribute__((aligned(16)));
	shm_cash_t e = 0;
	shm_cash_t big = ((shm_cash_t)1 << 100) + 7;
	ck_assert(cas16(&x, &e, big));
	ck_assert(load16_acquire(&x) == big);
	e = 1;
	ck_assert(!cas16(&x, &e, 0));
	ck_assert(e == big);
	ck_assert(fetch_add16(&x, -8) == big);
	ck_assert(load16_acquire(&x) == ((shm_cash_t)1 << 100) - 1);
	store16_release(&x, -1);
	ck_assert(load16_acquire(&x) == -1);
}
END_TEST

START_TEST(table_full)
{
	struct shm_accounts a;
	make(&a, 4);
	for (uint64_t id = 100; id < 104; id++)
		ck_assert_int_eq(shm_accounts_add(&a, id, CASH(1), NULL), 0);
	ck_assert_int_eq(shm_accounts_add(&a, 104, CASH(1), NULL), SHMEX_EACCOUNTSFULL);
	/* An existing id is still "exists", not "full". */
	ck_assert_int_eq(shm_accounts_add(&a, 102, CASH(1), NULL), SHMEX_EACCOUNTEXISTS);
	ck_assert_uint_eq(shm_accounts_count(&a), 4);
	ck_assert_uint_eq(a.sh->claimed, 4);
	ck_assert_int_eq(a.sh->total_deposited, CASH(4));
	uint32_t i;
	ck_assert_int_eq(shm_accounts_find(&a, 104, &i), SHMEX_ENOACCOUNT);
	assert_conserved(&a);
	shm_accounts_detach(&a);
}
END_TEST

START_TEST(bad_index_and_readonly)
{
	struct shm_accounts a, r;
	make(&a, 4);
	uint32_t i;
	ck_assert_int_eq(shm_accounts_add(&a, 5, CASH(1), &i), 0);
	ck_assert_int_eq(shm_accounts_reserve(&a, a.nslots, 1), SHMEX_EBADINDEX);
	ck_assert_int_eq(shm_accounts_credit(&a, UINT32_MAX, 1), SHMEX_EBADINDEX);
	ck_assert_int_eq(shm_accounts_reserve(&a, (i + 1) & a.mask, 1), SHMEX_ENOACCOUNT);
	ck_assert_int_eq(shm_accounts_reserve(&a, i, -1), -EINVAL);

	ck_assert_int_eq(shm_accounts_attach(&r, inst, SHM_RDONLY), 0);
	ck_assert_int_eq(shm_accounts_add(&r, 6, 1, NULL), -EROFS);
	ck_assert_int_eq(shm_accounts_reserve(&r, i, 1), -EROFS);
	ck_assert_int_eq(shm_accounts_credit(&r, i, 1), -EROFS);
	uint64_t n;
	ck_assert_int_eq(shm_accounts_recover(&r, 0, 1, NULL, NULL, &n), -EROFS);
	ck_assert_int_eq(get(&r, 5).balance, CASH(1));

	/* A zeroed (never attached) handle is refused, not dereferenced. */
	struct shm_accounts z;
	memset(&z, 0, sizeof(z));
	struct shm_account_view v;
	ck_assert_int_eq(shm_accounts_read(&z, 5, &v), SHMEX_ENOACCOUNT);
	ck_assert_int_eq(shm_accounts_add(&z, 5, 1, NULL), -EROFS);
	shm_accounts_detach(&z);
	shm_accounts_detach(&r);
	shm_accounts_detach(&a);
}
END_TEST

START_TEST(corrupted_header_rejected)
{
	struct shm_accounts a, r;
	make(&a, 8);
	struct shm_region_hdr_sh *h = shm_region_hdr(&a.region);
	uint64_t slots = h->capacity[SHM_ACCOUNTS_CAP_SLOTS];
	h->capacity[SHM_ACCOUNTS_CAP_SLOTS] = slots - 1; /* not a power of 2 */
	ck_assert_int_eq(shm_accounts_attach(&r, inst, SHM_RDONLY), SHMEX_EBADLAYOUT);
	h->capacity[SHM_ACCOUNTS_CAP_SLOTS] = slots * 64; /* beyond the object */
	ck_assert_int_eq(shm_accounts_attach(&r, inst, SHM_RDONLY), SHMEX_ETOOSHORT);
	h->capacity[SHM_ACCOUNTS_CAP_SLOTS] = slots;
	h->capacity[SHM_ACCOUNTS_CAP_ACCOUNTS] = slots; /* no empty slot left */
	ck_assert_int_eq(shm_accounts_attach(&r, inst, SHM_RDONLY), SHMEX_EBADLAYOUT);
	h->capacity[SHM_ACCOUNTS_CAP_ACCOUNTS] = 8;
	ck_assert_int_eq(shm_accounts_attach(&r, inst, SHM_RDONLY), 0);
	shm_accounts_detach(&r);
	/* A table whose every key is taken (corruption) still answers. */
	for (uint32_t i = 0; i < a.nslots; i++)
		a.slot[i].key = 1000 + i;
	uint32_t idx;
	ck_assert_int_eq(shm_accounts_find(&a, 1, &idx), SHMEX_ENOACCOUNT);
	ck_assert_int_eq(shm_accounts_add(&a, 1, 1, NULL), SHMEX_EACCOUNTSFULL);
	ck_assert_int_eq(a.sh->total_deposited, 0);
	ck_assert_uint_eq(a.sh->claimed, 0);
	shm_accounts_detach(&a);
	/* Wrong kind of region under the accounts name. */
	ck_assert_int_eq(shm_accounts_unlink(inst), 0);
	struct shm_region w;
	ck_assert_int_eq(shm_region_create(&w, inst, SHM_REGION_ACCOUNTS, SHM_KIND_TEST,
					   64, NULL, 0, 0600),
			 0);
	shm_region_publish(&w);
	ck_assert_int_eq(shm_accounts_attach(&r, inst, SHM_RDONLY), SHMEX_EBADKIND);
	shm_region_detach(&w);
}
END_TEST

START_TEST(abandoned_creation_recovered)
{
	/* Where does id 77 land in an empty table of this size? */
	struct shm_accounts a;
	uint32_t home;
	make(&a, 8);
	ck_assert_int_eq(shm_accounts_add(&a, 77, 0, &home), 0);
	shm_accounts_detach(&a);
	ck_assert_int_eq(shm_accounts_unlink(inst), 0);

	/* A creator that claimed 77's slot and died before publishing. */
	make(&a, 8);
	a.slot[home].key = 77 + 1;
	a.sh->claimed = 1;
	uint32_t idx;
	ck_assert_int_eq(shm_accounts_find(&a, 77, &idx), SHMEX_ENOACCOUNT);
	ck_assert_int_eq(shm_accounts_add(&a, 77, CASH(3), NULL), SHMEX_EACCOUNTEXISTS);
	uint64_t n;
	/* 77 % 4 == 1: shard 0's matcher does not touch it. */
	ck_assert_int_eq(shm_accounts_recover(&a, 0, 4, NULL, NULL, &n), 0);
	ck_assert_uint_eq(n, 0);
	ck_assert_int_eq(shm_accounts_recover(&a, 1, 4, NULL, NULL, &n), 0);
	ck_assert_uint_eq(n, 1);
	ck_assert_int_eq(shm_accounts_find(&a, 77, &idx), SHMEX_ENOACCOUNT);
	ck_assert_int_eq(shm_accounts_add(&a, 77, CASH(3), &idx), 0);
	ck_assert_uint_eq(idx, home);
	ck_assert_int_eq(get(&a, 77).balance, CASH(3));
	ck_assert_uint_eq(a.sh->claimed, 1);
	ck_assert_int_eq(shm_accounts_add(&a, 77, CASH(3), NULL), SHMEX_EACCOUNTEXISTS);
	ck_assert_int_eq(shm_accounts_recover(&a, 1, 4, NULL, NULL, &n), 0);
	ck_assert_uint_eq(n, 0); /* published accounts are never abandoned */
	ck_assert_int_eq(shm_accounts_recover(&a, 4, 4, NULL, NULL, &n), -EINVAL);
	assert_conserved(&a);
	shm_accounts_detach(&a);
}
END_TEST

/* ---- Real processes. */

#define NCREATORS 4
#define NIDS 100000

struct race_sh {
	uint32_t go;
	uint32_t bad; /* unexpected results in children */
	uint32_t winner[NIDS];
};

static void *shared_anon(size_t n)
{
	void *p =
		mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	ck_assert(p != MAP_FAILED);
	memset(p, 0, n);
	return p;
}

static int64_t race_balance(uint32_t creator, uint64_t id)
{
	return (int64_t)creator * 1000000 + (int64_t)id;
}

#define UNIQUE_EVERY 8
#define NUNIQUE (NCREATORS * (NIDS / UNIQUE_EVERY))

static uint64_t unique_id(uint32_t creator, uint64_t id)
{
	return ((uint64_t)creator << 40) | id;
}

static void creator_child(struct race_sh *rs, uint32_t me)
{
	struct shm_accounts a;
	if (shm_accounts_attach(&a, inst, SHM_RDWR) != 0)
		_exit(3);
	while (!__atomic_load_n(&rs->go, __ATOMIC_ACQUIRE))
		cpu_relax();
	for (uint64_t id = 0; id < NIDS; id++) {
		int rc = shm_accounts_add(&a, id, race_balance(me, id), NULL);
		if (rc == 0) {
			uint32_t none = 0;
			if (!__atomic_compare_exchange_n(&rs->winner[id], &none, me,
							 false, __ATOMIC_ACQ_REL,
							 __ATOMIC_ACQUIRE))
				__atomic_fetch_add(&rs->bad, 1, __ATOMIC_RELAXED);
		} else if (rc != SHMEX_EACCOUNTEXISTS) {
			__atomic_fetch_add(&rs->bad, 1, __ATOMIC_RELAXED);
		}
		/* Ids of this creator alone: they race with the others for
		 * empty slots (a lost CAS with another key probes on). */
		if (id % UNIQUE_EVERY == 0 &&
		    shm_accounts_add(&a, unique_id(me, id), 1, NULL) != 0)
			__atomic_fetch_add(&rs->bad, 1, __ATOMIC_RELAXED);
	}
	shm_accounts_detach(&a);
	_exit(0);
}

START_TEST(concurrent_create_one_success)
{
	/* Room for all ids plus the units creators racing on the last id
	 * hold for a moment (see "Limits" in shm_accounts.c). */
	struct shm_accounts a;
	make(&a, NIDS + NUNIQUE + NCREATORS);
	struct race_sh *rs = shared_anon(sizeof(*rs));
	pid_t pid[NCREATORS];
	for (uint32_t k = 0; k < NCREATORS; k++) {
		pid[k] = fork();
		ck_assert_int_ge(pid[k], 0);
		if (pid[k] == 0)
			creator_child(rs, k + 1);
	}
	__atomic_store_n(&rs->go, 1, __ATOMIC_RELEASE);
	for (uint32_t k = 0; k < NCREATORS; k++) {
		int st = test_wait_pid(pid[k], 30000);
		ck_assert_msg(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0,
			      "creator %u status %d", k, st);
	}
	ck_assert_uint_eq(rs->bad, 0);
	int64_t sum = 0;
	uint32_t wins[NCREATORS + 1] = {0};
	for (uint64_t id = 0; id < NIDS; id++) {
		uint32_t w = rs->winner[id];
		ck_assert_msg(w >= 1 && w <= NCREATORS, "id %llu: no winner",
			      (unsigned long long)id);
		wins[w]++;
		/* The account holds exactly the winner's initial balance. */
		ck_assert_int_eq(get(&a, id).balance, race_balance(w, id));
		sum += race_balance(w, id);
	}
	for (uint32_t k = 1; k <= NCREATORS; k++)
		fprintf(stderr, "creator %u won %u ids\n", k, wins[k]);
	for (uint32_t k = 1; k <= NCREATORS; k++) {
		for (uint64_t id = 0; id < NIDS; id += UNIQUE_EVERY) {
			ck_assert_int_eq(get(&a, unique_id(k, id)).balance, 1);
			sum += 1;
		}
	}
	ck_assert_uint_eq(shm_accounts_count(&a), NIDS + NUNIQUE);
	ck_assert_uint_eq(a.sh->claimed, NIDS + NUNIQUE);
	ck_assert_int_eq(a.sh->total_deposited, sum);
	assert_conserved(&a);
	munmap(rs, sizeof(*rs));
	shm_accounts_detach(&a);
}
END_TEST

#define MOVERS 2
#define MOVE_ITERS 1000000
#define START_CASH CASH(1000)

struct move_sh {
	uint32_t go;
	uint32_t stop;
	uint64_t bad;     /* a negative or impossible value was seen */
	uint64_t nofunds; /* reservations refused (not an error) */
	uint64_t reads;
};

static uint64_t xorshift(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

static void mover_child(struct move_sh *ms, uint32_t me)
{
	struct shm_accounts a;
	uint32_t idx[2];
	if (shm_accounts_attach(&a, inst, SHM_RDWR) != 0 ||
	    shm_accounts_find(&a, 1, &idx[0]) != 0 ||
	    shm_accounts_find(&a, 2, &idx[1]) != 0)
		_exit(3);
	uint64_t seed = 0x9e3779b97f4a7c15ull * (me + 1);
	uint64_t nofunds = 0, bad = 0;
	while (!__atomic_load_n(&ms->go, __ATOMIC_ACQUIRE))
		cpu_relax();
	for (uint32_t n = 0; n < MOVE_ITERS; n++) {
		uint64_t r = xorshift(&seed);
		uint32_t k = r & 1;
		/* Up to 70% of everything one account started with, so the
		 * two movers often compete for the same cash. */
		int64_t x = (int64_t)((r >> 8) % (uint64_t)(START_CASH * 7 / 10)) + 1;
		int rc = shm_accounts_reserve(&a, idx[k], x);
		if (rc == SHMEX_ENOFUNDS) {
			nofunds++;
			continue;
		}
		if (rc != 0) {
			bad++;
			continue;
		}
		if (r & 2) {
			if (shm_accounts_release(&a, idx[k], x) != 0)
				bad++;
		} else {
			/* A fill: part comes back, the rest goes to the other
			 * account (the seller). */
			int64_t refund = x / 3;
			if (shm_accounts_settle_buy(&a, idx[k], x, refund) != 0 ||
			    shm_accounts_credit(&a, idx[k ^ 1], x - refund) != 0)
				bad++;
		}
	}
	__atomic_fetch_add(&ms->nofunds, nofunds, __ATOMIC_RELAXED);
	__atomic_fetch_add(&ms->bad, bad, __ATOMIC_RELAXED);
	shm_accounts_detach(&a);
	_exit(0);
}

static void watcher_child(struct move_sh *ms)
{
	struct shm_accounts r;
	if (shm_accounts_attach(&r, inst, SHM_RDONLY) != 0)
		_exit(3);
	uint64_t bad = 0, reads = 0;
	while (!__atomic_load_n(&ms->stop, __ATOMIC_ACQUIRE)) {
		for (uint64_t id = 1; id <= 2; id++) {
			struct shm_account_view v;
			if (shm_accounts_read(&r, id, &v) != 0 || v.balance < 0 ||
			    v.reserved < 0 || v.balance > 2 * START_CASH ||
			    v.reserved > 2 * START_CASH || v.deposited != START_CASH)
				bad++;
			reads++;
		}
	}
	__atomic_fetch_add(&ms->bad, bad, __ATOMIC_RELAXED);
	__atomic_fetch_add(&ms->reads, reads, __ATOMIC_RELAXED);
	shm_accounts_detach(&r);
	_exit(0);
}

START_TEST(concurrent_moves_conserve_cash)
{
	struct shm_accounts a;
	make(&a, 8);
	ck_assert_int_eq(shm_accounts_add(&a, 1, START_CASH, NULL), 0);
	ck_assert_int_eq(shm_accounts_add(&a, 2, START_CASH, NULL), 0);
	struct move_sh *ms = shared_anon(sizeof(*ms));
	pid_t mover[MOVERS], watcher = fork();
	ck_assert_int_ge(watcher, 0);
	if (watcher == 0)
		watcher_child(ms);
	for (uint32_t k = 0; k < MOVERS; k++) {
		mover[k] = fork();
		ck_assert_int_ge(mover[k], 0);
		if (mover[k] == 0)
			mover_child(ms, k);
	}
	unsigned long long t0 = test_now_ns();
	__atomic_store_n(&ms->go, 1, __ATOMIC_RELEASE);
	for (uint32_t k = 0; k < MOVERS; k++) {
		int st = test_wait_pid(mover[k], 50000);
		ck_assert_msg(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0,
			      "mover %u status %d", k, st);
	}
	unsigned long long t1 = test_now_ns();
	__atomic_store_n(&ms->stop, 1, __ATOMIC_RELEASE);
	int st = test_wait_pid(watcher, 10000);
	ck_assert(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0);
	fprintf(stderr,
		"moves: %d x %d iterations in %.3f s, %llu refused "
		"(ENOFUNDS), %llu concurrent reads\n",
		MOVERS, MOVE_ITERS, (double)(t1 - t0) / 1e9,
		(unsigned long long)ms->nofunds, (unsigned long long)ms->reads);
	ck_assert_uint_eq(ms->bad, 0);
	/* Quiescent: every reservation was released or settled. */
	struct shm_account_view v1 = get(&a, 1), v2 = get(&a, 2);
	ck_assert_int_eq(v1.reserved, 0);
	ck_assert_int_eq(v2.reserved, 0);
	ck_assert_int_ge(v1.balance, 0);
	ck_assert_int_ge(v2.balance, 0);
	ck_assert_int_eq(v1.balance + v2.balance, 2 * START_CASH);
	assert_conserved(&a);
	munmap(ms, sizeof(*ms));
	shm_accounts_detach(&a);
}
END_TEST

static Suite *shm_accounts_suite(void)
{
	Suite *s = suite_create("shm_accounts");
	TCase *tc = tcase_create("accounts");
	tcase_add_unchecked_fixture(tc, name_instance, teardown);
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, create_find_read);
	tcase_add_test(tc, large_balances_exact);
	tcase_add_test(tc, atomic16_lock_free);
	tcase_add_test(tc, duplicate_create_fails);
	tcase_add_test(tc, bad_id_and_balance_rejected);
	tcase_add_test(tc, reserve_short_changes_nothing);
	tcase_add_test(tc, settle_refunds_price_improvement);
	tcase_add_test(tc, overflow_rejected_changes_nothing);
	tcase_add_test(tc, table_full);
	tcase_add_test(tc, bad_index_and_readonly);
	tcase_add_test(tc, corrupted_header_rejected);
	tcase_add_test(tc, abandoned_creation_recovered);
	suite_add_tcase(s, tc);

	TCase *mp = tcase_create("processes");
	tcase_add_unchecked_fixture(mp, name_instance, teardown);
	tcase_add_checked_fixture(mp, setup, teardown);
	tcase_set_timeout(mp, 60);
	tcase_add_test(mp, concurrent_create_one_success);
	tcase_add_test(mp, concurrent_moves_conserve_cash);
	suite_add_tcase(s, mp);
	return s;
}

SHMEX_TEST_MAIN(shm_accounts_suite)
