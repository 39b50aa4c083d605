/*
 * A reader process of shmex-stress: every read-side call of the shared
 * memory, in a loop, while the exchange trades and the chaos schedule
 * kills and stops matchers (often in the middle of a write) and this
 * process itself (often inside a read-side section).  Each answer is
 * checked for what must hold in *any* state, not only a quiescent one:
 *
 *  - a full-book snapshot passes shm_snap_book_check (levels ordered and
 *    non-empty, the book not crossed, each level's quantity the sum of its
 *    orders, open + executed + cancelled == amount for each order);
 *  - the top of book agrees with itself (bid below ask) and with depth;
 *  - an order read by id adds up and its fills add up to its executed;
 *  - no balance, reservation or position is negative.
 *
 * SHMEX_EBUSY (a writer stopped inside its window) is counted, not a
 * violation.  The handles are reopened every REOPEN_NS, so a whole-exchange
 * restart (new regions) is followed; a stale mapping of a removed region
 * still only ever shows states that existed.
 */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "shm/shm_accounts.h"
#include "shm/shm_atomic.h"
#include "shm/shm_error.h"
#include "shm/shm_positions.h"
#include "shm/shm_shard.h"
#include "shm/shm_snap.h"
#include "tests/shmex_test.h"
#include "tests/stress/stress.h"

#define REOPEN_NS 300000000ull
#define MAX_FILLS 512

static int R_slot;

static void bump_reads(void)
{
	__atomic_fetch_add(&st->r[R_slot].reads, 1, __ATOMIC_RELAXED);
}

static void busy(void)
{
	__atomic_fetch_add(&st->r[R_slot].busy, 1, __ATOMIC_RELAXED);
}

static void check_order(struct shm_snap *rd, uint64_t id, struct shm_snap_fill *fills)
{
	struct shm_snap_order o;
	size_t nf = 0;
	int rc = shm_snap_order(rd, id, &o, fills, MAX_FILLS, &nf);
	bump_reads();
	if (rc == SHMEX_EBUSY) {
		busy();
		return;
	}
	if (rc != 0)
		return; /* recycled since the book read, or not ours */
	if (o.open + o.executed + o.cancelled != o.amount || o.open < 0 || o.executed < 0)
		st_violation(
			"reader %d: order %llu: open %lld + executed %lld + cancelled "
			"%lld != amount %lld",
			R_slot, (unsigned long long)id, (long long)o.open,
			(long long)o.executed, (long long)o.cancelled,
			(long long)o.amount);
	if (o.nfills == nf) {
		int64_t sum = 0;
		for (size_t k = 0; k < nf; k++)
			sum += fills[k].qty;
		if (sum != o.executed)
			st_violation(
				"reader %d: order %llu: fills add up to %lld, executed %lld",
				R_slot, (unsigned long long)id, (long long)sum,
				(long long)o.executed);
	}
}

static void read_shard(struct shm_snap *rd, struct shm_snap_book *b, uint64_t *rng,
		       struct shm_snap_fill *fills)
{
	uint32_t n = shm_snap_nsymbols(rd);
	if (!n)
		return;
	uint32_t sym = (uint32_t)st_below(rng, n);
	int rc = shm_snap_book_read(rd, sym, 0, true, b);
	bump_reads();
	if (rc == SHMEX_EBUSY) {
		busy();
	} else if (rc == 0) {
		__atomic_fetch_add(&st->r[R_slot].books, 1, __ATOMIC_RELAXED);
		char why[256];
		if (shm_snap_book_check(b, &rd->view, why, sizeof(why)) != 0)
			st_violation("reader %d: shard %u symbol %s: %s", R_slot,
				     rd->shard, b->name, why);
		/* Some of its orders by id. */
		for (size_t k = 0; k < b->nord && k < 4; k++)
			check_order(rd, b->ords[st_below(rng, b->nord)].id, fills);
	} else if (rc != SHMEX_ENOSYMBOL) {
		st_violation("reader %d: shard %u symbol %u: book read: %s", R_slot,
			     rd->shard, sym, shmex_strerror(rc));
	}
	struct shm_snap_top t;
	rc = shm_snap_top(rd, sym, &t);
	bump_reads();
	if (rc == SHMEX_EBUSY)
		busy();
	else if (rc == 0 && t.has_bid && t.has_ask && t.bid_price >= t.ask_price)
		st_violation(
			"reader %d: shard %u symbol %u crossed: bid %lld >= ask %lld",
			R_slot, rd->shard, sym, (long long)t.bid_price,
			(long long)t.ask_price);
	struct shm_snap_level bids[16], asks[16];
	struct shm_snap_depth d = {.bids = bids, .asks = asks, .max = 16};
	rc = shm_snap_depth(rd, sym, &d);
	bump_reads();
	if (rc == SHMEX_EBUSY) {
		busy();
	} else if (rc == 0) {
		for (size_t k = 1; k < d.nbids; k++)
			if (bids[k].price >= bids[k - 1].price)
				st_violation("reader %d: bids out of order", R_slot);
		for (size_t k = 1; k < d.nasks; k++)
			if (asks[k].price <= asks[k - 1].price)
				st_violation("reader %d: asks out of order", R_slot);
		if (d.nbids && d.nasks && bids[0].price >= asks[0].price)
			st_violation("reader %d: depth crossed", R_slot);
	}
	struct shm_snap_shard_stats ss;
	shm_snap_stats(rd, &ss);
	bump_reads();
	/* An id near the newest ones (it may be recycled or unissued). */
	if (ss.orders_created) {
		uint64_t slot = st_below(rng, ss.orders_created < rd->view.cap_orders
						      ? ss.orders_created
						      : rd->view.cap_orders);
		check_order(rd,
			    shm_order_id_make(rd->shard, ST_NSHARDS, slot, 0,
					      rd->view.cap_orders),
			    fills);
	}
}

