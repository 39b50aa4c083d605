/*
 * shm_positions_suite: a shard's positions region: symbols and positions
 * created by adding shares, the four moves and their rejections (each of
 * which changes nothing), capacities, read-only and corrupted regions, and
 * a reader process watching the single writer.
 */
#include "tests/shmex_test.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "shm/shm_dec.h"
#include "shm/shm_error.h"
#include "shm/shm_msg.h"
#include "shm/shm_positions.h"

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

#define QTY(x) ((int64_t)(x)*SHM_QTY_ONE)

static void make(struct shm_positions *p, uint32_t shard, uint64_t nsym, uint64_t npos)
{
	int rc = shm_positions_create(p, inst, shard, nsym, npos, 0600);
	ck_assert_msg(rc == 0, "create: %s (%s)", shmex_strerror(rc), p->region.err.msg);
}

static const char *sym(const char *s)
{
	static char buf[4][16];
	static int n;
	char *b = buf[n++ % 4];
	ck_assert(shm_symbol_pack(b, s, strlen(s)));
	return b;
}

static struct shm_position_view get(const struct shm_positions *p, uint64_t account,
				    const char *s)
{
	struct shm_position_view v;
	int rc = shm_positions_read(p, account, sym(s), &v);
	ck_assert_msg(rc == 0, "read %llu %s: %s", (unsigned long long)account, s,
		      shmex_errname(rc));
	ck_assert_uint_eq(v.account, account);
	ck_assert_str_eq(v.symbol, s);
	return v;
}

/* A 128-bit share amount as text (QTY scale), for messages. */
static const char *txt(shm_shares_t v)
{
	static char buf[4][SHM_DEC_128_BUF];
	static int n;
	char *b = buf[n++ % 4];
	ck_assert_int_gt(shm_dec_format128(b, SHM_DEC_128_BUF, v, SHM_QTY_DIGITS), 0);
	return b;
}

