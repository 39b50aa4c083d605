/*
 * eng_acct_suite: the account-side rules of the matcher.  The pure rules
 * (holds, settlements with price-improvement refunds, modify deltas), an
 * order's life on real regions (place, fill, cancel: exactly the open part
 * comes back), every placement rejection leaving state untouched, and a
 * long random sequence checked step by step against an independent model:
 * exact balances and positions, reservations equal to what open orders
 * hold, and conservation of cash and of each symbol's shares.
 */
#include "tests/shmex_test.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "engine/eng_acct.h"
#include "shm/shm_dec.h"
#include "shm/shm_error.h"
#include "shm/shm_msg.h"

static char inst[64];
static struct shm_accounts acc;
static struct shm_positions pos;
static struct eng_acct_ctx ctx;

#define CASH(x) ((int64_t)(x)*SHM_CASH_ONE)
#define QTY(x) ((int64_t)(x)*SHM_QTY_ONE)
#define PX(x) ((int64_t)(x)*SHM_PRICE_ONE)

/* Named once per test case in check's parent process (unchecked fixture),
 * so that the parent removes what a failed test left behind. */
static struct eng_cash *cashc;

static void name_instance(void)
{
	test_instance(inst, sizeof(inst));
}

static void cleanup(void)
{
	test_cleanup_instance(inst);
}

static void setup(void)
{
	test_cleanup_instance(inst);
	ck_assert_int_eq(shm_accounts_create(&acc, inst, 64, 0600), 0);
	ck_assert_int_eq(shm_positions_create(&pos, inst, 0, 4, 64, 0600), 0);
	ck_assert_int_eq(eng_cash_open(&cashc, &acc, NULL), 0);
	ctx.cash = cashc;
	ctx.positions = &pos;
}

static void teardown(void)
{
	eng_cash_close(cashc);
	cashc = NULL;
	shm_positions_detach(&pos);
	shm_accounts_detach(&acc);
	test_cleanup_instance(inst);
}

/* Packed symbol name (no ck_assert: it is used inside long loops, where
 * each check assertion costs a write to check's pipe). */
static const char *sym(const char *s)
{
	static char buf[4][16];
	static int n;
	char *b = buf[n++ % 4];
	if (!shm_symbol_pack(b, s, strlen(s)))
		abort();
	return b;
}

/* Creates an account and commits it: a new account is claimed at once but
 * published (findable, usable) only when the matcher commits the durable
 * journal sequence that holds its creation. */
static void create(uint64_t id, int64_t balance)
{
	ck_assert_int_eq(eng_acct_create_account(&ctx, id, balance), 0);
	uint32_t idx;
	ck_assert_int_eq(shm_accounts_find(&acc, id, &idx), SHMEX_ENOACCOUNT);
	eng_cash_commit(cashc, UINT64_MAX);
	ck_assert_int_eq(shm_accounts_find(&acc, id, &idx), 0);
}

/* An account as the region shows it once every queued credit is applied
 * (as the matcher does when the credits' journal records are durable). */
static struct shm_account_view cash(uint64_t id)
{
	eng_cash_commit(cashc, UINT64_MAX);
	struct shm_account_view v;
	ck_assert_int_eq(shm_accounts_read(&acc, id, &v), 0);
	return v;
}

static struct shm_position_view shares(uint64_t id, const char *s)
{
	struct shm_position_view v;
	int rc = shm_positions_read(&pos, id, sym(s), &v);
	if (rc == SHMEX_ENOSHARES) {
		memset(&v, 0, sizeof(v));
		return v;
	}
	ck_assert_int_eq(rc, 0);
	return v;
}

/* ---- Pure rules. */

