/*
 * eng_acct: account-side rules of the matcher (see eng_acct.h).
 *
 * Why this shape.  The arithmetic of reservations and settlements is where
 * money is created or destroyed by mistake, so it lives in three small pure
 * functions that tests can drive through millions of random cases; the
 * apply functions only look accounts up and call eng_cash /
 * shm_positions with the numbers those functions computed.
 *
 * Exactness.  QTY (10^4) x PRICE (10^4) is CASH (10^8) with no rounding
 * (shm_dec_cash, 128-bit product), and multiplication distributes over the
 * integers, so for an order of qty at limit L filled in parts q1..qn with
 * open part o left: q1 x L + ... + qn x L + o x L == qty x L exactly.  The
 * fills' releases and the final unhold give back exactly the reservation.
 * The refund of a fill is computed as qty x L - qty x price (both exact),
 * so release == refund + seller credit holds by construction.
 *
 * Failure atomicity.  Each apply function checks everything that can fail
 * before its first change.  The one multi-party operation, settle, then
 * performs steps that cannot fail on a consistent region; if one does
 * (corruption), it stops and reports SHMEX_EINTERNAL.  A matcher killed in
 * the middle of a settlement leaves at most the positions half-changed,
 * which its successor rebuilds from the journal; its cash moves are only
 * queued (eng_cash), so none of them is half-applied.
 */
#include "engine/eng_acct.h"

#include <stdbool.h>

#include "shm/shm_dec.h"
#include "shm/shm_error.h"
#include "shm/shm_msg.h"

int eng_acct_hold_for(uint8_t side, int64_t qty, int64_t limit, struct eng_acct_hold *h)
{
	if (side != SHM_SIDE_BUY && side != SHM_SIDE_SELL)
		return SHMEX_EBADMSG;
	if (qty < 0)
		return SHMEX_EBADAMOUNT;
	if (limit <= 0)
		return SHMEX_EBADPRICE;
	h->cash = 0;
	h->shares = 0;
	if (side == SHM_SIDE_SELL) {
		h->shares = qty;
		return 0;
	}
	return shm_dec_cash(qty, limit, &h->cash);
}

int eng_acct_settle_for(const struct eng_acct_fill *f, struct eng_acct_settlement *s)
{
	if (f->taker_side != SHM_SIDE_BUY && f->taker_side != SHM_SIDE_SELL)
		return SHMEX_EBADMSG;
	if (f->qty <= 0)
		return SHMEX_EBADAMOUNT;
	bool taker_buys = f->taker_side == SHM_SIDE_BUY;
	int64_t buy_limit = taker_buys ? f->taker_limit : f->maker_limit;
	int64_t sell_limit = taker_buys ? f->maker_limit : f->taker_limit;
	if (f->price <= 0 || sell_limit <= 0 || f->price > buy_limit ||
	    f->price < sell_limit)
		return SHMEX_EBADPRICE;

	int64_t release, credit;
	int rc = shm_dec_cash(f->qty, buy_limit, &release);
	if (rc)
		return rc;
	/* price <= buy_limit, so this product fits when the other did. */
	rc = shm_dec_cash(f->qty, f->price, &credit);
	if (rc)
		return rc;
	s->buyer = taker_buys ? f->taker_account : f->maker_account;
	s->seller = taker_buys ? f->maker_account : f->taker_account;
	s->buyer_limit = buy_limit;
	s->buyer_release = release;
	s->buyer_refund = release - credit; /* qty x (limit - price) >= 0 */
	s->seller_credit = credit;
	s->shares = f->qty;
	return 0;
}

int eng_acct_modify_delta(uint8_t side, int64_t old_open, int64_t old_limit,
			  int64_t new_open, int64_t new_limit,
			  struct eng_acct_hold *delta)
{
	struct eng_acct_hold o, n;
	int rc = eng_acct_hold_for(side, old_open, old_limit, &o);
	if (rc)
		return rc;
	rc = eng_acct_hold_for(side, new_open, new_limit, &n);
	if (rc)
		return rc;
	/* Both holds are >= 0, so their difference cannot overflow. */
	delta->cash = n.cash - o.cash;
	delta->shares = n.shares - o.shares;
	return 0;
}

int eng_acct_create_account(const struct eng_acct_ctx *c, uint64_t id, shm_cash_t balance)
{
	return eng_cash_create(c->cash, id, balance);
}

int eng_acct_add_shares(const struct eng_acct_ctx *c, uint64_t account,
			const char sym[16], int64_t qty, uint32_t *sidx)
{
	struct eng_cash_acct a;
	int rc = eng_cash_find(c->cash, account, &a);
	if (rc)
		return rc;
	return shm_positions_add_shares(c->positions, account, sym, qty, sidx, NULL);
}

/* Reserves `h` for account: cash (and the buyer's position), or shares. */
static int hold(const struct eng_acct_ctx *c, uint64_t account, uint32_t sidx,
		const struct eng_acct_hold *h)
{
	struct eng_cash_acct a;
	uint32_t pidx;
	int rc = eng_cash_find(c->cash, account, &a);
	if (rc)
		return rc;
	if (h->shares > 0) {
		rc = shm_positions_find(c->positions, account, sidx, &pidx);
		if (rc)
			return rc; /* no position: SHMEX_ENOSHARES */
		return shm_positions_reserve(c->positions, pidx, h->shares);
	}
	if (h->cash > 0) {
		rc = eng_cash_reserve(c->cash, &a, h->cash);
		if (rc)
			return rc;
	}
	/* A buyer's position must exist before any fill can credit it. */
	rc = shm_positions_ensure(c->positions, account, sidx, &pidx);
	if (rc && h->cash > 0)
		eng_cash_unreserve_now(c->cash, &a, h->cash);
	return rc;
}

