/*
 * shm_snap_suite: the read-side API over a book built by the matching core
 * (engine/eng_core) in a real book region, with a real reader table.
 *
 * The concurrent case runs the core in this process as the writer (epochs
 * advanced and nodes reclaimed as the matcher does) while reader processes
 * check every snapshot.  All orders there have the same quantity, so every
 * consistent state of a level has qty == QTY * count: a snapshot mixing two
 * states of a level would show it.
 */
#include "tests/shmex_test.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "engine/eng_core.h"
#include "shm/shm_book.h"
#include "shm/shm_error.h"
#include "shm/shm_msg.h"
#include "shm/shm_snap.h"
#include "shm/shm_rcu.h"
#include "shm/shm_region.h"

static char inst[64];

/* The writer side of one shard: book region + core + reader table. */
struct fx {
	struct shm_region reg;
	struct eng_core *b;
	struct shm_rcu w;
	uint32_t sym, sym2;
	uint64_t seq;
};

static struct fx fx;

static void setup(void)
{
	test_instance(inst, sizeof(inst));
	memset(&fx, 0, sizeof(fx));
}

static void teardown(void)
{
	test_cleanup_instance(inst);
}

static void book_make(uint32_t levels, uint32_t orders, uint32_t fills)
{
	struct eng_core_cfg cfg = {
		.caps = {8, levels, orders, fills}, .shard = 0, .nshards = 2};
	ck_assert_uint_gt(eng_core_bytes(&cfg), 0);
	ck_assert_int_eq(shm_book_region_create(&fx.reg, inst, &cfg.caps, 0, 2, 0), 0);
	ck_assert_int_eq(eng_core_init(&fx.b, shm_region_body(&fx.reg),
				       shm_region_body_size(&fx.reg), &cfg, NULL, NULL),
			 0);
	ck_assert_int_eq(eng_core_symbol_add(fx.b, "ABC", 3, &fx.sym), 0);
	ck_assert_int_eq(eng_core_symbol_add(fx.b, "XYZ", 3, &fx.sym2), 0);
	shm_region_publish(&fx.reg);
	ck_assert_int_eq(shm_rcu_create(&fx.w, inst, 0, 32, 0600), 0);
}

static void book_free(void)
{
	eng_core_destroy(fx.b);
	shm_rcu_detach(&fx.w);
	shm_region_detach(&fx.reg);
}

static struct eng_req req(uint64_t account)
{
	struct eng_req r;
	memset(&r, 0, sizeof(r));
	r.seq = ++fx.seq;
	r.time_ns = fx.seq * 1000000000ull;
	r.epoch = shm_rcu_epoch(&fx.w);
	r.account = account;
	r.sym = fx.sym;
	return r;
}

static uint64_t place(uint64_t account, unsigned side, int64_t price, int64_t qty)
{
	struct eng_req r = req(account);
	r.side = (uint8_t)side;
	r.tif = SHM_TIF_GTC;
	r.price = price;
	r.qty = qty;
	uint64_t id = 0;
	ck_assert_int_eq(eng_core_submit(fx.b, &r, &id), 0);
	return id;
}

/* What the matcher does after a batch: advance, poll, reclaim. */
static void grace(void)
{
	(void)shm_rcu_advance(&fx.w);
	eng_core_reclaim(fx.b, shm_rcu_safe_epoch(&fx.w));
}

static void open_reader(struct shm_snap *rd)
{
	int rc = shm_snap_open(rd, inst, 0);
	ck_assert_msg(rc == 0, "open: %s: %s", shmex_strerror(rc), rd->err.msg);
}