START_TEST(hold_for_buy_and_sell)
{
	struct eng_acct_hold h;
	/* 100 x 145.67 = 14567 */
	ck_assert_int_eq(eng_acct_hold_for(SHM_SIDE_BUY, QTY(100), 1456700, &h), 0);
	ck_assert_int_eq(h.cash, CASH(14567));
	ck_assert_int_eq(h.shares, 0);
	/* The smallest amount at the smallest price: one cash unit, exact. */
	ck_assert_int_eq(eng_acct_hold_for(SHM_SIDE_BUY, 1, 1, &h), 0);
	ck_assert_int_eq(h.cash, 1);
	ck_assert_int_eq(eng_acct_hold_for(SHM_SIDE_SELL, QTY(7), PX(3), &h), 0);
	ck_assert_int_eq(h.shares, QTY(7));
	ck_assert_int_eq(h.cash, 0);
	ck_assert_int_eq(eng_acct_hold_for(SHM_SIDE_BUY, 0, PX(3), &h), 0);
	ck_assert_int_eq(h.cash, 0);

	ck_assert_int_eq(eng_acct_hold_for(2, QTY(1), PX(1), &h), SHMEX_EBADMSG);
	ck_assert_int_eq(eng_acct_hold_for(SHM_SIDE_BUY, -1, PX(1), &h),
			 SHMEX_EBADAMOUNT);
	ck_assert_int_eq(eng_acct_hold_for(SHM_SIDE_BUY, 1, 0, &h), SHMEX_EBADPRICE);
	ck_assert_int_eq(eng_acct_hold_for(SHM_SIDE_SELL, 1, -5, &h), SHMEX_EBADPRICE);
	/* 10^9 shares at 10^7: 10^16 cash does not fit in CASH scale. */
	ck_assert_int_eq(
		eng_acct_hold_for(SHM_SIDE_BUY, QTY(1000000000), PX(10000000), &h),
		SHMEX_EOVERFLOW);
}
END_TEST

START_TEST(settlement_refunds_price_improvement)
{
	/* A buy limited at 130 executes at 127 against a resting sell:
	 * 3 x q comes back to the buyer. */
	struct eng_acct_fill f = {
		.maker_account = 2,
		.taker_account = 1,
		.maker_limit = PX(127),
		.taker_limit = PX(130),
		.price = PX(127),
		.qty = QTY(7),
		.taker_side = SHM_SIDE_BUY,
	};
	struct eng_acct_settlement s;
	ck_assert_int_eq(eng_acct_settle_for(&f, &s), 0);
	ck_assert_uint_eq(s.buyer, 1);
	ck_assert_uint_eq(s.seller, 2);
	ck_assert_int_eq(s.buyer_limit, PX(130));
	ck_assert_int_eq(s.buyer_release, CASH(7 * 130));
	ck_assert_int_eq(s.buyer_refund, CASH(7 * 3));
	ck_assert_int_eq(s.seller_credit, CASH(7 * 127));
	ck_assert_int_eq(s.shares, QTY(7));
	ck_assert_int_eq(s.buyer_release, s.buyer_refund + s.seller_credit);

	/* The buyer resting at 130, an incoming sell at 120: execution at the
	 * resting price, nothing to refund. */
	struct eng_acct_fill g = {
		.maker_account = 1,
		.taker_account = 2,
		.maker_limit = PX(130),
		.taker_limit = PX(120),
		.price = PX(130),
		.qty = QTY(2),
		.taker_side = SHM_SIDE_SELL,
	};
	ck_assert_int_eq(eng_acct_settle_for(&g, &s), 0);
	ck_assert_uint_eq(s.buyer, 1);
	ck_assert_uint_eq(s.seller, 2);
	ck_assert_int_eq(s.buyer_refund, 0);
	ck_assert_int_eq(s.seller_credit, CASH(260));

	/* Fractions: 0.0003 shares, limit 1.0005, price 1.0001. */
	struct eng_acct_fill h = {
		.maker_account = 2,
		.taker_account = 1,
		.maker_limit = 10001,
		.taker_limit = 10005,
		.price = 10001,
		.qty = 3,
		.taker_side = SHM_SIDE_BUY,
	};
	ck_assert_int_eq(eng_acct_settle_for(&h, &s), 0);
	ck_assert_int_eq(s.buyer_release, 30015);
	ck_assert_int_eq(s.seller_credit, 30003);
	ck_assert_int_eq(s.buyer_refund, 12);
}
END_TEST

START_TEST(settlement_rejects_impossible_fills)
{
	struct eng_acct_fill f = {
		.maker_account = 2,
		.taker_account = 1,
		.maker_limit = PX(127),
		.taker_limit = PX(130),
		.price = PX(131),
		.qty = QTY(1),
		.taker_side = SHM_SIDE_BUY,
	};
	struct eng_acct_settlement s;
	ck_assert_int_eq(eng_acct_settle_for(&f, &s), SHMEX_EBADPRICE); /* > buy limit */
	f.price = PX(126);
	ck_assert_int_eq(eng_acct_settle_for(&f, &s), SHMEX_EBADPRICE); /* < sell limit */
	f.price = PX(127);
	f.qty = 0;
	ck_assert_int_eq(eng_acct_settle_for(&f, &s), SHMEX_EBADAMOUNT);
	f.qty = QTY(1);
	f.taker_side = 9;
	ck_assert_int_eq(eng_acct_settle_for(&f, &s), SHMEX_EBADMSG);
	f.taker_side = SHM_SIDE_BUY;
	f.qty = INT64_MAX;
	ck_assert_int_eq(eng_acct_settle_for(&f, &s), SHMEX_EOVERFLOW);
	f.qty = QTY(1);
	ck_assert_int_eq(eng_acct_settle_for(&f, &s), 0);
}
END_TEST

