/*
 * eng_acct: the account-side rules a matcher applies around the matching
 * core: what an order reserves, how a fill settles both parties, what a
 * cancel, kill or modify gives back.
 *
 * Two layers.  The rules (eng_acct_hold_for, eng_acct_settle_for,
 * eng_acct_modify_delta) are pure: numbers in, numbers out, no shared
 * memory, no clock, exact fixed point (shm_dec_cash, 128-bit intermediates),
 * every overflow reported.  The apply functions (eng_acct_place, _settle,
 * _unhold, _modify, _create_account, _add_shares) carry those numbers out on
 * the cash accounts through eng_cash (debits at once, credits once their
 * journal record is durable, everything in the shard's ledger) and on the
 * shard's positions (shm_positions.h).  Nothing here knows the core's internal API: a fill is
 * described by struct eng_acct_fill, which the matcher fills from the core's
 * fill event.
 *
 * The matcher's sequence for an order (see docs/accounts.md):
 *   eng_acct_place         before matching; a failure rejects the order;
 *   eng_acct_settle        for every fill the core reports;
 *   eng_acct_unhold        for the open part the core cancels, kills
 *                          (IOC remainder, FOK) or rejects (book full);
 *   eng_acct_modify        when a resting order's open size or limit changes.
 * Because q x limit is exact, the holds released by fills and by the final
 * unhold add up to exactly what eng_acct_place reserved.
 *
 * Concurrency: the apply functions run in the shard's matcher (the single
 * writer of its positions); the cash side may run in every matcher at once
 * (shm_accounts is lock-free multi-writer).
 */
#ifndef SHMEX_ENG_ACCT_H
#define SHMEX_ENG_ACCT_H

#include <stdint.h>

#include "engine/eng_cash.h"
#include "shm/shm_positions.h"

/* What an order holds while open: cash (CASH scale) for a buy, shares (QTY
 * scale) for a sell; the other is 0.  In a modify delta, either may be
 * negative (something is given back). */
struct eng_acct_hold {
	int64_t cash;
	int64_t shares;
};

/* The facts of one fill that settlement needs. */
struct eng_acct_fill {
	uint64_t maker_account; /* the resting order's account */
	uint64_t taker_account; /* the incoming order's account */
	int64_t maker_limit;    /* PRICE: the resting order's limit */
	int64_t taker_limit;    /* PRICE: the incoming order's limit */
	int64_t price;          /* PRICE: execution price (the maker's) */
	int64_t qty;            /* QTY, > 0 */
	uint8_t taker_side;     /* enum shm_side; the maker is the other side */
};

/* What a fill moves.  Always buyer_release == buyer_refund + seller_credit:
 * the cash that leaves the buyer's reservation is exactly the refund plus
 * what the seller receives. */
struct eng_acct_settlement {
	uint64_t buyer;
	uint64_t seller;
	int64_t buyer_limit;   /* PRICE */
	int64_t buyer_release; /* CASH: qty x buyer_limit leaves `reserved` */
	int64_t buyer_refund;  /* CASH: qty x (buyer_limit - price) back */
	int64_t seller_credit; /* CASH: qty x price to the seller's balance */
	int64_t shares;        /* QTY: seller's reserved -> buyer's amount */
};

/* ---- Pure rules. */

/* Hold of `qty` (>= 0) open shares at `limit` (> 0): a buy holds
 * qty x limit cash, a sell holds qty shares.  SHMEX_EBADMSG (side),
 * SHMEX_EBADAMOUNT (qty < 0), SHMEX_EBADPRICE, SHMEX_EOVERFLOW. */
int eng_acct_hold_for(uint8_t side, int64_t qty, int64_t limit, struct eng_acct_hold *h)
	__attribute__((warn_unused_result));

/* Settlement of a fill.  SHMEX_EBADMSG (side), SHMEX_EBADAMOUNT (qty <= 0),
 * SHMEX_EBADPRICE (price <= 0, above the buyer's limit or below the
 * seller's), SHMEX_EOVERFLOW. */