START_TEST(top_and_depth)
{
	struct shm_snap rd;
	book_make(64, 64, 256);
	(void)place(1, SHM_SIDE_BUY, 100, 10);
	(void)place(2, SHM_SIDE_BUY, 100, 5);
	(void)place(1, SHM_SIDE_BUY, 99, 7);
	(void)place(1, SHM_SIDE_BUY, 98, 1);
	(void)place(3, SHM_SIDE_SELL, 101, 3);
	(void)place(3, SHM_SIDE_SELL, 103, 4);
	open_reader(&rd);

	struct shm_snap_top t;
	ck_assert_int_eq(shm_snap_top(&rd, fx.sym, &t), 0);
	ck_assert(t.has_bid && t.has_ask);
	ck_assert_int_eq(t.bid_price, 100);
	ck_assert_int_eq(t.bid_qty, 15);
	ck_assert_uint_eq(t.bid_orders, 2);
	ck_assert_int_eq(t.ask_price, 101);
	ck_assert_int_eq(t.ask_qty, 3);
	ck_assert_uint_eq(t.nlevels[SHM_SIDE_BUY], 3);
	ck_assert_uint_eq(t.nlevels[SHM_SIDE_SELL], 2);
	ck_assert_uint_eq(t.norders[SHM_SIDE_BUY], 4);
	ck_assert_int_eq(t.open_qty[SHM_SIDE_BUY], 23);
	ck_assert_uint_eq(t.trades, 0);

	struct shm_snap_level bids[2], asks[2];
	struct shm_snap_depth d = {.bids = bids, .asks = asks, .max = 2};
	ck_assert_int_eq(shm_snap_depth(&rd, fx.sym, &d), 0);
	ck_assert_uint_eq(d.nbids, 2);
	ck_assert(d.more_bids);
	ck_assert_int_eq(bids[0].price, 100);
	ck_assert_int_eq(bids[0].qty, 15);
	ck_assert_uint_eq(bids[0].count, 2);
	ck_assert_int_eq(bids[1].price, 99);
	ck_assert_uint_eq(d.nasks, 2);
	ck_assert(!d.more_asks);
	ck_assert_int_eq(asks[0].price, 101);
	ck_assert_int_eq(asks[1].price, 103);
	ck_assert_int_eq(asks[1].qty, 4);

	/* The same as the writer's own view. */
	struct shm_snap_level all_b[8], all_a[8];
	struct shm_snap_depth full = {.bids = all_b, .asks = all_a, .max = 8};
	ck_assert_int_eq(shm_snap_depth(&rd, fx.sym, &full), 0);
	struct eng_core_level_info w[8];
	size_t n = eng_core_depth(fx.b, fx.sym, SHM_SIDE_BUY, w, 8);
	ck_assert_uint_eq(n, full.nbids);
	for (size_t i = 0; i < n; i++) {
		ck_assert_int_eq(w[i].price, all_b[i].price);
		ck_assert_int_eq(w[i].qty, all_b[i].qty);
		ck_assert_uint_eq(w[i].count, all_b[i].count);
	}

	/* An empty symbol; a trade moves the top. */
	ck_assert_int_eq(shm_snap_top(&rd, fx.sym2, &t), 0);
	ck_assert(!t.has_bid && !t.has_ask);
	d.max = 0;
	ck_assert_int_eq(shm_snap_depth(&rd, fx.sym2, &d), 0);
	ck_assert_uint_eq(d.nbids + d.nasks, 0);
	(void)place(4, SHM_SIDE_SELL, 100, 12);
	ck_assert_int_eq(shm_snap_top(&rd, fx.sym, &t), 0);
	ck_assert_int_eq(t.bid_price, 100);
	ck_assert_int_eq(t.bid_qty, 3);
	ck_assert_uint_eq(t.bid_orders, 1);
	ck_assert_uint_eq(t.trades, 2);
	ck_assert_int_eq(t.volume, 12);
	ck_assert_int_eq(t.last_price, 100);
	ck_assert_int_eq(t.last_qty, 2);
	shm_snap_close(&rd);
	book_free();
}
END_TEST