START_TEST(modify_delta)
{
	struct eng_acct_hold d;
	/* Buy 10 @ 5 -> 4 @ 5: 30 back.  -> 10 @ 6: 10 more. */
	ck_assert_int_eq(
		eng_acct_modify_delta(SHM_SIDE_BUY, QTY(10), PX(5), QTY(4), PX(5), &d),
		0);
	ck_assert_int_eq(d.cash, -CASH(30));
	ck_assert_int_eq(
		eng_acct_modify_delta(SHM_SIDE_BUY, QTY(10), PX(5), QTY(10), PX(6), &d),
		0);
	ck_assert_int_eq(d.cash, CASH(10));
	/* To zero: everything back. */
	ck_assert_int_eq(
		eng_acct_modify_delta(SHM_SIDE_BUY, QTY(10), PX(5), 0, PX(5), &d), 0);
	ck_assert_int_eq(d.cash, -CASH(50));
	/* Sells move shares only; the price does not matter. */
	ck_assert_int_eq(
		eng_acct_modify_delta(SHM_SIDE_SELL, QTY(10), PX(5), QTY(12), PX(1), &d),
		0);
	ck_assert_int_eq(d.shares, QTY(2));
	ck_assert_int_eq(d.cash, 0);
	ck_assert_int_eq(
		eng_acct_modify_delta(SHM_SIDE_SELL, QTY(10), PX(5), -1, PX(1), &d),
		SHMEX_EBADAMOUNT);
}
END_TEST

/* ---- On real regions. */

START_TEST(order_life_refunds_exactly)
{
	uint32_t spy;
	create(1, CASH(10000));
	create(2, CASH(0));
	ck_assert_int_eq(eng_acct_create_account(&ctx, 2, CASH(5)), SHMEX_EACCOUNTEXISTS);
	ck_assert_int_eq(eng_acct_add_shares(&ctx, 2, sym("SPY"), QTY(100), &spy), 0);

	/* Seller rests 100 @ 127; buyer comes in for 60 @ 130. */
	ck_assert_int_eq(eng_acct_place(&ctx, 2, spy, SHM_SIDE_SELL, QTY(100), PX(127)),
			 0);
	ck_assert_int_eq(shares(2, "SPY").amount, 0);
	ck_assert_int_eq(shares(2, "SPY").reserved, QTY(100));
	ck_assert_int_eq(eng_acct_place(&ctx, 1, spy, SHM_SIDE_BUY, QTY(60), PX(130)), 0);
	ck_assert_int_eq(cash(1).balance, CASH(10000 - 7800));
	ck_assert_int_eq(cash(1).reserved, CASH(7800));

	/* 40 trade at the resting price, 127. */
	struct eng_acct_fill f = {
		.maker_account = 2,
		.taker_account = 1,
		.maker_limit = PX(127),
		.taker_limit = PX(130),
		.price = PX(127),
		.qty = QTY(40),
		.taker_side = SHM_SIDE_BUY,
	};
	ck_assert_int_eq(eng_acct_settle(&ctx, spy, &f), 0);
	ck_assert_int_eq(cash(1).reserved, CASH(20 * 130));
	ck_assert_int_eq(cash(1).balance, CASH(10000 - 7800 + 40 * 3));
	ck_assert_int_eq(cash(2).balance, CASH(40 * 127));
	ck_assert_int_eq(shares(1, "SPY").amount, QTY(40));
	ck_assert_int_eq(shares(2, "SPY").reserved, QTY(60));

	/* Cancel the buyer's open 20: exactly 20 x 130 comes back. */
	ck_assert_int_eq(eng_acct_unhold(&ctx, 1, spy, SHM_SIDE_BUY, QTY(20), PX(130)),
			 0);
	ck_assert_int_eq(cash(1).reserved, 0);
	ck_assert_int_eq(cash(1).balance, CASH(10000 - 40 * 127));
	/* Cancel the seller's open 60. */
	ck_assert_int_eq(eng_acct_unhold(&ctx, 2, spy, SHM_SIDE_SELL, QTY(60), PX(127)),
			 0);
	ck_assert_int_eq(shares(2, "SPY").amount, QTY(60));
	ck_assert_int_eq(shares(2, "SPY").reserved, 0);
	/* The refund is never applied twice. */
	ck_assert_int_eq(eng_acct_unhold(&ctx, 1, spy, SHM_SIDE_BUY, QTY(20), PX(130)),
			 SHMEX_EINTERNAL);
	ck_assert_int_eq(cash(1).balance, CASH(10000 - 40 * 127));

	struct shm_accounts_totals t;
	ck_assert_int_eq(shm_accounts_totals(&acc, &t), 0);
	ck_assert_int_eq(t.balance + t.reserved, CASH(10000));
	struct shm_positions_totals pt;
	ck_assert_int_eq(shm_positions_totals(&pos, spy, &pt), 0);
	ck_assert_int_eq(pt.amount + pt.reserved, QTY(100));
}
END_TEST