int eng_acct_settle_for(const struct eng_acct_fill *f, struct eng_acct_settlement *s)
	__attribute__((warn_unused_result));

/* Change of hold when an order's open part goes from old_open at old_limit
 * to new_open at new_limit (new_open >= 0): new hold - old hold.  A
 * positive delta must be reserved, a negative one is given back. */
int eng_acct_modify_delta(uint8_t side, int64_t old_open, int64_t old_limit,
			  int64_t new_open, int64_t new_limit,
			  struct eng_acct_hold *delta)
	__attribute__((warn_unused_result));

/* ---- Applying them to shared memory. */

struct eng_acct_ctx {
	struct eng_cash *cash;           /* the shard's side of the cash */
	struct shm_positions *positions; /* this shard's positions (RDWR) */
};

/* CREATE_ACCOUNT (run by the account's home shard). */
int eng_acct_create_account(const struct eng_acct_ctx *c, uint64_t id, shm_cash_t balance)
	__attribute__((warn_unused_result));

/* ADD_SHARES: the account must exist (SHMEX_ENOACCOUNT); creates the
 * symbol's positions entry if new.  *sidx (may be NULL) gets the symbol's
 * positions index.  Nothing changes on error. */
int eng_acct_add_shares(const struct eng_acct_ctx *c, uint64_t account,
			const char sym[16], int64_t qty, uint32_t *sidx)
	__attribute__((warn_unused_result));

/* Placement of an order of `qty` (> 0) at `limit` on symbol `sidx`
 * (shm_positions_symbol_find): a buy reserves qty x limit cash and makes
 * sure the buyer's position exists (so its later credit cannot fail); a
 * sell reserves qty shares.  SHMEX_ENOACCOUNT, SHMEX_ENOFUNDS,
 * SHMEX_ENOSHARES (also when there is no position), SHMEX_EPOSITIONSFULL,
 * SHMEX_EBADAMOUNT, SHMEX_EBADPRICE, SHMEX_EOVERFLOW.  Nothing is held on
 * error. */
int eng_acct_place(const struct eng_acct_ctx *c, uint64_t account, uint32_t sidx,
		   uint8_t side, int64_t qty, int64_t limit)
	__attribute__((warn_unused_result));

/* Gives back what `open` (>= 0) shares of an order at `limit` hold:
 * cancel, IOC remainder, FOK kill (a credit: applied once durable). */
int eng_acct_unhold(const struct eng_acct_ctx *c, uint64_t account, uint32_t sidx,
		    uint8_t side, int64_t open, int64_t limit)
	__attribute__((warn_unused_result));

/* Undoes the placement of a request that is then rejected (it is never
 * journaled): at once. */
int eng_acct_unplace(const struct eng_acct_ctx *c, uint64_t account, uint32_t sidx,
		     uint8_t side, int64_t qty, int64_t limit)
	__attribute__((warn_unused_result));

/* Settles one fill on symbol sidx: buyer reserved -= qty x buyer_limit,
 * buyer balance += qty x (buyer_limit - price), buyer position += qty,
 * seller reserved shares -= qty, seller balance += qty x price.  Every
 * check is made before the first change; after it, only a corrupted
 * region can make a step fail (SHMEX_EINTERNAL, partly applied). */
int eng_acct_settle(const struct eng_acct_ctx *c, uint32_t sidx,
		    const struct eng_acct_fill *f) __attribute__((warn_unused_result));

/* Modify of an open order: reserves the extra hold (SHMEX_ENOFUNDS /
 * SHMEX_ENOSHARES, nothing changed) or gives back the difference.  With
 * `now` a smaller hold is given back at once (undoing the growth of a
 * modify the core then rejected). */
int eng_acct_modify(const struct eng_acct_ctx *c, uint64_t account, uint32_t sidx,
		    uint8_t side, int64_t old_open, int64_t old_limit, int64_t new_open,
		    int64_t new_limit, bool now) __attribute__((warn_unused_result));

#endif