START_TEST(order_status_and_fills)
{
	struct shm_snap rd;
	struct shm_snap_order o;
	struct shm_snap_fill f[4];
	size_t nf;
	book_make(64, 64, 256);
	uint64_t buy = place(1, SHM_SIDE_BUY, 100, 10);
	uint64_t sell = place(2, SHM_SIDE_SELL, 99, 4);
	open_reader(&rd);

	ck_assert_int_eq(shm_snap_order(&rd, buy, &o, f, 4, &nf), 0);
	ck_assert_uint_eq(o.id, buy);
	ck_assert_uint_eq(o.account, 1);
	ck_assert_uint_eq(o.state, SHM_BOOK_ORDER_LIVE);
	ck_assert_uint_eq(o.side, SHM_SIDE_BUY);
	ck_assert_int_eq(o.amount, 10);
	ck_assert_int_eq(o.open, 6);
	ck_assert_int_eq(o.executed, 4);
	ck_assert_int_eq(o.cancelled, 0);
	ck_assert_uint_eq(o.nfills, 1);
	ck_assert_uint_eq(nf, 1);
	ck_assert_int_eq(f[0].qty, 4);
	ck_assert_int_eq(f[0].price, 100); /* the resting order's price */
	ck_assert(f[0].maker);
	ck_assert_uint_eq(f[0].counterparty, sell);

	ck_assert_int_eq(shm_snap_order(&rd, sell, &o, f, 4, &nf), 0);
	ck_assert_uint_eq(o.state, SHM_BOOK_ORDER_DONE);
	ck_assert_uint_eq(o.done_reason, SHM_BOOK_DONE_FILLED);
	ck_assert_int_eq(o.open, 0);
	ck_assert_int_eq(o.executed, 4);
	ck_assert_uint_eq(nf, 1);
	ck_assert_int_eq(f[0].price, 100);
	ck_assert(!f[0].maker);

	struct eng_req c = req(1);
	c.order_id = buy;
	ck_assert_int_eq(eng_core_cancel(fx.b, &c), 0);
	ck_assert_int_eq(shm_snap_order(&rd, buy, &o, NULL, 0, &nf), 0);
	ck_assert_uint_eq(nf, 0);
	ck_assert_uint_eq(o.nfills, 1);
	ck_assert_uint_eq(o.state, SHM_BOOK_ORDER_DONE);
	ck_assert_uint_eq(o.done_reason, SHM_BOOK_DONE_CANCEL);
	ck_assert_int_eq(o.open, 0);
	ck_assert_int_eq(o.cancelled, 6);
	ck_assert_int_eq(o.executed, 4);
	ck_assert_uint_eq(o.cancel_time_ns, c.time_ns);
	ck_assert_int_eq(o.open + o.executed + o.cancelled, o.amount);

	/* Ids that are not orders of this shard. */
	ck_assert_int_eq(shm_snap_order(&rd, 0, &o, NULL, 0, &nf), SHMEX_ENOORDER);
	ck_assert_int_eq(shm_snap_order(&rd, buy + 1, &o, NULL, 0, &nf),
			 SHMEX_EWRONGSHARD);
	ck_assert_int_eq(shm_snap_order(&rd, sell + 2 * 10, &o, NULL, 0, &nf),
			 SHMEX_ENOORDER);
	ck_assert_int_eq(shm_snap_order(&rd, buy, &o, NULL, 1, &nf), -EINVAL);
	shm_snap_close(&rd);
	book_free();
}
END_TEST

START_TEST(recycled_order_is_gone)
{
	struct shm_snap rd;
	struct shm_snap_order o;
	size_t nf;
	book_make(16, 4, 64);
	open_reader(&rd);
	uint64_t first = place(1, SHM_SIDE_BUY, 100, 1);
	struct eng_req c = req(1);
	c.order_id = first;
	ck_assert_int_eq(eng_core_cancel(fx.b, &c), 0);
	ck_assert_int_eq(shm_snap_order(&rd, first, &o, NULL, 0, &nf), 0);
	/* Fill the other three slots, pass a grace period, then one more
	 * order takes the oldest done record. */
	for (int i = 0; i < 3; i++)
		(void)place(1, SHM_SIDE_BUY, 90 + i, 1);
	grace();
	uint64_t next = place(1, SHM_SIDE_BUY, 95, 1);
	ck_assert_uint_eq(shm_order_slot(next, 2, 4), shm_order_slot(first, 2, 4));
	ck_assert_int_eq(shm_snap_order(&rd, first, &o, NULL, 0, &nf), SHMEX_ENOORDER);
	ck_assert_int_eq(shm_snap_order(&rd, next, &o, NULL, 0, &nf), 0);
	ck_assert_int_eq(o.price, 95);
	shm_snap_close(&rd);
	book_free();
}
END_TEST