START_TEST(self_trade_and_modify)
{
	uint32_t x;
	create(5, CASH(1000));
	ck_assert_int_eq(eng_acct_add_shares(&ctx, 5, sym("X"), QTY(10), &x), 0);
	ck_assert_int_eq(eng_acct_place(&ctx, 5, x, SHM_SIDE_SELL, QTY(10), PX(10)), 0);
	ck_assert_int_eq(eng_acct_place(&ctx, 5, x, SHM_SIDE_BUY, QTY(10), PX(12)), 0);
	/* Modify the buy: 10 @ 12 -> 5 @ 12 gives 60 back; -> 5 @ 300
	 * needs 1440 more than the 60 held: refused, nothing changes. */
	ck_assert_int_eq(eng_acct_modify(&ctx, 5, x, SHM_SIDE_BUY, QTY(10), PX(12),
					 QTY(5), PX(12), false),
			 0);
	ck_assert_int_eq(cash(5).reserved, CASH(60));
	ck_assert_int_eq(eng_acct_modify(&ctx, 5, x, SHM_SIDE_BUY, QTY(5), PX(12), QTY(5),
					 PX(300), false),
			 SHMEX_ENOFUNDS);
	ck_assert_int_eq(cash(5).reserved, CASH(60));
	ck_assert_int_eq(cash(5).balance, CASH(940));
	/* Modify the sell up beyond the position: refused. */
	ck_assert_int_eq(eng_acct_modify(&ctx, 5, x, SHM_SIDE_SELL, QTY(10), PX(10),
					 QTY(11), PX(10), false),
			 SHMEX_ENOSHARES);
	/* The account trades with itself: 5 at 10. */
	struct eng_acct_fill f = {
		.maker_account = 5,
		.taker_account = 5,
		.maker_limit = PX(10),
		.taker_limit = PX(12),
		.price = PX(10),
		.qty = QTY(5),
		.taker_side = SHM_SIDE_BUY,
	};
	ck_assert_int_eq(eng_acct_settle(&ctx, x, &f), 0);
	ck_assert_int_eq(cash(5).reserved, 0);
	ck_assert_int_eq(cash(5).balance, CASH(1000));
	ck_assert_int_eq(shares(5, "X").amount, QTY(5));
	ck_assert_int_eq(shares(5, "X").reserved, QTY(5));
	ck_assert_int_eq(eng_acct_modify(&ctx, 5, x, SHM_SIDE_SELL, QTY(5), PX(10), 0,
					 PX(10), false),
			 0);
	ck_assert_int_eq(shares(5, "X").amount, QTY(10));
}
END_TEST