#define assert_shares(got, want)                                                      \
	do {                                                                          \
		shm_shares_t g_ = (got), w_ = (want);                                 \
		ck_assert_msg(g_ == w_, "%s is %s, want %s", #got, txt(g_), txt(w_)); \
	} while (0)

/* Per symbol: sum of amounts + sum of reserved == created. */
static void assert_conserved(const struct shm_positions *p, const char *s,
			     shm_shares_t created)
{
	uint32_t sidx;
	struct shm_positions_totals t;
	ck_assert_int_eq(shm_positions_symbol_find(p, sym(s), &sidx), 0);
	ck_assert_int_eq(shm_positions_totals(p, sidx, &t), 0);
	assert_shares(t.created, created);
	assert_shares(t.amount + t.reserved, t.created);
}

START_TEST(add_shares_creates_symbol_and_position)
{
	struct shm_positions p, r;
	make(&p, 3, 8, 64);
	uint32_t sidx, pidx, s2, p2;
	ck_assert_int_eq(shm_positions_add_shares(&p, 123456, sym("SPY"), QTY(100000),
						  &sidx, &pidx),
			 0);
	ck_assert_int_eq(
		shm_positions_add_shares(&p, 123456, sym("SPY"), QTY(5), &s2, &p2), 0);
	ck_assert_uint_eq(sidx, s2);
	ck_assert_uint_eq(pidx, p2);
	ck_assert_int_eq(shm_positions_add_shares(&p, 7, sym("SPY"), 1, NULL, NULL), 0);
	ck_assert_int_eq(
		shm_positions_add_shares(&p, 7, sym("T5asdf"), QTY(2), NULL, NULL), 0);
	ck_assert_uint_eq(p.sh->nsymbols, 2);
	ck_assert_uint_eq(p.sh->npositions, 3);

	ck_assert_int_eq(shm_positions_attach(&r, inst, 3, SHM_RDONLY), 0);
	struct shm_position_view v = get(&r, 123456, "SPY");
	ck_assert_int_eq(v.amount, QTY(100005));
	ck_assert_int_eq(v.reserved, 0);
	ck_assert_uint_eq(v.sym, sidx);
	ck_assert_int_eq(get(&r, 7, "SPY").amount, 1);
	ck_assert_int_eq(get(&r, 7, "T5asdf").amount, QTY(2));
	ck_assert_int_eq(shm_positions_read(&r, 8, sym("SPY"), &v), SHMEX_ENOSHARES);
	ck_assert_int_eq(shm_positions_read(&r, 7, sym("QQQ"), &v), SHMEX_ENOSYMBOL);
	assert_conserved(&r, "SPY", QTY(100005) + 1);
	assert_conserved(&r, "T5asdf", QTY(2));

	uint32_t seen = 0;
	for (uint32_t i = 0; i < r.pos_slots; i++) {
		int rc = shm_positions_read_slot(&r, i, &v);
		ck_assert(rc == 0 || rc == SHMEX_ENOSHARES);
		seen += rc == 0;
	}
	ck_assert_uint_eq(seen, 3);
	ck_assert_int_eq(shm_positions_read_slot(&r, r.pos_slots, &v), SHMEX_EBADINDEX);

	/* Each shard has its own region. */
	struct shm_positions other;
	ck_assert_int_eq(shm_positions_attach(&other, inst, 2, SHM_RDONLY), -ENOENT);
	shm_positions_detach(&r);
	shm_positions_detach(&p);
	ck_assert_int_eq(shm_positions_unlink(inst, 3), 0);
	ck_assert_int_eq(test_count_objects(inst), 0);
}
END_TEST

START_TEST(bad_requests_change_nothing)
{
	struct shm_positions p;
	make(&p, 0, 4, 16);
	char bad[16] = "A-B";
	ck_assert_int_eq(shm_positions_add_shares(&p, 1, bad, 1, NULL, NULL),
			 SHMEX_EBADSYMBOL);
	ck_assert_int_eq(shm_positions_add_shares(&p, 1, sym("X"), 0, NULL, NULL),
			 SHMEX_EBADAMOUNT);
	ck_assert_int_eq(shm_positions_add_shares(&p, 1, sym("X"), -5, NULL, NULL),
			 SHMEX_EBADAMOUNT);
	uint32_t sidx;
	ck_assert_int_eq(shm_positions_symbol_add(&p, bad, &sidx), SHMEX_EBADSYMBOL);
	ck_assert_int_eq(shm_positions_symbol_find(&p, bad, &sidx), SHMEX_EBADSYMBOL);
	ck_assert_uint_eq(p.sh->nsymbols, 0);
	ck_assert_uint_eq(p.sh->npositions, 0);

	/* Past INT64_MAX is no longer an overflow (128-bit positions). */
	ck_assert_int_eq(
		shm_positions_add_shares(&p, 1, sym("X"), INT64_MAX - 1, NULL, NULL), 0);
	ck_assert_int_eq(shm_positions_add_shares(&p, 1, sym("X"), 2, NULL, NULL), 0);
	ck_assert_int_eq(shm_positions_add_shares(&p, 2, sym("X"), 2, NULL, NULL), 0);
	ck_assert_uint_eq(p.sh->npositions, 2);
	assert_shares(get(&p, 1, "X").amount, (shm_shares_t)INT64_MAX + 1);
	assert_shares(get(&p, 2, "X").amount, 2);
	assert_conserved(&p, "X", (shm_shares_t)INT64_MAX + 3);
	shm_positions_detach(&p);
}
END_TEST

START_TEST(reserve_short_or_missing_changes_nothing)
{
	struct shm_positions p;
	make(&p, 0, 4, 16);
	uint32_t sidx, pidx, none;
	ck_assert_int_eq(
		shm_positions_add_shares(&p, 1, sym("SPY"), QTY(10), &sidx, &pidx), 0);
	/* No position at all: "insufficient shares". */
	ck_assert_int_eq(shm_positions_find(&p, 2, sidx, &none), SHMEX_ENOSHARES);
	ck_assert_int_eq(shm_positions_reserve(&p, pidx, QTY(10) + 1), SHMEX_ENOSHARES);
	struct shm_position_view v = get(&p, 1, "SPY");
	ck_assert_int_eq(v.amount, QTY(10));
	ck_assert_int_eq(v.reserved, 0);

	ck_assert_int_eq(shm_positions_reserve(&p, pidx, QTY(4)), 0);
	ck_assert_int_eq(shm_positions_reserve(&p, pidx, QTY(7)), SHMEX_ENOSHARES);
	v = get(&p, 1, "SPY");
	ck_assert_int_eq(v.amount, QTY(6));
	ck_assert_int_eq(v.reserved, QTY(4));
	ck_assert_int_eq(shm_positions_release(&p, pidx, QTY(5)), SHMEX_EINTERNAL);
	ck_assert_int_eq(shm_positions_settle_sell(&p, pidx, QTY(5)), SHMEX_EINTERNAL);
	ck_assert_int_eq(shm_positions_reserve(&p, pidx, -1), -EINVAL);
	v = get(&p, 1, "SPY");
	ck_assert_int_eq(v.amount, QTY(6));
	ck_assert_int_eq(v.reserved, QTY(4));
	assert_conserved(&p, "SPY", QTY(10));
	shm_positions_detach(&p);
}
END_TEST

START_TEST(sell_fill_moves_shares_to_buyer)
{
	struct shm_positions p;
	make(&p, 0, 4, 16);
	uint32_t sidx, seller, buyer;
	ck_assert_int_eq(
		shm_positions_add_shares(&p, 1, sym("SPY"), QTY(10), &sidx, &seller), 0);
	ck_assert_int_eq(shm_positions_ensure(&p, 2, sidx, &buyer), 0);
	uint32_t again;
	ck_assert_int_eq(shm_positions_ensure(&p, 2, sidx, &again), 0);
	ck_assert_uint_eq(again, buyer);
	ck_assert_int_eq(get(&p, 2, "SPY").amount, 0);

	ck_assert_int_eq(shm_positions_reserve(&p, seller, QTY(8)), 0);
	ck_assert_int_eq(shm_positions_settle_sell(&p, seller, QTY(3)), 0);
	ck_assert_int_eq(shm_positions_credit(&p, buyer, QTY(3)), 0);
	ck_assert_int_eq(shm_positions_release(&p, seller, QTY(5)), 0);
	struct shm_position_view s = get(&p, 1, "SPY"), b = get(&p, 2, "SPY");
	ck_assert_int_eq(s.amount, QTY(7));
	ck_assert_int_eq(s.reserved, 0);
	ck_assert_int_eq(b.amount, QTY(3));
	ck_assert_int_eq(b.reserved, 0);
	assert_conserved(&p, "SPY", QTY(10));

	ck_assert_int_eq(shm_positions_ensure(&p, 2, p.sym_slots, &again),
			 SHMEX_EBADINDEX);
	ck_assert_int_eq(shm_positions_credit(&p, p.pos_slots, 1), SHMEX_EBADINDEX);
	shm_positions_detach(&p);
}
END_TEST

/* Sixteen accounts granted the largest single grant each: the symbol's
 * total passes INT64_MAX sixteen times over (main refused the second one
 * with "Numeric overflow") and every sum stays exact. */
START_TEST(grants_past_int64_are_exact)
{
	struct shm_positions p;
	make(&p, 0, 4, 64);
	for (uint64_t a = 1; a <= 16; a++)
		ck_assert_int_eq(shm_positions_add_shares(&p, a, sym("SPY"), INT64_MAX,
							  NULL, NULL),
				 0);
	ck_assert_int_eq(shm_positions_add_shares(&p, 3, sym("SPY"), 7, NULL, NULL), 0);
	for (uint64_t a = 1; a <= 16; a++)
		assert_shares(get(&p, a, "SPY").amount,
			      (shm_shares_t)INT64_MAX + (a == 3 ? 7 : 0));
	assert_conserved(&p, "SPY", (shm_shares_t)INT64_MAX * 16 + 7);
	uint32_t sidx;
	struct shm_positions_totals t;
	ck_assert_int_eq(shm_positions_symbol_find(&p, sym("SPY"), &sidx), 0);
	ck_assert_int_eq(shm_positions_totals(&p, sidx, &t), 0);
	ck_assert_uint_eq(t.positions, 16);
	assert_shares(t.amount, (shm_shares_t)INT64_MAX * 16 + 7);
	assert_shares(t.reserved, 0);
	ck_assert_str_eq(txt(t.created), "14757395258967641.2919");
	shm_positions_detach(&p);
}
END_TEST

/* A grant that would take a symbol's created total past SHM_SHARES_MAX is
 * "out of range" (not "Numeric overflow") and changes nothing.  The total
 * is brought near the cap by writing the region directly (10^11 real
 * grants would be needed), conservation kept. */
START_TEST(grant_past_the_cap_is_refused)
{
	struct shm_positions p;
	make(&p, 0, 4, 16);
	uint32_t sidx, pidx;
	ck_assert_int_eq(shm_positions_add_shares(&p, 1, sym("SPY"), 1, &sidx, &pidx), 0);
	store16_release(&p.pos[pidx].amount, SHM_SHARES_MAX - 10);
	store16_release(&p.sym[sidx].created, SHM_SHARES_MAX - 10);
	ck_assert_int_eq(shm_positions_add_shares(&p, 2, sym("SPY"), 10, NULL, NULL), 0);
	assert_conserved(&p, "SPY", SHM_SHARES_MAX);
	ck_assert_uint_eq(p.sh->npositions, 2);

	ck_assert_int_eq(shm_positions_add_shares(&p, 3, sym("SPY"), 1, NULL, NULL),
			 SHMEX_ESHARESRANGE);
	ck_assert_int_eq(
		shm_positions_add_shares(&p, 1, sym("SPY"), INT64_MAX, NULL, NULL),
		SHMEX_ESHARESRANGE);
	ck_assert_msg(strstr(shmex_strerror(SHMEX_ESHARESRANGE), "out of range"), "%s",
		      shmex_strerror(SHMEX_ESHARESRANGE));
	ck_assert_uint_eq(p.sh->npositions, 2);
	struct shm_position_view v;
	ck_assert_int_eq(shm_positions_read(&p, 3, sym("SPY"), &v), SHMEX_ENOSHARES);
	assert_shares(get(&p, 1, "SPY").amount, SHM_SHARES_MAX - 10);
	assert_shares(get(&p, 2, "SPY").amount, 10);
	assert_conserved(&p, "SPY", SHM_SHARES_MAX);
	ck_assert_str_eq(txt(SHM_SHARES_MAX), "100000000000000000000000000");

	/* Other symbols are not affected. */
	ck_assert_int_eq(
		shm_positions_add_shares(&p, 3, sym("QQQ"), INT64_MAX, NULL, NULL), 0);
	shm_positions_detach(&p);
}
END_TEST

/* A buyer near INT64_MAX credited past it by fills stays exact: the
 * credit of a match cannot overflow.  Only a corrupted amount near 2^127
 * makes it fail, and then nothing changes. */
START_TEST(credit_past_int64_is_exact)
{
	struct shm_positions p;
	make(&p, 0, 4, 16);
	uint32_t sidx, buyer, seller;
	ck_assert_int_eq(
		shm_positions_add_shares(&p, 1, sym("SPY"), INT64_MAX - 5, &sidx, &buyer),
		0);
	for (int round = 0; round < 2; round++) {
		int64_t q = round == 0 ? QTY(100) : INT64_MAX;
		ck_assert_int_eq(
			shm_positions_add_shares(&p, 2, sym("SPY"), q, NULL, &seller), 0);
		ck_assert_int_eq(shm_positions_reserve(&p, seller, q), 0);
		ck_assert_int_eq(shm_positions_settle_sell(&p, seller, q), 0);
		ck_assert_int_eq(shm_positions_credit(&p, buyer, q), 0);
	}
	shm_shares_t want = (shm_shares_t)INT64_MAX - 5 + QTY(100) + INT64_MAX;
	assert_shares(get(&p, 1, "SPY").amount, want);
	assert_shares(get(&p, 2, "SPY").amount, 0);
	assert_shares(get(&p, 2, "SPY").reserved, 0);
	assert_conserved(&p, "SPY", want);

	/* A sell of more than INT64_MAX units in two orders. */
	ck_assert_int_eq(shm_positions_reserve(&p, buyer, INT64_MAX), 0);
	ck_assert_int_eq(shm_positions_reserve(&p, buyer, QTY(50)), 0);
	assert_shares(get(&p, 1, "SPY").reserved, (shm_shares_t)INT64_MAX + QTY(50));
	ck_assert_int_eq(shm_positions_release(&p, buyer, INT64_MAX), 0);
	assert_conserved(&p, "SPY", want);

	/* Corrupted: an amount at the top of the 128-bit range. */
	const shm_shares_t top = (shm_shares_t)(((unsigned __int128)1 << 127) - 1);
	store16_release(&p.pos[seller].amount, top - 1);
	ck_assert_int_eq(shm_positions_credit(&p, seller, 2), SHMEX_EOVERFLOW);
	assert_shares(load16_acquire(&p.pos[seller].amount), top - 1);
	/* Readers report such a value as damage, not as shares. */
	struct shm_position_view v;
	ck_assert_int_eq(shm_positions_read_slot(&p, seller, &v), SHMEX_EBADINDEX);
	store16_release(&p.pos[seller].amount, -1);
	ck_assert_int_eq(shm_positions_read_slot(&p, seller, &v), SHMEX_EBADINDEX);
	shm_positions_detach(&p);
}
END_TEST

START_TEST(capacities)
{
	struct shm_positions p;
	make(&p, 0, 2, 3);
	uint32_t sidx, pidx;
	ck_assert_int_eq(shm_positions_add_shares(&p, 1, sym("A"), 1, NULL, NULL), 0);
	ck_assert_int_eq(shm_positions_add_shares(&p, 1, sym("B"), 1, &sidx, NULL), 0);
	ck_assert_int_eq(shm_positions_add_shares(&p, 1, sym("C"), 1, NULL, NULL),
			 SHMEX_ESYMBOLSFULL);
	ck_assert_int_eq(shm_positions_symbol_add(&p, sym("C"), &pidx),
			 SHMEX_ESYMBOLSFULL);
	ck_assert_int_eq(shm_positions_add_shares(&p, 2, sym("A"), 1, NULL, NULL), 0);
	/* Three positions: a fourth is refused, by add_shares and ensure,
	 * and nothing is left behind. */
	ck_assert_int_eq(shm_positions_add_shares(&p, 3, sym("A"), 1, NULL, NULL),
			 SHMEX_EPOSITIONSFULL);
	ck_assert_int_eq(shm_positions_ensure(&p, 3, sidx, &pidx), SHMEX_EPOSITIONSFULL);
	ck_assert_uint_eq(p.sh->npositions, 3);
	ck_assert_uint_eq(p.sh->nsymbols, 2);
	assert_conserved(&p, "A", 2);
	/* Existing positions still take shares. */
	ck_assert_int_eq(shm_positions_add_shares(&p, 2, sym("A"), 1, NULL, NULL), 0);
	assert_conserved(&p, "A", 3);
	struct shm_positions q;
	ck_assert_int_eq(shm_positions_create(&q, inst, 1, 0, 3, 0600), -EINVAL);
	ck_assert_int_eq(shm_positions_create(&q, inst, 1, 1, 0, 0600), -EINVAL);
	ck_assert_int_eq(test_count_objects(inst), 1);
	shm_positions_detach(&p);
}
END_TEST

START_TEST(readonly_and_corrupted)
{
	struct shm_positions p, r;
	make(&p, 1, 4, 8);
	uint32_t sidx, pidx;
	ck_assert_int_eq(shm_positions_add_shares(&p, 9, sym("SPY"), 5, &sidx, &pidx), 0);

	ck_assert_int_eq(shm_positions_attach(&r, inst, 1, SHM_RDONLY), 0);
	ck_assert_int_eq(shm_positions_add_shares(&r, 9, sym("SPY"), 5, NULL, NULL),
			 -EROFS);
	ck_assert_int_eq(shm_positions_reserve(&r, pidx, 1), -EROFS);
	ck_assert_int_eq(shm_positions_symbol_add(&r, sym("Q"), &sidx), -EROFS);

	/* A corrupted symbol index in a position is caught by readers. */
	struct shm_position_view v;
	p.pos[pidx].sym = 0x7fffffff;
	ck_assert_int_eq(shm_positions_read_slot(&r, pidx, &v), SHMEX_EBADINDEX);
	p.pos[pidx].sym = sidx;
	ck_assert_int_eq(shm_positions_read_slot(&r, pidx, &v), 0);
	/* A corrupted name too. */
	p.sym[sidx].name[0] = '-';
	ck_assert_int_eq(shm_positions_read_slot(&r, pidx, &v), SHMEX_EBADINDEX);
	p.sym[sidx].name[0] = 'S';
	shm_positions_detach(&r);

	/* Capacities that do not fit the object, or the wrong shard. */
	struct shm_region_hdr_sh *h = shm_region_hdr(&p.region);
	uint64_t slots = h->capacity[SHM_POSITIONS_CAP_POS_SLOTS];
	h->capacity[SHM_POSITIONS_CAP_POS_SLOTS] = slots << 8;
	ck_assert_int_eq(shm_positions_attach(&r, inst, 1, SHM_RDONLY), SHMEX_ETOOSHORT);
	h->capacity[SHM_POSITIONS_CAP_POS_SLOTS] = slots + 1;
	ck_assert_int_eq(shm_positions_attach(&r, inst, 1, SHM_RDONLY), SHMEX_EBADLAYOUT);
	h->capacity[SHM_POSITIONS_CAP_POS_SLOTS] = UINT64_C(1) << 32;
	ck_assert_int_eq(shm_positions_attach(&r, inst, 1, SHM_RDONLY), SHMEX_EBADLAYOUT);
	h->capacity[SHM_POSITIONS_CAP_POS_SLOTS] = slots;
	h->capacity[SHM_POSITIONS_CAP_SHARD] = 2;
	ck_assert_int_eq(shm_positions_attach(&r, inst, 1, SHM_RDONLY), SHMEX_EBADLAYOUT);
	h->capacity[SHM_POSITIONS_CAP_SHARD] = 1;
	ck_assert_int_eq(shm_positions_attach(&r, inst, 1, SHM_RDONLY), 0);
	shm_positions_detach(&r);
	shm_positions_detach(&p);
}
END_TEST

/* ---- A reader process watching the writer. */

#define WATCH_ITERS 4000000
#define WATCH_SHARES QTY(1000)

struct watch_sh {
	uint32_t stop;
	uint32_t ready;
	uint64_t bad;
	uint64_t reads;
};

static void watcher_child(struct watch_sh *ws)
{
	struct shm_positions r;
	if (shm_positions_attach(&r, inst, 0, SHM_RDONLY) != 0)
		_exit(3);
	__atomic_store_n(&ws->ready, 1, __ATOMIC_RELEASE);
	uint64_t bad = 0, reads = 0;
	uint32_t sidx;
	/* The symbol and its shares appear while we watch; wait for them. */
	struct shm_positions_totals t;
	while (shm_positions_symbol_find(&r, sym("SPY"), &sidx) != 0 ||
	       shm_positions_totals(&r, sidx, &t) != 0 || t.created != WATCH_SHARES)
		if (__atomic_load_n(&ws->stop, __ATOMIC_ACQUIRE))
			_exit(4);
	while (!__atomic_load_n(&ws->stop, __ATOMIC_ACQUIRE)) {
		for (uint64_t acct = 1; acct <= 2; acct++) {
			struct shm_position_view v;
			int rc = shm_positions_read(&r, acct, sym("SPY"), &v);
			if (rc == SHMEX_ENOSHARES)
				continue; /* not created yet */
			if (rc != 0 || v.amount < 0 || v.reserved < 0 ||
			    v.amount > WATCH_SHARES || v.reserved > WATCH_SHARES)
				bad++;
			reads++;
		}
		if (reads % 64 == 0 && (shm_positions_totals(&r, sidx, &t) != 0 ||
					t.created != WATCH_SHARES || t.positions > 2))
			bad++;
	}
	__atomic_store_n(&ws->bad, bad, __ATOMIC_RELAXED);
	__atomic_store_n(&ws->reads, reads, __ATOMIC_RELAXED);
	shm_positions_detach(&r);
	_exit(0);
}

START_TEST(reader_process_sees_valid_values)
{
	struct shm_positions p;
	make(&p, 0, 4, 16);
	struct watch_sh *ws = mmap(NULL, sizeof(*ws), PROT_READ | PROT_WRITE,
				   MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	ck_assert(ws != MAP_FAILED);
	memset(ws, 0, sizeof(*ws));
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0)
		watcher_child(ws);
	while (!__atomic_load_n(&ws->ready, __ATOMIC_ACQUIRE))
		usleep(100);

	/* The single writer: shares move between two accounts through
	 * reserve / settle / credit / release, as sells and fills do. */
	uint32_t sidx, pa[2];
	ck_assert_int_eq(
		shm_positions_add_shares(&p, 1, sym("SPY"), WATCH_SHARES, &sidx, &pa[0]),
		0);
	ck_assert_int_eq(shm_positions_ensure(&p, 2, sidx, &pa[1]), 0);
	uint64_t seed = 88172645463325252ull, wbad = 0;
	for (uint32_t n = 0; n < WATCH_ITERS; n++) {
		seed ^= seed << 13;
		seed ^= seed >> 7;
		seed ^= seed << 17;
		uint32_t k = seed & 1;
		int64_t q = (int64_t)((seed >> 8) % (uint64_t)WATCH_SHARES) + 1;
		int rc = shm_positions_reserve(&p, pa[k], q);
		if (rc == SHMEX_ENOSHARES)
			continue;
		/* No ck_assert in this loop: each one writes to check's pipe. */
		if (rc != 0)
			wbad++;
		else if (seed & 2)
			wbad += shm_positions_release(&p, pa[k], q) != 0;
		else
			wbad += shm_positions_settle_sell(&p, pa[k], q) != 0 ||
				shm_positions_credit(&p, pa[k ^ 1], q) != 0;
	}
	ck_assert_uint_eq(wbad, 0);
	__atomic_store_n(&ws->stop, 1, __ATOMIC_RELEASE);
	int st = test_wait_pid(pid, 20000);
	ck_assert_msg(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0,
		      "watcher status %d", st);
	fprintf(stderr, "positions watcher: %llu reads during %d writer moves\n",
		(unsigned long long)ws->reads, WATCH_ITERS);
	ck_assert_uint_eq(ws->bad, 0);
	assert_conserved(&p, "SPY", WATCH_SHARES);
	ck_assert_int_eq(get(&p, 1, "SPY").reserved, 0);
	ck_assert_int_eq(get(&p, 1, "SPY").amount + get(&p, 2, "SPY").amount,
			 WATCH_SHARES);
	munmap(ws, sizeof(*ws));
	shm_positions_detach(&p);
}
END_TEST

static Suite *shm_positions_suite(void)
{
	Suite *s = suite_create("shm_positions");
	TCase *tc = tcase_create("positions");
	tcase_add_unchecked_fixture(tc, name_instance, teardown);
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, add_shares_creates_symbol_and_position);
	tcase_add_test(tc, bad_requests_change_nothing);
	tcase_add_test(tc, reserve_short_or_missing_changes_nothing);
	tcase_add_test(tc, sell_fill_moves_shares_to_buyer);
	tcase_add_test(tc, grants_past_int64_are_exact);
	tcase_add_test(tc, grant_past_the_cap_is_refused);
	tcase_add_test(tc, credit_past_int64_is_exact);
	tcase_add_test(tc, capacities);
	tcase_add_test(tc, readonly_and_corrupted);
	suite_add_tcase(s, tc);

	TCase *mp = tcase_create("processes");
	tcase_add_unchecked_fixture(mp, name_instance, teardown);
	tcase_add_checked_fixture(mp, setup, teardown);
	tcase_set_timeout(mp, 60);
	tcase_add_test(mp, reader_process_sees_valid_values);
	suite_add_tcase(s, mp);
	return s;
}

SHMEX_TEST_MAIN(shm_positions_suite)