static void read_cash(struct shm_accounts *a, struct shm_positions *p, uint64_t *rng)
{
	uint64_t id = st_below(rng, 2) ? 1 + st_below(rng, ST_NACC)
				       : ST_NEW_ACC_LO + st_below(rng, ST_NEW_ACC_N);
	struct shm_account_view v;
	int rc = shm_accounts_read(a, id, &v);
	bump_reads();
	if (rc == 0 && (v.balance < 0 || v.reserved < 0 || v.deposited < 0))
		st_violation(
			"reader %d: account %llu: balance %lld reserved %lld deposited %lld",
			R_slot, (unsigned long long)id, (long long)v.balance,
			(long long)v.reserved, (long long)v.deposited);
	for (int k = 0; k < ST_NSHARDS; k++) {
		char name[16] = {0};
		const char *s = st->syms[st_below(rng, ST_NSYMS)];
		memcpy(name, s, strlen(s));
		struct shm_position_view pv;
		rc = shm_positions_read(&p[k], id, name, &pv);
		bump_reads();
		if (rc == 0 && (pv.amount < 0 || pv.reserved < 0))
			st_violation(
				"reader %d: position %llu %s: amount %lld reserved %lld",
				R_slot, (unsigned long long)id, s, (long long)pv.amount,
				(long long)pv.reserved);
	}
}

void st_reader_main(int slot, uint64_t seed)
{
	R_slot = slot;
	uint64_t rng = seed | 1;
	static struct shm_snap_fill fills[MAX_FILLS];
	struct shm_snap_book b;
	memset(&b, 0, sizeof(b));
	while (!load_acquire(&st->stop)) {
		struct shm_snap rd[ST_NSHARDS];
		struct shm_accounts a;
		struct shm_positions p[ST_NSHARDS];
		memset(rd, 0, sizeof(rd));
		memset(p, 0, sizeof(p));
		memset(&a, 0, sizeof(a));
		int ok = 1;
		for (int k = 0; k < ST_NSHARDS; k++) {
			if (shm_snap_open(&rd[k], st->instance, (unsigned)k) != 0)
				ok = 0;
			if (shm_positions_attach(&p[k], st->instance, (uint32_t)k,
						 SHM_RDONLY) != 0)
				ok = 0;
		}
		if (shm_accounts_attach(&a, st->instance, SHM_RDONLY) != 0)
			ok = 0;
		if (ok) {
			unsigned long long until = test_now_ns() + REOPEN_NS;
			while (!load_acquire(&st->stop) && test_now_ns() < until) {
				for (int k = 0; k < ST_NSHARDS; k++)
					read_shard(&rd[k], &b, &rng, fills);
				read_cash(&a, p, &rng);
			}
		} else {
			usleep(20000); /* a restart is recreating the regions */
		}
		for (int k = 0; k < ST_NSHARDS; k++) {
			shm_snap_close(&rd[k]);
			if (p[k].sh)
				shm_positions_detach(&p[k]);
		}
		if (a.sh)
			shm_accounts_detach(&a);
	}
	shm_snap_book_free(&b);
	_exit(0);
}