/* Gives back `h` (cash or shares, >= 0): queued (a credit) or, with now,
 * at once (undoing this request's own reservation). */
static int unhold(const struct eng_acct_ctx *c, uint64_t account, uint32_t sidx,
		  const struct eng_acct_hold *h, bool now)
{
	uint32_t pidx;
	if (h->shares > 0) {
		int rc = shm_positions_find(c->positions, account, sidx, &pidx);
		if (rc)
			return SHMEX_EINTERNAL; /* shares held, no position */
		return shm_positions_release(c->positions, pidx, h->shares);
	}
	if (h->cash > 0) {
		struct eng_cash_acct a;
		int rc = eng_cash_find(c->cash, account, &a);
		if (rc)
			return rc;
		if (now)
			eng_cash_unreserve_now(c->cash, &a, h->cash);
		else
			return eng_cash_release(c->cash, &a, h->cash);
	}
	return 0;
}

int eng_acct_place(const struct eng_acct_ctx *c, uint64_t account, uint32_t sidx,
		   uint8_t side, int64_t qty, int64_t limit)
{
	if (qty <= 0)
		return SHMEX_EBADAMOUNT;
	struct eng_acct_hold h;
	int rc = eng_acct_hold_for(side, qty, limit, &h);
	if (rc)
		return rc;
	return hold(c, account, sidx, &h);
}

int eng_acct_unhold(const struct eng_acct_ctx *c, uint64_t account, uint32_t sidx,
		    uint8_t side, int64_t open, int64_t limit)
{
	struct eng_acct_hold h;
	int rc = eng_acct_hold_for(side, open, limit, &h);
	if (rc)
		return rc;
	return unhold(c, account, sidx, &h, false);
}

int eng_acct_unplace(const struct eng_acct_ctx *c, uint64_t account, uint32_t sidx,
		     uint8_t side, int64_t qty, int64_t limit)
{
	struct eng_acct_hold h;
	int rc = eng_acct_hold_for(side, qty, limit, &h);
	if (rc)
		return rc;
	return unhold(c, account, sidx, &h, true);
}

int eng_acct_modify(const struct eng_acct_ctx *c, uint64_t account, uint32_t sidx,
		    uint8_t side, int64_t old_open, int64_t old_limit, int64_t new_open,
		    int64_t new_limit, bool now)
{
	struct eng_acct_hold d;
	int rc =
		eng_acct_modify_delta(side, old_open, old_limit, new_open, new_limit, &d);
	if (rc)
		return rc;
	struct eng_acct_hold more = {
		.cash = d.cash > 0 ? d.cash : 0,
		.shares = d.shares > 0 ? d.shares : 0,
	};
	struct eng_acct_hold less = {
		.cash = d.cash < 0 ? -d.cash : 0,
		.shares = d.shares < 0 ? -d.shares : 0,
	};
	if (more.cash > 0 || more.shares > 0)
		return hold(c, account, sidx, &more);
	return unhold(c, account, sidx, &less, now);
}

int eng_acct_settle(const struct eng_acct_ctx *c, uint32_t sidx,
		    const struct eng_acct_fill *f)
{
	struct eng_acct_settlement s;
	int rc = eng_acct_settle_for(f, &s);
	if (rc)
		return rc;

	/* Look everything up and check it before the first change. */
	struct eng_cash_acct buyer, seller;
	uint32_t bpos, spos;
	rc = eng_cash_find(c->cash, s.buyer, &buyer);
	if (rc)
		return rc;
	rc = eng_cash_find(c->cash, s.seller, &seller);
	if (rc)
		return rc;
	rc = shm_positions_find(c->positions, s.seller, sidx, &spos);
	if (rc)
		return SHMEX_EINTERNAL; /* a resting sell always has one */
	/* Normally made by eng_acct_place; made here if missing. */
	rc = shm_positions_ensure(c->positions, s.buyer, sidx, &bpos);
	if (rc)
		return rc;
	/* Positions have one writer, this matcher: what we read now is what
	 * the changes below will find. */
	struct shm_position_view sv, bv;
	if (shm_positions_read_slot(c->positions, spos, &sv) != 0 ||
	    shm_positions_read_slot(c->positions, bpos, &bv) != 0 ||
	    sv.reserved < s.shares)
		return SHMEX_EINTERNAL;
	/* No overflow check for the buyer: its amount is at most the
	 * symbol's created total (<= SHM_SHARES_MAX, 10^30) and s.shares an
	 * int64, so the 128-bit credit below always fits. */

	/* Both cash moves are credits (the buyer's reserved cash leaves,
	 * its refund and the seller's proceeds arrive): queued until the
	 * fill's record is durable.  The shares move now (the positions are
	 * this shard's alone). */
	eng_cash_settle_buy(c->cash, &buyer, s.buyer_release, s.buyer_refund);
	eng_cash_credit(c->cash, &seller, s.seller_credit);
	if (shm_positions_settle_sell(c->positions, spos, s.shares) != 0 ||
	    shm_positions_credit(c->positions, bpos, s.shares) != 0)
		return SHMEX_EINTERNAL;
	return 0;
}