START_TEST(symbols_and_stats)
{
	struct shm_snap rd;
	uint32_t idx;
	char name[16];
	book_make(64, 64, 256);
	(void)place(1, SHM_SIDE_BUY, 100, 10);
	(void)place(2, SHM_SIDE_SELL, 100, 10);
	open_reader(&rd);
	ck_assert_uint_eq(shm_snap_nsymbols(&rd), 2);
	ck_assert_int_eq(shm_snap_symbol_find(&rd, "XYZ", 3, &idx), 0);
	ck_assert_uint_eq(idx, fx.sym2);
	ck_assert_int_eq(shm_snap_symbol_find(&rd, "QQQ", 3, &idx), SHMEX_ENOSYMBOL);
	ck_assert_int_eq(shm_snap_symbol_find(&rd, "A B", 3, &idx), SHMEX_EBADSYMBOL);
	ck_assert_int_eq(shm_snap_symbol_name(&rd, fx.sym, name), 0);
	ck_assert_str_eq(name, "ABC");
	ck_assert_int_eq(shm_snap_symbol_name(&rd, 2, name), SHMEX_ENOSYMBOL);
	struct shm_snap_top t;
	ck_assert_int_eq(shm_snap_top(&rd, 2, &t), SHMEX_ENOSYMBOL);
	ck_assert_int_eq(shm_snap_top(&rd, UINT32_MAX, &t), SHMEX_ENOSYMBOL);

	struct shm_snap_shard_stats st;
	shm_snap_stats(&rd, &st);
	ck_assert_uint_eq(st.shard, 0);
	ck_assert_uint_eq(st.nshards, 2);
	ck_assert_uint_eq(st.cap_orders, 64);
	ck_assert_uint_eq(st.nsymbols, 2);
	ck_assert_uint_eq(st.orders_created, 2);
	ck_assert_uint_eq(st.orders_live, 0);
	ck_assert_uint_eq(st.readers.registered, 1);
	ck_assert_uint_eq(st.readers.nslots, 32);
	shm_snap_close(&rd);
	book_free();
}
END_TEST

START_TEST(evicted_reader_registers_again)
{
	struct shm_snap rd;
	struct shm_snap_top t;
	struct shm_snap_order o;
	struct shm_snap_fill f[4];
	size_t nf;
	book_make(64, 64, 256);
	uint64_t filled = place(1, SHM_SIDE_BUY, 100, 10);
	(void)place(2, SHM_SIDE_SELL, 100, 4);
	uint64_t bare = place(1, SHM_SIDE_BUY, 99, 5);
	open_reader(&rd);
	/* An operator evicts the reader's slot.  Reads of records that are
	 * never freed (the quote, an order record without fills) take no
	 * section, so they answer without a slot. */
	ck_assert_int_eq(shm_rcu_evict(&fx.w, rd.reader.index), 0);
	ck_assert_int_eq(shm_snap_top(&rd, fx.sym, &t), 0);
	ck_assert_int_eq(t.bid_price, 100);
	ck_assert_int_eq(t.bid_qty, 6);
	ck_assert_int_eq(shm_snap_order(&rd, bare, &o, f, 4, &nf), 0);
	ck_assert_int_eq(o.open, 5);
	ck_assert_uint_eq(nf, 0);
	ck_assert_uint_eq(rd.lost, 0);
	/* A read that walks fill records (pool nodes) enters a section:
	 * it notices at enter, takes a new slot and answers normally. */
	ck_assert_int_eq(shm_snap_order(&rd, filled, &o, f, 4, &nf), 0);
	ck_assert_int_eq(o.executed, 4);
	ck_assert_uint_eq(nf, 1);
	ck_assert_int_eq(f[0].qty, 4);
	ck_assert_uint_eq(rd.lost, 1);
	struct shm_rcu_stats st;
	shm_rcu_stats(&fx.w, &st);
	ck_assert_uint_eq(st.registered, 1);
	shm_snap_close(&rd);
	shm_rcu_stats(&fx.w, &st);
	ck_assert_uint_eq(st.registered, 0);
	book_free();
}
END_TEST

START_TEST(open_errors)
{
	struct shm_snap rd, a;
	ck_assert_int_eq(shm_snap_open(&rd, inst, 0), -ENOENT);
	ck_assert_ptr_nonnull(strstr(rd.err.msg, "book.0"));
	shm_snap_close(&rd);
	book_make(64, 64, 256);
	ck_assert_int_eq(shm_snap_open(&rd, inst, 1), -ENOENT);
	shm_snap_close(&rd);
	/* No reader table for shard 0. */
	shm_rcu_detach(&fx.w);
	ck_assert_int_eq(shm_rcu_unlink(inst, 0), 0);
	ck_assert_int_eq(shm_snap_open(&rd, inst, 0), -ENOENT);
	ck_assert_ptr_nonnull(strstr(rd.err.msg, "readers.0"));
	shm_snap_close(&rd);
	/* A full table. */
	ck_assert_int_eq(shm_rcu_create(&fx.w, inst, 0, 1, 0600), 0);
	open_reader(&a);
	ck_assert_int_eq(shm_snap_open(&rd, inst, 0), SHMEX_ENOREADERSLOT);
	shm_snap_close(&rd);
	shm_snap_close(&a);
	open_reader(&rd);
	shm_snap_close(&rd);
	book_free();
}
END_TEST