START_TEST(rejections_change_nothing)
{
	uint32_t spy, none;
	create(1, CASH(100));
	create(2, CASH(100));
	ck_assert_int_eq(eng_acct_add_shares(&ctx, 9, sym("SPY"), QTY(1), &none),
			 SHMEX_ENOACCOUNT);
	ck_assert_int_eq(shm_positions_symbol_find(&pos, sym("SPY"), &none),
			 SHMEX_ENOSYMBOL);
	ck_assert_int_eq(eng_acct_add_shares(&ctx, 1, sym("SPY"), QTY(10), &spy), 0);

	ck_assert_int_eq(eng_acct_place(&ctx, 9, spy, SHM_SIDE_BUY, QTY(1), PX(1)),
			 SHMEX_ENOACCOUNT);
	ck_assert_int_eq(eng_acct_place(&ctx, 9, spy, SHM_SIDE_SELL, QTY(1), PX(1)),
			 SHMEX_ENOACCOUNT);
	ck_assert_int_eq(eng_acct_place(&ctx, 2, spy, SHM_SIDE_BUY, QTY(11), PX(10)),
			 SHMEX_ENOFUNDS);
	ck_assert_int_eq(eng_acct_place(&ctx, 2, spy, SHM_SIDE_SELL, QTY(1), PX(10)),
			 SHMEX_ENOSHARES);
	ck_assert_int_eq(eng_acct_place(&ctx, 1, spy, SHM_SIDE_SELL, QTY(11), PX(10)),
			 SHMEX_ENOSHARES);
	ck_assert_int_eq(eng_acct_place(&ctx, 1, spy, SHM_SIDE_SELL, 0, PX(10)),
			 SHMEX_EBADAMOUNT);
	ck_assert_int_eq(eng_acct_place(&ctx, 1, spy, SHM_SIDE_BUY, QTY(1), 0),
			 SHMEX_EBADPRICE);
	ck_assert_int_eq(eng_acct_place(&ctx, 1, spy, 7, QTY(1), PX(1)), SHMEX_EBADMSG);
	ck_assert_int_eq(cash(1).balance, CASH(100));
	ck_assert_int_eq(cash(2).balance, CASH(100));
	ck_assert_int_eq(cash(2).reserved, 0);
	ck_assert_int_eq(shares(1, "SPY").amount, QTY(10));
	ck_assert_int_eq(shares(1, "SPY").reserved, 0);
	ck_assert_int_eq(shm_positions_find(&pos, 2, spy, &none), SHMEX_ENOSHARES);
}
END_TEST

START_TEST(positions_full_buy_refused_cash_untouched)
{
	/* A shard with room for one position: a buyer without one is
	 * refused before matching (its later credit could not be stored),
	 * and its cash is untouched. */
	shm_positions_detach(&pos);
	ck_assert_int_eq(shm_positions_unlink(inst, 0), 0);
	ck_assert_int_eq(shm_positions_create(&pos, inst, 0, 1, 1, 0600), 0);
	uint32_t s;
	create(1, CASH(100));
	create(2, CASH(100));
	ck_assert_int_eq(eng_acct_add_shares(&ctx, 1, sym("S"), QTY(1), &s), 0);
	ck_assert_int_eq(eng_acct_place(&ctx, 2, s, SHM_SIDE_BUY, QTY(1), PX(5)),
			 SHMEX_EPOSITIONSFULL);
	ck_assert_int_eq(cash(2).balance, CASH(100));
	ck_assert_int_eq(cash(2).reserved, 0);
	/* The holder of the one position may buy more. */
	ck_assert_int_eq(eng_acct_place(&ctx, 1, s, SHM_SIDE_BUY, QTY(1), PX(5)), 0);
	ck_assert_int_eq(cash(1).reserved, CASH(5));
}
END_TEST

/* ---- A long random sequence against an independent model. */

#define NACC 6
#define NSYM 3
#define MAXORD 256
#define RANDOM_STEPS 200000

struct model_order {
	uint64_t account;
	uint32_t s; /* index into the test's symbols */
	uint8_t side;
	int64_t open;  /* QTY */
	int64_t limit; /* PRICE */
};

struct model {
	__int128 balance[NACC], reserved[NACC], deposited;
	__int128 amount[NACC][NSYM], held[NACC][NSYM], created[NSYM];
	struct model_order ord[MAXORD];
	uint32_t nord;
	uint32_t sidx[NSYM];
	bool has_sym[NSYM];
};

static const char *const SYMS[NSYM] = {"AAA", "BBB", "CCC"};