/* --- corruption ------------------------------------------------------------------ */

START_TEST(corrupted_region_gives_errors)
{
	struct shm_snap rd;
	struct shm_snap_top t;
	/* Deeper than the quote: depth reads walk the live lists. */
	enum { DEEP = SHM_BOOK_QUOTE_LEVELS + 2 };
	struct shm_snap_level b[DEEP], a[DEEP];
	struct shm_snap_depth d = {.bids = b, .asks = a, .max = DEEP};
	struct shm_snap_depth dq = {.bids = b, .asks = a, .max = 8}; /* quote */
	struct shm_snap_order o;
	struct shm_snap_fill f[8];
	size_t nf;
	book_make(64, 64, 256);
	uint64_t buy = place(1, SHM_SIDE_BUY, 100, 10);
	(void)place(1, SHM_SIDE_BUY, 99, 10);
	(void)place(1, SHM_SIDE_BUY, 98, 10);
	(void)place(2, SHM_SIDE_SELL, 100, 4);
	(void)place(2, SHM_SIDE_SELL, 105, 4);
	open_reader(&rd);
	rd.max_retries = 8;
	const struct shm_book_view *v = eng_core_view(fx.b);
	struct shm_book_sym_sh *s = &v->symbols[fx.sym];
	struct shm_book_quote_sh *q = &v->quotes[fx.sym];
	uint32_t h0 = s->head[SHM_SIDE_BUY];
	struct shm_book_level_sh *l0 = &v->levels[h0];
	uint32_t l0next = l0->next;

	/* The live lists.  A head beyond the pool. */
	s->head[SHM_SIDE_BUY] = 12345678;
	ck_assert_int_eq(shm_snap_depth(&rd, fx.sym, &d), SHMEX_EBADINDEX);
	s->head[SHM_SIDE_BUY] = h0;
	ck_assert_int_eq(shm_snap_depth(&rd, fx.sym, &d), 0);
	ck_assert_uint_eq(d.nbids, 3);
	/* A cycle in the level list; a level pointing past the pool. */
	l0->next = h0;
	ck_assert_int_eq(shm_snap_depth(&rd, fx.sym, &d), SHMEX_EBADINDEX);
	l0->next = UINT32_MAX - 1;
	ck_assert_int_eq(shm_snap_depth(&rd, fx.sym, &d), SHMEX_EBADINDEX);
	l0->next = l0next;
	/* Unsorted, freed, foreign, empty levels; a crossed book. */
	int64_t p = l0->price;
	l0->price = 97;
	ck_assert_int_eq(shm_snap_depth(&rd, fx.sym, &d), SHMEX_EBADINDEX);
	l0->price = 200;
	ck_assert_int_eq(shm_snap_depth(&rd, fx.sym, &d), SHMEX_EBADINDEX);
	l0->price = p;
	l0->state = SHM_BOOK_LEVEL_FREE;
	ck_assert_int_eq(shm_snap_depth(&rd, fx.sym, &d), SHMEX_EBADINDEX);
	l0->state = SHM_BOOK_LEVEL_LIVE;
	l0->sym = fx.sym2;
	ck_assert_int_eq(shm_snap_depth(&rd, fx.sym, &d), SHMEX_EBADINDEX);
	l0->sym = fx.sym;
	uint32_t c0 = l0->count;
	l0->count = 0;
	ck_assert_int_eq(shm_snap_depth(&rd, fx.sym, &d), SHMEX_EBADINDEX);
	l0->count = c0;
	ck_assert_int_eq(shm_snap_depth(&rd, fx.sym, &d), 0);
	/* None of that was the quote's business. */
	ck_assert_int_eq(shm_snap_top(&rd, fx.sym, &t), 0);
	ck_assert_int_eq(t.bid_price, 100);

	/* The quote: a depth that is not min(nlevels, 10), unsorted, empty
	 * or non-positive levels, a crossed book. */
	ck_assert_uint_eq(q->ndepth[SHM_SIDE_BUY], 3);
	q->ndepth[SHM_SIDE_BUY] = 2;
	ck_assert_int_eq(shm_snap_top(&rd, fx.sym, &t), SHMEX_EBADINDEX);
	ck_assert_int_eq(shm_snap_depth(&rd, fx.sym, &dq), SHMEX_EBADINDEX);
	q->ndepth[SHM_SIDE_BUY] = 3;
	ck_assert_int_eq(shm_snap_depth(&rd, fx.sym, &dq), 0);
	ck_assert_uint_eq(dq.nbids, 3);
	int64_t p1 = q->level[1][SHM_SIDE_BUY].price;
	q->level[1][SHM_SIDE_BUY].price = 120;
	ck_assert_int_eq(shm_snap_depth(&rd, fx.sym, &dq), SHMEX_EBADINDEX);
	q->level[1][SHM_SIDE_BUY].price = p1;
	q->level[0][SHM_SIDE_BUY].count = 0;
	ck_assert_int_eq(shm_snap_top(&rd, fx.sym, &t), SHMEX_EBADINDEX);
	q->level[0][SHM_SIDE_BUY].count = 1;
	q->level[0][SHM_SIDE_SELL].qty = -4;
	ck_assert_int_eq(shm_snap_top(&rd, fx.sym, &t), SHMEX_EBADINDEX);
	q->level[0][SHM_SIDE_SELL].qty = 4;
	int64_t pb = q->level[0][SHM_SIDE_BUY].price;
	q->level[0][SHM_SIDE_BUY].price = 200;
	ck_assert_int_eq(shm_snap_top(&rd, fx.sym, &t), SHMEX_EBADINDEX);
	q->level[0][SHM_SIDE_BUY].price = pb;
	ck_assert_int_eq(shm_snap_top(&rd, fx.sym, &t), 0);

	/* Order records. */
	uint32_t oi = (uint32_t)shm_order_slot(buy, 2, 64);
	struct shm_book_order_sh *ord = &v->orders[oi];
	ck_assert_int_eq(shm_snap_order(&rd, buy, &o, f, 8, &nf), 0);
	ck_assert_uint_eq(nf, 1);
	uint32_t fh = ord->fill_head;
	ord->fill_head = 99999;
	ck_assert_int_eq(shm_snap_order(&rd, buy, &o, f, 8, &nf), SHMEX_EBADINDEX);
	ord->fill_head = fh;
	v->fills[fh].next = fh; /* a cycle */
	ck_assert_int_eq(shm_snap_order(&rd, buy, &o, f, 8, &nf), SHMEX_EBADINDEX);
	v->fills[fh].next = SHM_BOOK_NIL;
	v->fills[fh].order_id = buy + 2; /* someone else's fill */
	ck_assert_int_eq(shm_snap_order(&rd, buy, &o, f, 8, &nf), SHMEX_EBADINDEX);
	v->fills[fh].order_id = buy;
	ord->amount++;
	ck_assert_int_eq(shm_snap_order(&rd, buy, &o, f, 8, &nf), SHMEX_EBADINDEX);
	ord->amount--;
	ord->executed = INT64_MAX;
	ck_assert_int_eq(shm_snap_order(&rd, buy, &o, f, 8, &nf), SHMEX_EBADINDEX);
	ord->executed = 4;
	ord->side = 7;
	ck_assert_int_eq(shm_snap_order(&rd, buy, &o, f, 8, &nf), SHMEX_EBADINDEX);
	ord->side = SHM_SIDE_BUY;
	ord->sym = 5000;
	ck_assert_int_eq(shm_snap_order(&rd, buy, &o, f, 8, &nf), SHMEX_EBADINDEX);
	ord->sym = fx.sym;
	ck_assert_int_eq(shm_snap_order(&rd, buy, &o, f, 8, &nf), 0);
	ck_assert_int_eq(o.open + o.executed + o.cancelled, o.amount);

	/* A seqcount stuck odd (writer died inside its window): busy, for
	 * the readers of that seqcount only. */
	s->seq |= 1;
	ck_assert_int_eq(shm_snap_depth(&rd, fx.sym, &d), SHMEX_EBUSY);
	ck_assert_int_eq(shm_snap_top(&rd, fx.sym, &t), 0);
	ck_assert_int_eq(shm_snap_order(&rd, buy, &o, f, 8, &nf), 0);
	s->seq++;
	ck_assert_int_eq(shm_snap_depth(&rd, fx.sym, &d), 0);
	q->seq |= 1;
	ck_assert_int_eq(shm_snap_top(&rd, fx.sym, &t), SHMEX_EBUSY);
	ck_assert_int_eq(shm_snap_depth(&rd, fx.sym, &dq), SHMEX_EBUSY);
	q->seq++;
	ck_assert_int_eq(shm_snap_top(&rd, fx.sym, &t), 0);
	ord->seq |= 1;
	ck_assert_int_eq(shm_snap_order(&rd, buy, &o, f, 8, &nf), SHMEX_EBUSY);
	ord->seq++;
	ck_assert_int_eq(shm_snap_order(&rd, buy, &o, f, 8, &nf), 0);
	ck_assert_uint_gt(rd.busy, 0);

	/* Symbol table: a count beyond the capacity, a garbage name. */
	v->hdr->nsymbols = 1000000;
	ck_assert_uint_eq(shm_snap_nsymbols(&rd), 8);
	char name[16];
	ck_assert_int_eq(shm_snap_symbol_name(&rd, 7, name), SHMEX_EBADINDEX);
	memset(v->symbols[7].name, 0xff, 16);
	ck_assert_int_eq(shm_snap_symbol_name(&rd, 7, name), SHMEX_EBADINDEX);
	/* A never-published entry: a zero quote is an empty book; zeroed
	 * heads name level 0, which is not one of its levels. */
	ck_assert_int_eq(shm_snap_top(&rd, 7, &t), 0);
	ck_assert(!t.has_bid && !t.has_ask);
	ck_assert_int_eq(shm_snap_depth(&rd, 7, &d), SHMEX_EBADINDEX);
	v->symbols[7].head[0] = SHM_BOOK_NIL;
	v->symbols[7].head[1] = SHM_BOOK_NIL;
	ck_assert_int_eq(shm_snap_depth(&rd, 7, &d), 0);
	ck_assert_uint_eq(d.nbids + d.nasks, 0);
	v->symbols[7].head[0] = 3;
	ck_assert_int_eq(shm_snap_depth(&rd, 7, &d), SHMEX_EBADINDEX);
	shm_snap_close(&rd);

	/* A corrupted geometry refuses to open. */
	v->hdr->cap_levels = 1u << 29;
	ck_assert_int_eq(shm_snap_open(&rd, inst, 0), SHMEX_EBADLAYOUT);
	v->hdr->cap_levels = 64;
	v->hdr->off_orders += 64;
	ck_assert_int_eq(shm_snap_open(&rd, inst, 0), SHMEX_EBADLAYOUT);
	book_free();
}
END_TEST

/* --- concurrency -------------------------------------------------------------------- */

#define QTY 10
#define PRICE_MID 1000

static int reader_proc(unsigned long long until)
{
	struct shm_snap rd;
	if (shm_snap_open(&rd, inst, 0) != 0)
		return 10;
	struct shm_snap_level b[64], a[64];
	struct shm_snap_depth d = {.bids = b, .asks = a, .max = 64};
	struct shm_snap_top t;
	struct shm_snap_order o;
	struct shm_snap_fill f[16];
	size_t nf;
	unsigned long ok = 0, busy = 0, orders = 0;
	uint32_t sym = 0;
	if (shm_snap_symbol_find(&rd, "ABC", 3, &sym) != 0)
		return 11;
	uint64_t x = 12345;
	while (test_now_ns() < until) {
		int rc = shm_snap_depth(&rd, sym, &d);
		if (rc == SHMEX_EBUSY) {
			busy++;
			continue;
		}
		if (rc)
			return 12;
		for (size_t i = 0; i < d.nbids; i++)
			if (b[i].qty != QTY * (int64_t)b[i].count)
				return 13;
		for (size_t i = 0; i < d.nasks; i++)
			if (a[i].qty != QTY * (int64_t)a[i].count)
				return 13;
		rc = shm_snap_top(&rd, sym, &t);
		if (rc == 0 && ((t.has_bid && t.bid_qty != QTY * (int64_t)t.bid_orders) ||
				(t.has_ask && t.ask_qty != QTY * (int64_t)t.ask_orders)))
			return 14;
		if (rc && rc != SHMEX_EBUSY)
			return 15;
		/* Some order id this shard may have issued (odd ids). */
		x = x * 6364136223846793005ull + 1442695040888963407ull;
		uint64_t id = 2 * ((x >> 33) % 4096) + 1;
		rc = shm_snap_order(&rd, id, &o, f, 16, &nf);
		if (rc == 0) {
			orders++;
			if (o.amount != QTY || o.open + o.executed + o.cancelled != QTY)
				return 16;
			int64_t sum = 0;
			for (size_t i = 0; i < nf; i++)
				sum += f[i].qty;
			if (nf == o.nfills && sum != o.executed)
				return 17;
		} else if (rc != SHMEX_ENOORDER && rc != SHMEX_EBUSY) {
			return 18;
		}
		ok++;
	}
	fprintf(stderr,
		"reader %d: %lu snapshots, %lu orders read, %lu busy, "
		"%llu retries, %llu lost\n",
		(int)getpid(), ok, orders, busy, (unsigned long long)rd.retries,
		(unsigned long long)rd.lost);
	shm_snap_close(&rd);
	return ok > 100 ? 0 : 19;
}