static uint64_t rng(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

static uint64_t acct_id(uint32_t a)
{
	return 1000 + a;
}

/* Compares everything with the model; returns a description of the first
 * difference, or NULL. */
static const char *model_check(const struct model *m)
{
	static char why[160];
	__int128 open_cash[NACC] = {0}, open_shares[NACC][NSYM] = {{0}};
	for (uint32_t i = 0; i < m->nord; i++) {
		const struct model_order *o = &m->ord[i];
		uint32_t a = (uint32_t)(o->account - 1000);
		if (o->side == SHM_SIDE_BUY)
			open_cash[a] += (__int128)o->open * o->limit;
		else
			open_shares[a][o->s] += o->open;
	}
	for (uint32_t a = 0; a < NACC; a++) {
		struct shm_account_view v;
		if (shm_accounts_read(&acc, acct_id(a), &v) != 0)
			return "account missing";
		if (v.balance != m->balance[a] || v.reserved != m->reserved[a]) {
			snprintf(why, sizeof(why), "account %u: %lld/%lld", a,
				 (long long)v.balance, (long long)v.reserved);
			return why;
		}
		/* The reservation is exactly what the open buys hold. */
		if (v.reserved != open_cash[a] || v.balance < 0)
			return "reserved cash != open buys x limits";
		for (uint32_t s = 0; s < NSYM; s++) {
			struct shm_position_view pv;
			int rc = shm_positions_read(&pos, acct_id(a), sym(SYMS[s]), &pv);
			if (rc != 0)
				memset(&pv, 0, sizeof(pv));
			if (pv.amount != m->amount[a][s] ||
			    pv.reserved != m->held[a][s] ||
			    pv.reserved != open_shares[a][s]) {
				snprintf(why, sizeof(why), "position %u/%u", a, s);
				return why;
			}
		}
	}
	/* Conservation, from the regions' own audits. */
	struct shm_accounts_totals t;
	if (shm_accounts_totals(&acc, &t) != 0 || t.balance + t.reserved != t.deposited ||
	    t.deposited != t.total_deposited || t.deposited != m->deposited)
		return "cash not conserved";
	for (uint32_t s = 0; s < NSYM; s++) {
		struct shm_positions_totals pt;
		if (!m->has_sym[s])
			continue;
		if (shm_positions_totals(&pos, m->sidx[s], &pt) != 0 ||
		    pt.amount + pt.reserved != pt.created || pt.created != m->created[s])
			return "shares not conserved";
	}
	return NULL;
}

static void model_remove(struct model *m, uint32_t i)
{
	m->ord[i] = m->ord[--m->nord];
}

START_TEST(random_sequence_conserves)
{
	struct model *m = calloc(1, sizeof(*m));
	ck_assert_ptr_nonnull(m);
	uint64_t seed = 0x2545F4914F6CDD1Dull;
	for (uint32_t a = 0; a < NACC; a++) {
		int64_t b = (int64_t)(rng(&seed) % (uint64_t)CASH(100000));
		create(acct_id(a), b);
		m->balance[a] = b;
		m->deposited += b;
	}
	uint64_t counts[8] = {0};
	const char *bad = NULL;
	uint32_t bad_step = 0;
	for (uint32_t step = 0; step < RANDOM_STEPS && !bad; step++) {
		uint64_t r = rng(&seed);
		uint32_t a = (uint32_t)(rng(&seed) % NACC);
		uint32_t s = (uint32_t)(rng(&seed) % NSYM);
		uint32_t op = (uint32_t)(r % 100);
		int rc;
		if (op < 8 || !m->has_sym[s]) {
			/* Add shares (creates the symbol when new). */
			int64_t q = (int64_t)(rng(&seed) % (uint64_t)QTY(500)) + 1;
			rc = eng_acct_add_shares(&ctx, acct_id(a), sym(SYMS[s]), q,
						 &m->sidx[s]);
			if (rc != 0) {
				bad = "add_shares failed";
				break;
			}
			m->has_sym[s] = true;
			m->amount[a][s] += q;
			m->created[s] += q;
			counts[0]++;
		} else if (op < 12) {
			/* Deposit. */
			int64_t x = (int64_t)(rng(&seed) % (uint64_t)CASH(1000));
			uint32_t idx;
			if (shm_accounts_find(&acc, acct_id(a), &idx) != 0 ||
			    shm_accounts_deposit(&acc, idx, x) != 0) {
				bad = "deposit failed";
				break;
			}
			m->balance[a] += x;
			m->deposited += x;
			counts[1]++;
		} else if (op < 45 && m->nord < MAXORD) {
			/* Place: prices around 100, fractional amounts. */
			struct model_order o = {
				.account = acct_id(a),
				.s = s,
				.side = (uint8_t)(r >> 8 & 1),
				.open = (int64_t)(rng(&seed) % (uint64_t)QTY(300)) + 1,
				.limit = PX(90) +
					 (int64_t)(rng(&seed) % (uint64_t)PX(20)) + 1,
			};
			rc = eng_acct_place(&ctx, o.account, m->sidx[s], o.side, o.open,
					    o.limit);
			__int128 need = o.side == SHM_SIDE_BUY
						? (__int128)o.open * o.limit
						: o.open;
			__int128 have =
				o.side == SHM_SIDE_BUY ? m->balance[a] : m->amount[a][s];
			int expect = need <= have             ? 0
				     : o.side == SHM_SIDE_BUY ? SHMEX_ENOFUNDS
							      : SHMEX_ENOSHARES;
			if (rc != expect) {
				bad = "place: unexpected result";
				break;
			}
			if (rc == 0) {
				if (o.side == SHM_SIDE_BUY) {
					m->balance[a] -= need;
					m->reserved[a] += need;
				} else {
					m->amount[a][s] -= need;
					m->held[a][s] += need;
				}
				m->ord[m->nord++] = o;
				counts[2]++;
			} else {
				counts[3]++;
			}
		} else if (op < 75 && m->nord >= 2) {
			/* Fill a crossing buy and sell of one symbol. */
			uint32_t bi = (uint32_t)(rng(&seed) % m->nord);
			uint32_t si = (uint32_t)(rng(&seed) % m->nord);
			uint32_t n;
			for (n = 0; n < m->nord; n++, bi = (bi + 1) % m->nord)
				if (m->ord[bi].side == SHM_SIDE_BUY)
					break;
			for (n = 0; n < m->nord; n++, si = (si + 1) % m->nord)
				if (m->ord[si].side == SHM_SIDE_SELL &&
				    m->ord[si].s == m->ord[bi].s &&
				    m->ord[si].limit <= m->ord[bi].limit)
					break;
			struct model_order *b = &m->ord[bi], *se = &m->ord[si];
			if (b->side != SHM_SIDE_BUY || se->side != SHM_SIDE_SELL ||
			    b->s != se->s || b->limit < se->limit)
				continue;
			bool buyer_rests = r >> 9 & 1;
			int64_t hi = b->open < se->open ? b->open : se->open;
			int64_t q = (int64_t)(rng(&seed) % (uint64_t)hi) + 1;
			struct eng_acct_fill f = {
				.maker_account = buyer_rests ? b->account : se->account,
				.taker_account = buyer_rests ? se->account : b->account,
				.maker_limit = buyer_rests ? b->limit : se->limit,
				.taker_limit = buyer_rests ? se->limit : b->limit,
				.price = buyer_rests ? b->limit : se->limit,
				.qty = q,
				.taker_side = buyer_rests ? SHM_SIDE_SELL : SHM_SIDE_BUY,
			};
			if (eng_acct_settle(&ctx, m->sidx[b->s], &f) != 0) {
				bad = "settle failed";
				break;
			}
			uint32_t ba = (uint32_t)(b->account - 1000);
			uint32_t sa = (uint32_t)(se->account - 1000);
			m->reserved[ba] -= (__int128)q * b->limit;
			m->balance[ba] += (__int128)q * (b->limit - f.price);
			m->balance[sa] += (__int128)q * f.price;
			m->held[sa][b->s] -= q;
			m->amount[ba][b->s] += q;
			b->open -= q;
			se->open -= q;
			/* Remove the emptied ones, higher index first. */
			uint32_t first = bi > si ? bi : si, second = bi > si ? si : bi;
			if (m->ord[first].open == 0)
				model_remove(m, first);
			if (m->ord[second].open == 0)
				model_remove(m, second);
			counts[4]++;
		} else if (op < 90 && m->nord > 0) {
			/* Cancel (or IOC/FOK kill) of an open part. */
			uint32_t i = (uint32_t)(rng(&seed) % m->nord);
			struct model_order *o = &m->ord[i];
			rc = eng_acct_unhold(&ctx, o->account, m->sidx[o->s], o->side,
					     o->open, o->limit);
			if (rc != 0) {
				bad = "unhold failed";
				break;
			}
			uint32_t oa = (uint32_t)(o->account - 1000);
			if (o->side == SHM_SIDE_BUY) {
				__int128 x = (__int128)o->open * o->limit;
				m->reserved[oa] -= x;
				m->balance[oa] += x;
			} else {
				m->held[oa][o->s] -= o->open;
				m->amount[oa][o->s] += o->open;
			}
			model_remove(m, i);
			counts[5]++;
		} else if (m->nord > 0) {
			/* Modify size and limit. */
			uint32_t i = (uint32_t)(rng(&seed) % m->nord);
			struct model_order *o = &m->ord[i];
			uint32_t oa = (uint32_t)(o->account - 1000);
			int64_t nopen =
				(int64_t)(rng(&seed) % (uint64_t)(2 * o->open + 1));
			int64_t nlimit =
				PX(90) + (int64_t)(rng(&seed) % (uint64_t)PX(20)) + 1;
			rc = eng_acct_modify(&ctx, o->account, m->sidx[o->s], o->side,
					     o->open, o->limit, nopen, nlimit, false);
			__int128 d = o->side == SHM_SIDE_BUY
					     ? (__int128)nopen * nlimit -
						       (__int128)o->open * o->limit
					     : nopen - o->open;
			__int128 have = o->side == SHM_SIDE_BUY ? m->balance[oa]
								: m->amount[oa][o->s];
			int expect = d <= have                 ? 0
				     : o->side == SHM_SIDE_BUY ? SHMEX_ENOFUNDS
							       : SHMEX_ENOSHARES;
			if (rc != expect) {
				bad = "modify: unexpected result";
				break;
			}
			if (rc == 0) {
				if (o->side == SHM_SIDE_BUY) {
					m->balance[oa] -= d;
					m->reserved[oa] += d;
				} else {
					m->amount[oa][o->s] -= d;
					m->held[oa][o->s] += d;
				}
				o->open = nopen;
				o->limit = nlimit;
				if (nopen == 0)
					model_remove(m, i);
			}
			counts[6]++;
		}
		/* No ck_assert in the loop: each writes to check's pipe.
		 * Credits wait for a commit (the matcher's durable point);
		 * committing only now and then makes the later steps run on
		 * allowances, and the region must then equal the model. */
		if (!bad && (rng(&seed) & 3) == 0) {
			eng_cash_commit(cashc, UINT64_MAX);
			bad = model_check(m);
		}
		bad_step = step;
	}
	if (!bad) {
		eng_cash_commit(cashc, UINT64_MAX);
		bad = model_check(m);
	}
	ck_assert_msg(bad == NULL, "step %u: %s", bad_step, bad);
	fprintf(stderr,
		"random: %llu add_shares, %llu deposits, %llu placed, "
		"%llu refused, %llu fills, %llu cancels, %llu modifies\n",
		(unsigned long long)counts[0], (unsigned long long)counts[1],
		(unsigned long long)counts[2], (unsigned long long)counts[3],
		(unsigned long long)counts[4], (unsigned long long)counts[5],
		(unsigned long long)counts[6]);
	ck_assert_uint_gt(counts[4], 1000);
	ck_assert_uint_gt(counts[3], 100);

	/* Cancel everything still open: nothing stays reserved. */
	while (m->nord > 0) {
		struct model_order *o = &m->ord[m->nord - 1];
		ck_assert_int_eq(eng_acct_unhold(&ctx, o->account, m->sidx[o->s], o->side,
						 o->open, o->limit),
				 0);
		m->nord--;
	}
	eng_cash_commit(cashc, UINT64_MAX);
	struct shm_accounts_totals t;
	ck_assert_int_eq(shm_accounts_totals(&acc, &t), 0);
	ck_assert_int_eq(t.reserved, 0);
	ck_assert_int_eq(t.balance, t.deposited);
	for (uint32_t s = 0; s < NSYM; s++) {
		struct shm_positions_totals pt;
		ck_assert_int_eq(shm_positions_totals(&pos, m->sidx[s], &pt), 0);
		ck_assert_int_eq(pt.reserved, 0);
		ck_assert_int_eq(pt.amount, pt.created);
	}
	free(m);
}
END_TEST

static Suite *eng_acct_suite(void)
{
	Suite *s = suite_create("eng_acct");
	TCase *pure = tcase_create("rules");
	tcase_add_test(pure, hold_for_buy_and_sell);
	tcase_add_test(pure, settlement_refunds_price_improvement);
	tcase_add_test(pure, settlement_rejects_impossible_fills);
	tcase_add_test(pure, modify_delta);
	suite_add_tcase(s, pure);

	TCase *tc = tcase_create("apply");
	tcase_add_unchecked_fixture(tc, name_instance, cleanup);
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, order_life_refunds_exactly);
	tcase_add_test(tc, self_trade_and_modify);
	tcase_add_test(tc, rejections_change_nothing);
	tcase_add_test(tc, positions_full_buy_refused_cash_untouched);
	tcase_add_test(tc, random_sequence_conserves);
	suite_add_tcase(s, tc);
	return s;
}

SHMEX_TEST_MAIN(eng_acct_suite)