START_TEST(concurrent_writer_and_reader_processes)
{
	enum { NREADERS = 2 };
	book_make(128, 1024, 4096);
	shm_rcu_set_reap_interval(&fx.w, 0);
	unsigned long long until = test_now_ns() + 1500000000ull;
	pid_t pid[NREADERS];
	for (int i = 0; i < NREADERS; i++) {
		pid[i] = fork();
		ck_assert_int_ge(pid[i], 0);
		if (pid[i] == 0)
			_exit(reader_proc(until));
	}
	uint64_t live[512], owner[512];
	size_t nlive = 0;
	uint64_t x = 99, n = 0, full = 0;
	while (test_now_ns() < until + 200000000ull) {
		x = x * 6364136223846793005ull + 1442695040888963407ull;
		unsigned r = (unsigned)(x >> 33);
		/* Keep about 200 orders in play so the book never fills. */
		if (nlive > 0 && ((r >> 20) % 4 == 0 || nlive > 200)) {
			size_t k = (r >> 2) % nlive;
			struct eng_req c = req(owner[k]);
			c.order_id = live[k];
			/* Open or already filled: both are fine. */
			(void)!eng_core_cancel(fx.b, &c);
			live[k] = live[--nlive];
			owner[k] = owner[nlive];
		} else {
			struct eng_req q = req(1 + (r >> 8) % 3);
			q.side = (uint8_t)(r & 1);
			q.tif = SHM_TIF_GTC;
			q.price = PRICE_MID + (int64_t)((r >> 4) % 21) - 10;
			q.qty = QTY;
			uint64_t id;
			int rc = eng_core_submit(fx.b, &q, &id);
			if (rc == 0 && nlive < 512) {
				owner[nlive] = q.account;
				live[nlive++] = id;
			} else if (rc == SHMEX_EBOOKFULL) {
				full++;
			}
		}
		if (++n % 8 == 0)
			grace();
	}
	for (int i = 0; i < NREADERS; i++) {
		int st = test_wait_pid(pid[i], 20000);
		ck_assert_msg(st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0,
			      "reader exit status %d",
			      st >= 0 && WIFEXITED(st) ? WEXITSTATUS(st) : -1);
	}
	char why[256];
	ck_assert_msg(eng_core_check(fx.b, why, sizeof(why)) == 0, "%s", why);
	struct eng_core_stats bs;
	eng_core_stats(fx.b, &bs);
	fprintf(stderr,
		"writer: %llu requests, %llu book-full; orders live %u "
		"done %u free %u unused %u; fills used %u free %u; epoch %llu safe %llu\n",
		(unsigned long long)n, (unsigned long long)full, bs.orders_live,
		bs.orders_done, bs.orders_free, bs.orders_unused, bs.fills_used,
		bs.fills_free, (unsigned long long)shm_rcu_epoch(&fx.w),
		(unsigned long long)fx.w.safe);
	ck_assert_uint_gt(n, 1000);
	book_free();
}
END_TEST

static Suite *shm_snap_suite(void)
{
	Suite *s = suite_create("shm_snap");
	TCase *tc = tcase_create("reads");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, top_and_depth);
	tcase_add_test(tc, order_status_and_fills);
	tcase_add_test(tc, recycled_order_is_gone);
	tcase_add_test(tc, symbols_and_stats);
	tcase_add_test(tc, evicted_reader_registers_again);
	tcase_add_test(tc, open_errors);
	tcase_add_test(tc, corrupted_region_gives_errors);
	suite_add_tcase(s, tc);
	tc = tcase_create("processes");
	tcase_set_timeout(tc, 30);
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, concurrent_writer_and_reader_processes);
	suite_add_tcase(s, tc);
	return s;
}

SHMEX_TEST_MAIN(shm_snap_suite)
