/*
 * eng_core_suite: the pure matching core.
 *
 * Rules (the ECE 568 handout example, price-time priority, partial fills,
 * cancels, IOC, FOK boundaries, modify priority, self-trade prevention),
 * capacities (book full and recovery after reclaim, retired nodes never
 * reused before their grace period), order status sums, a differential
 * test against the naive reference book (tests/support_refbook.c) over
 * >= 100,000 random requests, and a reader PROCESS taking seqcount
 * snapshots of a book in a real shared-memory region while the writer
 * trades.
 */
#include <check.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "engine/eng_core.h"
#include "shm/shm_book.h"
#include "shm/shm_dec.h"
#include "shm/shm_error.h"
#include "shm/shm_msg.h"
#include "shm/shm_region.h"
#include "tests/refbook.h"
#include "tests/shmex_test.h"

/* ------------------------------------------------------------------ */
/* Fixture                                                             */

struct evlog {
	struct eng_event *ev;
	size_t n, cap;
};

static void log_event(void *ctx, const struct eng_event *ev)
{
	struct evlog *l = ctx;
	if (l->n == l->cap) {
		l->cap = l->cap ? 2 * l->cap : 256;
		l->ev = realloc(l->ev, l->cap * sizeof(*l->ev));
		ck_assert_ptr_nonnull(l->ev);
	}
	l->ev[l->n++] = *ev;
}

struct fx {
	void *mem;
	struct eng_core *b;
	struct evlog log;
	uint32_t sym;
	uint64_t seq;
	uint64_t epoch;
};

static void fx_open(struct fx *f, uint32_t levels, uint32_t orders, uint32_t fills,
		    uint32_t stp)
{
	memset(f, 0, sizeof(*f));
	struct eng_core_cfg cfg = {
		.caps = {.symbols = 4,
			 .levels = levels,
			 .orders = orders,
			 .fills = fills},
		.shard = 0,
		.nshards = 1,
		.stp_mode = stp,
	};
	size_t bytes = eng_core_bytes(&cfg);
	ck_assert_uint_gt(bytes, 0);
	f->mem = aligned_alloc(64, (bytes + 63) & ~(size_t)63);
	ck_assert_ptr_nonnull(f->mem);
	ck_assert_int_eq(eng_core_init(&f->b, f->mem, bytes, &cfg, log_event, &f->log),
			 0);
	ck_assert_int_eq(eng_core_symbol_add(f->b, "X", 1, &f->sym), 0);
	eng_core_reclaim(f->b, UINT64_MAX);
}

/* Frees a fixture without checking it (a core whose load was refused). */
static void fx_discard(struct fx *f)
{
	eng_core_destroy(f->b);
	free(f->mem);
	free(f->log.ev);
}

static void fx_close(struct fx *f)
{
	char why[256];
	int rc = eng_core_check(f->b, why, sizeof(why));
	ck_assert_msg(rc == 0, "book invariant: %s", why);
	fx_discard(f);
}

static void fx_check(struct fx *f)
{
	char why[256];
	int rc = eng_core_check(f->b, why, sizeof(why));
	ck_assert_msg(rc == 0, "book invariant: %s", why);
}

static struct eng_req req(struct fx *f)
{
	struct eng_req r;
	memset(&r, 0, sizeof(r));
	r.seq = ++f->seq;
	r.time_ns = 1000 * f->seq;
	r.epoch = f->epoch;
	r.account = 1;
	r.sym = f->sym;
	return r;
}

static int submit_acct(struct fx *f, uint64_t account, unsigned side, int64_t px,
		       int64_t qty, unsigned tif, uint64_t *id)
{
	struct eng_req r = req(f);
	r.account = account;
	r.side = (uint8_t)side;
	r.price = px;
	r.qty = qty;
	r.tif = (uint8_t)tif;
	return eng_core_submit(f->b, &r, id);
}

static uint64_t order(struct fx *f, unsigned side, int64_t px, int64_t qty, unsigned tif)
{
	uint64_t id;
	ck_assert_int_eq(submit_acct(f, 1, side, px, qty, tif, &id), 0);
	ck_assert_uint_ne(id, 0);
	return id;
}

static int cancel(struct fx *f, uint64_t id)
{
	struct eng_req r = req(f);
	r.order_id = id;
	return eng_core_cancel(f->b, &r);
}

static int modify(struct fx *f, uint64_t id, int64_t px, int64_t qty)
{
	struct eng_req r = req(f);
	r.order_id = id;
	r.price = px;
	r.qty = qty;
	return eng_core_modify(f->b, &r);
}

/* Events of one type from index `from` on. */
static size_t count_type(const struct fx *f, size_t from, unsigned type)
{
	size_t n = 0;
	for (size_t i = from; i < f->log.n; i++)
		n += f->log.ev[i].type == type;
	return n;
}

static const struct eng_event *nth_type(const struct fx *f, size_t from, unsigned type,
					size_t k)
{
	for (size_t i = from; i < f->log.n; i++)
		if (f->log.ev[i].type == type && k-- == 0)
			return &f->log.ev[i];
	ck_abort_msg("no event %u #%zu", type, k);
	return NULL;
}

static const struct shm_book_order_sh *rec(const struct fx *f, uint64_t id)
{
	const struct shm_book_order_sh *o = eng_core_order(f->b, id);
	ck_assert_ptr_nonnull(o);
	ck_assert_int_eq(o->open + o->executed + o->cancelled, o->amount);
	return o;
}

static size_t depth(const struct fx *f, unsigned side, struct eng_core_level_info *out,
		    size_t max)
{
	return eng_core_depth(f->b, f->sym, side, out, max);
}

/* The i-th fill record of an order. */
static const struct shm_book_fill_sh *fill_of(const struct fx *f, uint64_t id, uint32_t k)
{
	const struct shm_book_view *v = eng_core_view(f->b);
	const struct shm_book_order_sh *o = rec(f, id);
	uint32_t fi = o->fill_head;
	while (k--) {
		ck_assert_ptr_nonnull(shm_book_fill_at(v, fi));
		fi = shm_book_fill_at(v, fi)->next;
	}
	const struct shm_book_fill_sh *fl = shm_book_fill_at(v, fi);
	ck_assert_ptr_nonnull(fl);
	return fl;
}

#define P(x) ((int64_t)(x)*SHM_PRICE_ONE)
#define Q(x) ((int64_t)(x)*SHM_QTY_ONE)

/* ------------------------------------------------------------------ */
/* Rules                                                               */

START_TEST(handout_example)
{
	struct fx f;
	fx_open(&f, 64, 64, 256, SHM_BOOK_STP_NONE);
	uint64_t o1 = order(&f, SHM_SIDE_BUY, P(125), Q(300), SHM_TIF_GTC);
	uint64_t o2 = order(&f, SHM_SIDE_SELL, P(130), Q(100), SHM_TIF_GTC);
	uint64_t o3 = order(&f, SHM_SIDE_BUY, P(127), Q(200), SHM_TIF_GTC);
	uint64_t o4 = order(&f, SHM_SIDE_SELL, P(128), Q(500), SHM_TIF_GTC);
	uint64_t o5 = order(&f, SHM_SIDE_SELL, P(140), Q(200), SHM_TIF_GTC);
	uint64_t o6 = order(&f, SHM_SIDE_BUY, P(125), Q(400), SHM_TIF_GTC);
	(void)o2, (void)o4, (void)o5;
	ck_assert_uint_eq(count_type(&f, 0, ENG_EV_FILL), 0);
	size_t mark = f.log.n;
	uint64_t o7 = order(&f, SHM_SIDE_SELL, P(124), Q(400), SHM_TIF_GTC);
	ck_assert_uint_eq(count_type(&f, mark, ENG_EV_FILL), 2);
	const struct eng_event *a = nth_type(&f, mark, ENG_EV_FILL, 0);
	const struct eng_event *b = nth_type(&f, mark, ENG_EV_FILL, 1);
	ck_assert_uint_eq(a->maker_id, o3);
	ck_assert_int_eq(a->price, P(127));
	ck_assert_int_eq(a->qty, Q(200));
	ck_assert_uint_eq(b->maker_id, o1);
	ck_assert_int_eq(b->price, P(125));
	ck_assert_int_eq(b->qty, Q(200));
	ck_assert_uint_eq(a->order_id, o7);
	/* Order 7: two executions, nothing open. */
	const struct shm_book_order_sh *r7 = rec(&f, o7);
	ck_assert_int_eq(r7->open, 0);
	ck_assert_int_eq(r7->executed, Q(400));
	ck_assert_uint_eq(r7->state, SHM_BOOK_ORDER_DONE);
	ck_assert_uint_eq(r7->nfills, 2);
	ck_assert_int_eq(fill_of(&f, o7, 0)->price, P(127));
	ck_assert_uint_eq(fill_of(&f, o7, 0)->counterparty, o3);
	ck_assert_int_eq(fill_of(&f, o7, 1)->price, P(125));
	ck_assert_uint_eq(fill_of(&f, o7, 1)->counterparty, o1);
	/* Order 1 keeps 100 open and its priority over order 6. */
	ck_assert_int_eq(rec(&f, o1)->open, Q(100));
	mark = f.log.n;
	order(&f, SHM_SIDE_SELL, P(125), Q(100), SHM_TIF_GTC);
	ck_assert_uint_eq(nth_type(&f, mark, ENG_EV_FILL, 0)->maker_id, o1);
	ck_assert_int_eq(rec(&f, o6)->open, Q(400));
	ck_assert_uint_eq(rec(&f, o1)->state, SHM_BOOK_ORDER_DONE);
	fx_close(&f);
}
END_TEST

START_TEST(price_time_priority)
{
	struct fx f;
	fx_open(&f, 64, 64, 256, SHM_BOOK_STP_NONE);
	uint64_t s1 = order(&f, SHM_SIDE_SELL, 102, 5, SHM_TIF_GTC);
	uint64_t s2 = order(&f, SHM_SIDE_SELL, 101, 5, SHM_TIF_GTC);
	uint64_t s3 = order(&f, SHM_SIDE_SELL, 101, 5, SHM_TIF_GTC);
	uint64_t s4 = order(&f, SHM_SIDE_SELL, 100, 5, SHM_TIF_GTC);
	struct eng_core_level_info lv[8];
	ck_assert_uint_eq(depth(&f, SHM_SIDE_SELL, lv, 8), 3);
	ck_assert_int_eq(lv[0].price, 100);
	ck_assert_int_eq(lv[1].price, 101);
	ck_assert_int_eq(lv[1].qty, 10);
	ck_assert_uint_eq(lv[1].count, 2);
	ck_assert_int_eq(lv[2].price, 102);
	size_t mark = f.log.n;
	uint64_t t = order(&f, SHM_SIDE_BUY, 200, 18, SHM_TIF_GTC);
	ck_assert_uint_eq(count_type(&f, mark, ENG_EV_FILL), 4);
	uint64_t want[4] = {s4, s2, s3, s1};
	int64_t px[4] = {100, 101, 101, 102};
	int64_t q[4] = {5, 5, 5, 3};
	for (int i = 0; i < 4; i++) {
		const struct eng_event *e = nth_type(&f, mark, ENG_EV_FILL, (size_t)i);
		ck_assert_uint_eq(e->maker_id, want[i]);
		ck_assert_int_eq(e->price, px[i]); /* the maker's price, not 200 */
		ck_assert_int_eq(e->qty, q[i]);
		ck_assert_int_eq(e->taker_price, 200);
	}
	ck_assert_int_eq(rec(&f, t)->open, 0);
	ck_assert_int_eq(rec(&f, s1)->open, 2);
	ck_assert_uint_eq(depth(&f, SHM_SIDE_SELL, lv, 8), 1);
	ck_assert_uint_eq(depth(&f, SHM_SIDE_BUY, lv, 8), 0);
	/* Sell side symmetric: the highest bid first. */
	uint64_t b1 = order(&f, SHM_SIDE_BUY, 90, 5, SHM_TIF_GTC);
	uint64_t b2 = order(&f, SHM_SIDE_BUY, 95, 5, SHM_TIF_GTC);
	mark = f.log.n;
	order(&f, SHM_SIDE_SELL, 80, 7, SHM_TIF_GTC);
	ck_assert_uint_eq(nth_type(&f, mark, ENG_EV_FILL, 0)->maker_id, b2);
	ck_assert_int_eq(nth_type(&f, mark, ENG_EV_FILL, 0)->price, 95);
	ck_assert_uint_eq(nth_type(&f, mark, ENG_EV_FILL, 1)->maker_id, b1);
	ck_assert_int_eq(nth_type(&f, mark, ENG_EV_FILL, 1)->price, 90);
	fx_close(&f);
}
END_TEST

START_TEST(partial_fills_keep_priority)
{
	struct fx f;
	fx_open(&f, 64, 64, 256, SHM_BOOK_STP_NONE);
	uint64_t a = order(&f, SHM_SIDE_BUY, 100, 10, SHM_TIF_GTC);
	uint64_t b = order(&f, SHM_SIDE_BUY, 100, 10, SHM_TIF_GTC);
	order(&f, SHM_SIDE_SELL, 100, 4, SHM_TIF_GTC);
	order(&f, SHM_SIDE_SELL, 100, 3, SHM_TIF_GTC);
	const struct shm_book_order_sh *ra = rec(&f, a);
	ck_assert_int_eq(ra->open, 3);
	ck_assert_int_eq(ra->executed, 7);
	ck_assert_uint_eq(ra->nfills, 2);
	ck_assert_uint_eq(ra->state, SHM_BOOK_ORDER_LIVE);
	ck_assert_int_eq(rec(&f, b)->executed, 0);
	size_t mark = f.log.n;
	order(&f, SHM_SIDE_SELL, 100, 5, SHM_TIF_GTC);
	ck_assert_uint_eq(nth_type(&f, mark, ENG_EV_FILL, 0)->maker_id, a);
	ck_assert_int_eq(nth_type(&f, mark, ENG_EV_FILL, 0)->qty, 3);
	ck_assert_int_eq(nth_type(&f, mark, ENG_EV_FILL, 0)->maker_open, 0);
	ck_assert_uint_eq(nth_type(&f, mark, ENG_EV_FILL, 1)->maker_id, b);
	ck_assert_int_eq(nth_type(&f, mark, ENG_EV_FILL, 1)->qty, 2);
	ck_assert_int_eq(nth_type(&f, mark, ENG_EV_FILL, 1)->maker_open, 8);
	ck_assert_int_eq(nth_type(&f, mark, ENG_EV_FILL, 1)->taker_open, 0);
	fx_close(&f);
}
END_TEST

START_TEST(cancel_after_partial_fill)
{
	struct fx f;
	fx_open(&f, 64, 64, 256, SHM_BOOK_STP_NONE);
	uint64_t a = order(&f, SHM_SIDE_SELL, 100, 10, SHM_TIF_GTC);
	order(&f, SHM_SIDE_BUY, 100, 6, SHM_TIF_GTC);
	size_t mark = f.log.n;
	ck_assert_int_eq(cancel(&f, a), 0);
	const struct eng_event *e = nth_type(&f, mark, ENG_EV_CANCEL, 0);
	ck_assert_int_eq(e->qty, 4);
	ck_assert_int_eq(e->price, 100);
	ck_assert_uint_eq(e->reason, SHM_BOOK_DONE_CANCEL);
	const struct shm_book_order_sh *r = rec(&f, a);
	ck_assert_int_eq(r->cancelled, 4);
	ck_assert_int_eq(r->executed, 6);
	ck_assert_int_eq(r->open, 0);
	ck_assert_uint_eq(r->cancel_time_ns, 1000 * f.seq);
	ck_assert_uint_eq(r->done_reason, SHM_BOOK_DONE_CANCEL);
	struct eng_core_level_info lv[2];
	ck_assert_uint_eq(depth(&f, SHM_SIDE_SELL, lv, 2), 0);
	/* The refund is never applied twice. */
	mark = f.log.n;
	ck_assert_int_eq(cancel(&f, a), SHMEX_ENOTOPEN);
	ck_assert_uint_eq(nth_type(&f, mark, ENG_EV_REJECT, 0)->err, SHMEX_ENOTOPEN);
	ck_assert_uint_eq(count_type(&f, mark, ENG_EV_CANCEL), 0);
	/* Unknown and foreign ids. */
	ck_assert_int_eq(cancel(&f, 0), SHMEX_ENOORDER);
	ck_assert_int_eq(cancel(&f, a + 1000), SHMEX_ENOORDER);
	uint64_t b = order(&f, SHM_SIDE_SELL, 100, 10, SHM_TIF_GTC);
	struct eng_req r2 = req(&f);
	r2.order_id = b;
	r2.account = 2;
	ck_assert_int_eq(eng_core_cancel(f.b, &r2), SHMEX_ENOTOWNER);
	ck_assert_int_eq(rec(&f, b)->open, 10);
	fx_close(&f);
}
END_TEST

START_TEST(ioc_remainder_never_rests)
{
	struct fx f;
	fx_open(&f, 64, 64, 256, SHM_BOOK_STP_NONE);
	order(&f, SHM_SIDE_SELL, 100, 10, SHM_TIF_GTC);
	size_t mark = f.log.n;
	uint64_t t = order(&f, SHM_SIDE_BUY, 100, 15, SHM_TIF_IOC);
	ck_assert_uint_eq(count_type(&f, mark, ENG_EV_ACCEPT), 1);
	ck_assert_uint_eq(count_type(&f, mark, ENG_EV_FILL), 1);
	const struct eng_event *c = nth_type(&f, mark, ENG_EV_CANCEL, 0);
	ck_assert_uint_eq(c->order_id, t);
	ck_assert_int_eq(c->qty, 5);
	ck_assert_uint_eq(c->reason, SHM_BOOK_DONE_IOC);
	struct eng_core_level_info lv[2];
	ck_assert_uint_eq(depth(&f, SHM_SIDE_BUY, lv, 2), 0);
	/* Fully filled IOC: no cancel event. */
	order(&f, SHM_SIDE_SELL, 100, 10, SHM_TIF_GTC);
	mark = f.log.n;
	order(&f, SHM_SIDE_BUY, 100, 10, SHM_TIF_IOC);
	ck_assert_uint_eq(count_type(&f, mark, ENG_EV_CANCEL), 0);
	fx_close(&f);
}
END_TEST

START_TEST(fok_exact_boundary)
{
	struct fx f;
	fx_open(&f, 64, 64, 256, SHM_BOOK_STP_NONE);
	order(&f, SHM_SIDE_SELL, 100, 10, SHM_TIF_GTC);
	order(&f, SHM_SIDE_SELL, 101, 10, SHM_TIF_GTC);
	order(&f, SHM_SIDE_SELL, 103, 10, SHM_TIF_GTC);
	/* One short (21 available up to 102 with 20): killed, no trade. */
	size_t mark = f.log.n;
	uint64_t k = order(&f, SHM_SIDE_BUY, 102, 21, SHM_TIF_FOK);
	ck_assert_uint_eq(f.log.n - mark, 2);
	ck_assert_uint_eq(f.log.ev[mark].type, ENG_EV_ACCEPT);
	ck_assert_uint_eq(f.log.ev[mark + 1].type, ENG_EV_CANCEL);
	ck_assert_uint_eq(f.log.ev[mark + 1].reason, SHM_BOOK_DONE_FOK);
	ck_assert_int_eq(f.log.ev[mark + 1].qty, 21);
	ck_assert_int_eq(rec(&f, k)->cancelled, 21);
	struct eng_core_level_info lv[4];
	ck_assert_uint_eq(depth(&f, SHM_SIDE_SELL, lv, 4), 3);
	ck_assert_int_eq(lv[0].qty + lv[1].qty + lv[2].qty, 30);
	/* Exactly enough across two levels: fills completely. */
	mark = f.log.n;
	uint64_t g = order(&f, SHM_SIDE_BUY, 102, 20, SHM_TIF_FOK);
	ck_assert_uint_eq(count_type(&f, mark, ENG_EV_FILL), 2);
	ck_assert_uint_eq(count_type(&f, mark, ENG_EV_CANCEL), 0);
	ck_assert_int_eq(rec(&f, g)->executed, 20);
	ck_assert_uint_eq(depth(&f, SHM_SIDE_SELL, lv, 4), 1);
	ck_assert_int_eq(lv[0].price, 103);
	/* Sell side: one short is killed, exact is filled. */
	order(&f, SHM_SIDE_BUY, 90, 5, SHM_TIF_GTC);
	order(&f, SHM_SIDE_BUY, 89, 5, SHM_TIF_GTC);
	mark = f.log.n;
	order(&f, SHM_SIDE_SELL, 89, 11, SHM_TIF_FOK);
	ck_assert_uint_eq(count_type(&f, mark, ENG_EV_FILL), 0);
	mark = f.log.n;
	order(&f, SHM_SIDE_SELL, 89, 10, SHM_TIF_FOK);
	ck_assert_uint_eq(count_type(&f, mark, ENG_EV_FILL), 2);
	fx_close(&f);
}
END_TEST

START_TEST(modify_priority_rules)
{
	struct fx f;
	fx_open(&f, 64, 64, 256, SHM_BOOK_STP_NONE);
	uint64_t a = order(&f, SHM_SIDE_BUY, 100, 10, SHM_TIF_GTC);
	uint64_t b = order(&f, SHM_SIDE_BUY, 100, 10, SHM_TIF_GTC);
	/* Pure size reduction keeps priority. */
	size_t mark = f.log.n;
	ck_assert_int_eq(modify(&f, a, 100, 6), 0);
	const struct eng_event *m = nth_type(&f, mark, ENG_EV_MODIFY, 0);
	ck_assert_int_eq(m->old_qty, 10);
	ck_assert_int_eq(m->qty, 6);
	ck_assert_int_eq(rec(&f, a)->amount, 6);
	mark = f.log.n;
	order(&f, SHM_SIDE_SELL, 100, 1, SHM_TIF_GTC);
	ck_assert_uint_eq(nth_type(&f, mark, ENG_EV_FILL, 0)->maker_id, a);
	/* Size increase loses it (a: 5 open -> 8, back of the queue). */
	ck_assert_int_eq(modify(&f, a, 100, 8), 0);
	ck_assert_int_eq(rec(&f, a)->amount, 9); /* 1 executed + 8 open */
	mark = f.log.n;
	order(&f, SHM_SIDE_SELL, 100, 1, SHM_TIF_GTC);
	ck_assert_uint_eq(nth_type(&f, mark, ENG_EV_FILL, 0)->maker_id, b);
	/* Price change loses it, and trades when it crosses, at the maker's
	 * price; the modify event comes before its own trades. */
	uint64_t s = order(&f, SHM_SIDE_SELL, 105, 4, SHM_TIF_GTC);
	mark = f.log.n;
	ck_assert_int_eq(modify(&f, a, 110, 8), 0);
	ck_assert_uint_eq(f.log.ev[mark].type, ENG_EV_MODIFY);
	ck_assert_uint_eq(f.log.ev[mark + 1].type, ENG_EV_FILL);
	ck_assert_uint_eq(f.log.ev[mark + 1].maker_id, s);
	ck_assert_int_eq(f.log.ev[mark + 1].price, 105);
	ck_assert_int_eq(f.log.ev[mark + 1].qty, 4);
	const struct shm_book_order_sh *ra = rec(&f, a);
	ck_assert_int_eq(ra->open, 4);
	ck_assert_int_eq(ra->executed, 5);
	ck_assert_int_eq(ra->price, 110);
	struct eng_core_level_info lv[4];
	ck_assert_uint_eq(depth(&f, SHM_SIDE_BUY, lv, 4), 2);
	ck_assert_int_eq(lv[0].price, 110);
	ck_assert_int_eq(lv[0].qty, 4);
	/* Modify to zero cancels the open part. */
	mark = f.log.n;
	ck_assert_int_eq(modify(&f, a, 110, 0), 0);
	const struct eng_event *c = nth_type(&f, mark, ENG_EV_CANCEL, 0);
	ck_assert_uint_eq(c->reason, SHM_BOOK_DONE_MODIFY);
	ck_assert_int_eq(c->qty, 4);
	ck_assert_uint_eq(count_type(&f, mark, ENG_EV_MODIFY), 0);
	ck_assert_int_eq(rec(&f, a)->cancelled, 4);
	/* Stale and bad modifies. */
	ck_assert_int_eq(modify(&f, a, 110, 5), SHMEX_ENOTOPEN);
	ck_assert_int_eq(modify(&f, b, 0, 5), SHMEX_EBADPRICE);
	ck_assert_int_eq(modify(&f, b, 100, -1), SHMEX_EBADAMOUNT);
	ck_assert_int_eq(modify(&f, 12345, 100, 1), SHMEX_ENOORDER);
	ck_assert_int_eq(rec(&f, b)->open, 9);
	fx_close(&f);
}
END_TEST

START_TEST(self_trade_prevention)
{
	uint32_t modes[] = {SHM_BOOK_STP_NONE, SHM_BOOK_STP_CANCEL_NEWEST,
			    SHM_BOOK_STP_CANCEL_OLDEST, SHM_BOOK_STP_CANCEL_BOTH};
	for (int i = 0; i < 4; i++) {
		struct fx f;
		fx_open(&f, 64, 64, 256, modes[i]);
		uint64_t own, other, t;
		ck_assert_int_eq(
			submit_acct(&f, 7, SHM_SIDE_SELL, 100, 5, SHM_TIF_GTC, &own), 0);
		ck_assert_int_eq(
			submit_acct(&f, 8, SHM_SIDE_SELL, 100, 5, SHM_TIF_GTC, &other),
			0);
		size_t mark = f.log.n;
		ck_assert_int_eq(
			submit_acct(&f, 7, SHM_SIDE_BUY, 100, 8, SHM_TIF_GTC, &t), 0);
		const struct shm_book_order_sh *ro = rec(&f, own), *rt = rec(&f, t);
		switch (modes[i]) {
		case SHM_BOOK_STP_NONE: /* self-trade allowed */
			ck_assert_uint_eq(nth_type(&f, mark, ENG_EV_FILL, 0)->maker_id,
					  own);
			ck_assert_int_eq(rt->executed, 8);
			break;
		case SHM_BOOK_STP_CANCEL_NEWEST:
			ck_assert_uint_eq(count_type(&f, mark, ENG_EV_FILL), 0);
			ck_assert_int_eq(rt->cancelled, 8);
			ck_assert_uint_eq(rt->done_reason, SHM_BOOK_DONE_STP);
			ck_assert_int_eq(ro->open, 5);
			break;
		case SHM_BOOK_STP_CANCEL_OLDEST:
			ck_assert_int_eq(ro->cancelled, 5);
			ck_assert_uint_eq(nth_type(&f, mark, ENG_EV_FILL, 0)->maker_id,
					  other);
			ck_assert_int_eq(rt->executed, 5);
			ck_assert_int_eq(rt->open, 3); /* rests */
			break;
		default:
			ck_assert_int_eq(ro->cancelled, 5);
			ck_assert_int_eq(rt->cancelled, 8);
			ck_assert_uint_eq(count_type(&f, mark, ENG_EV_FILL), 0);
			ck_assert_int_eq(rec(&f, other)->open, 5);
			break;
		}
		fx_close(&f);
	}
}
END_TEST

START_TEST(bad_requests_change_nothing)
{
	struct fx f;
	fx_open(&f, 64, 64, 256, SHM_BOOK_STP_NONE);
	uint64_t sell = order(&f, SHM_SIDE_SELL, 100, 10, SHM_TIF_GTC);
	/* Every pool (everything after the header's statistics), byte for
	 * byte, before the rejections. */
	struct shm_book_caps caps = {4, 64, 64, 256};
	size_t bytes = shm_book_body_bytes(&caps);
	size_t hdr = sizeof(struct shm_book_hdr_sh);
	ck_assert_uint_gt(bytes, hdr);
	char *before = malloc(bytes - hdr);
	ck_assert_ptr_nonnull(before);
	memcpy(before, (char *)f.mem + hdr, bytes - hdr);
	uint64_t id = 99;
	struct eng_req r = req(&f);
	r.side = SHM_SIDE_BUY;
	r.price = 100;
	r.qty = 0;
	ck_assert_int_eq(eng_core_submit(f.b, &r, &id), SHMEX_EBADAMOUNT);
	ck_assert_uint_eq(id, 0);
	r.qty = 1;
	r.price = 0;
	ck_assert_int_eq(eng_core_submit(f.b, &r, &id), SHMEX_EBADPRICE);
	r.price = 100;
	r.tif = 3;
	ck_assert_int_eq(eng_core_submit(f.b, &r, &id), SHMEX_EBADTIF);
	r.tif = 0;
	r.side = 2;
	ck_assert_int_eq(eng_core_submit(f.b, &r, &id), SHMEX_EBADREQUEST);
	r.side = 0;
	r.sym = 3;
	ck_assert_int_eq(eng_core_submit(f.b, &r, &id), SHMEX_ENOSYMBOL);
	/* Overflow of the side's open total. */
	r.sym = f.sym;
	r.side = SHM_SIDE_SELL;
	r.price = 200;
	r.qty = INT64_MAX - 5;
	ck_assert_int_eq(eng_core_submit(f.b, &r, &id), SHMEX_EOVERFLOW);
	/* Cancel and modify of someone else's order, modify to a bad price. */
	r = req(&f);
	r.order_id = sell;
	r.account = 2;
	ck_assert_int_eq(eng_core_cancel(f.b, &r), SHMEX_ENOTOWNER);
	r.account = 1;
	r.price = 0;
	r.qty = 1;
	ck_assert_int_eq(eng_core_modify(f.b, &r), SHMEX_EBADPRICE);
	ck_assert_uint_eq(count_type(&f, 0, ENG_EV_REJECT), 8);
	ck_assert_uint_eq(count_type(&f, 0, ENG_EV_ACCEPT), 1);
	ck_assert_msg(memcmp(before, (char *)f.mem + hdr, bytes - hdr) == 0,
		      "a rejected request changed the book's pools");
	free(before);
	struct eng_core_level_info lv[2];
	ck_assert_uint_eq(depth(&f, SHM_SIDE_SELL, lv, 2), 1);
	ck_assert_int_eq(lv[0].qty, 10);
	/* What changes the book is numbered from 1 without gaps; a
	 * rejection changes nothing and carries no number (it is not in
	 * the shard's journal either). */
	uint64_t want = 1;
	for (size_t i = 0; i < f.log.n; i++) {
		if (f.log.ev[i].type == ENG_EV_REJECT)
			ck_assert_uint_eq(f.log.ev[i].event, 0);
		else
			ck_assert_uint_eq(f.log.ev[i].event, want++);
	}
	ck_assert_uint_eq(want, 2); /* the one acceptance */
	fx_close(&f);
}
END_TEST

/* A post-only order that would cross at the moment it is applied is
 * rejected and changes nothing (no fill, no acceptance, the book's pools
 * byte for byte); one that does not cross rests like any limit order. */
START_TEST(post_only_rejected_when_it_would_cross)
{
	struct fx f;
	fx_open(&f, 64, 64, 256, SHM_BOOK_STP_NONE);
	uint64_t sell = order(&f, SHM_SIDE_SELL, 100, 10, SHM_TIF_GTC);
	uint64_t buy = order(&f, SHM_SIDE_BUY, 90, 5, SHM_TIF_GTC);
	struct shm_book_caps caps = {4, 64, 64, 256};
	size_t bytes = shm_book_body_bytes(&caps);
	size_t hdr = sizeof(struct shm_book_hdr_sh);
	char *before = malloc(bytes - hdr);
	ck_assert_ptr_nonnull(before);
	memcpy(before, (char *)f.mem + hdr, bytes - hdr);
	size_t ev0 = f.log.n;
	uint64_t events0 = eng_core_events(f.b);
	/* A buy at the ask, above it, a sell at the bid, below it; IOC and
	 * FOK too. */
	static const struct {
		unsigned side;
		int64_t px;
		unsigned tif;
	} cross[] = {
		{SHM_SIDE_BUY, 100, SHM_TIF_GTC}, {SHM_SIDE_BUY, 150, SHM_TIF_GTC},
		{SHM_SIDE_SELL, 90, SHM_TIF_GTC}, {SHM_SIDE_SELL, 1, SHM_TIF_GTC},
		{SHM_SIDE_BUY, 100, SHM_TIF_IOC}, {SHM_SIDE_SELL, 90, SHM_TIF_FOK},
	};
	for (size_t i = 0; i < sizeof(cross) / sizeof(cross[0]); i++) {
		struct eng_req r = req(&f);
		r.account = 2;
		r.side = (uint8_t)cross[i].side;
		r.price = cross[i].px;
		r.qty = 3;
		r.tif = (uint8_t)cross[i].tif;
		r.flags = ENG_REQ_POST_ONLY;
		uint64_t id = 99;
		ck_assert_int_eq(eng_core_submit(f.b, &r, &id), SHMEX_EWOULDCROSS);
		ck_assert_uint_eq(id, 0);
	}
	ck_assert_uint_eq(f.log.n - ev0, 6);
	ck_assert_uint_eq(count_type(&f, ev0, ENG_EV_REJECT), 6);
	ck_assert_int_eq(nth_type(&f, ev0, ENG_EV_REJECT, 0)->err, SHMEX_EWOULDCROSS);
	ck_assert_uint_eq(eng_core_events(f.b), events0);
	ck_assert_msg(memcmp(before, (char *)f.mem + hdr, bytes - hdr) == 0,
		      "a rejected post-only order changed the book's pools");
	free(before);
	ck_assert_int_eq(rec(&f, sell)->open, 10);
	ck_assert_int_eq(rec(&f, buy)->open, 5);
	/* Inside the spread it rests, and later takers trade with it. */
	struct eng_req r = req(&f);
	r.account = 2;
	r.side = SHM_SIDE_BUY;
	r.price = 99;
	r.qty = 4;
	r.flags = ENG_REQ_POST_ONLY;
	uint64_t po;
	ck_assert_int_eq(eng_core_submit(f.b, &r, &po), 0);
	ck_assert_uint_ne(po, 0);
	ck_assert_int_eq(rec(&f, po)->open, 4);
	ck_assert_uint_eq(count_type(&f, ev0, ENG_EV_FILL), 0);
	struct eng_core_level_info lv[2];
	ck_assert_uint_eq(depth(&f, SHM_SIDE_BUY, lv, 2), 2);
	ck_assert_int_eq(lv[0].price, 99);
	r = req(&f);
	r.account = 2;
	r.side = SHM_SIDE_SELL;
	r.price = 101;
	r.qty = 1;
	r.flags = ENG_REQ_POST_ONLY;
	ck_assert_int_eq(eng_core_submit(f.b, &r, &po), 0); /* above the best bid */
	uint64_t taker;
	ck_assert_int_eq(submit_acct(&f, 3, SHM_SIDE_SELL, 99, 4, SHM_TIF_GTC, &taker),
			 0);
	ck_assert_uint_eq(count_type(&f, ev0, ENG_EV_FILL), 1);
	ck_assert_int_eq(nth_type(&f, ev0, ENG_EV_FILL, 0)->price, 99);
	fx_close(&f);
}
END_TEST

START_TEST(symbols_and_ids)
{
	struct fx f;
	memset(&f, 0, sizeof(f));
	struct eng_core_cfg cfg = {.caps = {2, 16, 8, 32}, .shard = 2, .nshards = 3};
	size_t bytes = eng_core_bytes(&cfg);
	f.mem = aligned_alloc(64, (bytes + 63) & ~(size_t)63);
	ck_assert_int_eq(eng_core_init(&f.b, f.mem, bytes, &cfg, log_event, &f.log), 0);
	eng_core_reclaim(f.b, UINT64_MAX);
	uint32_t a, b, c;
	ck_assert_int_eq(eng_core_symbol_add(f.b, "SPY", 3, &a), 0);
	ck_assert_int_eq(eng_core_symbol_add(f.b, "BTC", 3, &b), 0);
	ck_assert_int_eq(eng_core_symbol_add(f.b, "SPY", 3, &c), 0);
	ck_assert_uint_eq(c, a);
	ck_assert_int_eq(eng_core_symbol_add(f.b, "ETH", 3, &c), SHMEX_ESYMBOLSFULL);
	ck_assert_int_eq(eng_core_symbol_add(f.b, "A-B", 3, &c), SHMEX_EBADSYMBOL);
	ck_assert_int_eq(eng_core_symbol_find(f.b, "BTC", 3, &c), 0);
	ck_assert_uint_eq(c, b);
	ck_assert_int_eq(eng_core_symbol_find(f.b, "ETH", 3, &c), SHMEX_ENOSYMBOL);
	const struct shm_book_view *v = eng_core_view(f.b);
	ck_assert_uint_eq(load_acquire(&v->hdr->nsymbols), 2);
	ck_assert_mem_eq(shm_book_sym_at(v, b)->name, "BTC\0\0\0\0\0\0\0\0\0\0\0\0\0",
			 16);
	/* Symbols are separate books. */
	f.sym = a;
	uint64_t x = order(&f, SHM_SIDE_SELL, 100, 5, SHM_TIF_GTC);
	f.sym = b;
	size_t mark = f.log.n;
	order(&f, SHM_SIDE_BUY, 100, 5, SHM_TIF_GTC);
	ck_assert_uint_eq(count_type(&f, mark, ENG_EV_FILL), 0);
	/* Ids follow the scheme of shm_msg.h and name their shard and slot. */
	ck_assert_uint_eq(x, shm_order_id_make(2, 3, 0, 0, 8));
	ck_assert_uint_eq(shm_shard_of_order(x, 3), 2);
	ck_assert_int_eq(cancel(&f, x + 1), SHMEX_ENOORDER); /* another shard's id */
	fx_close(&f);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Capacity                                                            */

START_TEST(order_pool_full_then_recycled_after_reclaim)
{
	struct fx f;
	fx_open(&f, 16, 4, 64, SHM_BOOK_STP_NONE);
	eng_core_reclaim(f.b, 0); /* readers everywhere: nothing reclaimable */
	f.epoch = 5;
	uint64_t id[4];
	for (int i = 0; i < 4; i++)
		id[i] = order(&f, SHM_SIDE_BUY, 100 - i, 1, SHM_TIF_GTC);
	uint64_t x;
	size_t mark = f.log.n;
	ck_assert_int_eq(submit_acct(&f, 1, SHM_SIDE_BUY, 90, 1, SHM_TIF_GTC, &x),
			 SHMEX_EBOOKFULL);
	ck_assert_uint_eq(nth_type(&f, mark, ENG_EV_REJECT, 0)->err, SHMEX_EBOOKFULL);
	ck_assert_uint_eq(load_relaxed(&eng_core_view(f.b)->hdr->rejects_full), 1);
	/* Done but not past the grace period: still full, and still
	 * queryable. */
	ck_assert_int_eq(cancel(&f, id[0]), 0);
	ck_assert_int_eq(submit_acct(&f, 1, SHM_SIDE_BUY, 90, 1, SHM_TIF_GTC, &x),
			 SHMEX_EBOOKFULL);
	eng_core_reclaim(f.b, 5); /* epoch 5 is still being read */
	ck_assert_int_eq(submit_acct(&f, 1, SHM_SIDE_BUY, 90, 1, SHM_TIF_GTC, &x),
			 SHMEX_EBOOKFULL);
	ck_assert_int_eq(rec(&f, id[0])->cancelled, 1);
	eng_core_reclaim(f.b, 6);
	uint64_t y = order(&f, SHM_SIDE_BUY, 90, 1, SHM_TIF_GTC);
	/* The slot of id[0] was reused with a new generation: new id, the
	 * old one is gone. */
	ck_assert_uint_eq(y, shm_order_id_make(0, 1, 0, 1, 4));
	ck_assert_ptr_null(eng_core_order(f.b, id[0]));
	ck_assert_int_eq(cancel(&f, id[0]), SHMEX_ENOORDER);
	/* The oldest done order goes first. */
	ck_assert_int_eq(cancel(&f, id[2]), 0);
	ck_assert_int_eq(cancel(&f, id[1]), 0);
	order(&f, SHM_SIDE_BUY, 91, 1, SHM_TIF_GTC);
	ck_assert_ptr_null(eng_core_order(f.b, id[2]));
	ck_assert_ptr_nonnull(eng_core_order(f.b, id[1]));
	fx_close(&f);
}
END_TEST

/*
 * eng_core_trim keeps the last `keep` finished orders queryable and
 * frees the older ones (after their grace period) onto the free stack,
 * where new orders take them youngest first; eng_core_recycle(n), what
 * a replay does with the matcher's RECYCLE record, gives a second core
 * the very same ids.
 */
START_TEST(trim_keeps_a_window_and_reuses_the_youngest_first)
{
	struct fx f, g;
	fx_open(&f, 16, 64, 256, SHM_BOOK_STP_NONE);
	fx_open(&g, 16, 64, 256, SHM_BOOK_STP_NONE);
	f.epoch = g.epoch = 3;
	uint64_t id[10];
	for (int i = 0; i < 10; i++) {
		id[i] = order(&f, SHM_SIDE_BUY, 100 + i, 1, SHM_TIF_GTC);
		ck_assert_uint_eq(order(&g, SHM_SIDE_BUY, 100 + i, 1, SHM_TIF_GTC),
				  id[i]);
	}
	for (int i = 0; i < 10; i++) {
		ck_assert_int_eq(cancel(&f, id[i]), 0);
		ck_assert_int_eq(cancel(&g, id[i]), 0);
	}
	/* A reader may still be on epoch 3: nothing is trimmed. */
	eng_core_reclaim(f.b, 3);
	ck_assert_uint_eq(eng_core_trim(f.b, 4), 0);
	eng_core_reclaim(f.b, 4);
	ck_assert_uint_eq(eng_core_trim(f.b, 4), 6);
	ck_assert_uint_eq(eng_core_trim(f.b, 4), 0);
	for (int i = 0; i < 10; i++) {
		if (i < 6) {
			ck_assert_ptr_null(eng_core_order(f.b, id[i]));
			ck_assert_int_eq(cancel(&f, id[i]), SHMEX_ENOORDER);
		} else {
			ck_assert_int_eq(rec(&f, id[i])->cancelled, 1);
		}
	}
	struct eng_core_stats st;
	eng_core_stats(f.b, &st);
	ck_assert_uint_eq(st.orders_done, 4);
	ck_assert_uint_eq(st.orders_free, 6);
	/* The next order takes the youngest trimmed record (id[5]'s slot),
	 * not a never-used one. */
	uint64_t y = order(&f, SHM_SIDE_SELL, 200, 1, SHM_TIF_GTC);
	ck_assert_uint_eq(y, shm_order_id_make(0, 1, 5, 1, 64));
	fx_check(&f);
	/* The replay of the same: same ids. */
	ck_assert_uint_eq(eng_core_recycle(g.b, 6), 6);
	ck_assert_uint_eq(order(&g, SHM_SIDE_SELL, 200, 1, SHM_TIF_GTC), y);
	for (int i = 0; i < 8; i++)
		ck_assert_uint_eq(order(&f, SHM_SIDE_SELL, 300 + i, 1, SHM_TIF_GTC),
				  order(&g, SHM_SIDE_SELL, 300 + i, 1, SHM_TIF_GTC));
	fx_close(&g);
	fx_close(&f);
}
END_TEST

START_TEST(level_pool_full_then_recovered)
{
	struct fx f;
	fx_open(&f, 3, 64, 256, SHM_BOOK_STP_NONE);
	eng_core_reclaim(f.b, 0);
	f.epoch = 10;
	uint64_t a = order(&f, SHM_SIDE_SELL, 100, 5, SHM_TIF_GTC);
	order(&f, SHM_SIDE_SELL, 101, 5, SHM_TIF_GTC);
	order(&f, SHM_SIDE_BUY, 90, 5, SHM_TIF_GTC);
	uint64_t x;
	/* A fourth price that would rest: book full. */
	ck_assert_int_eq(submit_acct(&f, 1, SHM_SIDE_BUY, 91, 5, SHM_TIF_GTC, &x),
			 SHMEX_EBOOKFULL);
	/* An existing price is fine, and so is an order that fills
	 * completely, or an IOC. */
	order(&f, SHM_SIDE_BUY, 90, 5, SHM_TIF_GTC);
	order(&f, SHM_SIDE_BUY, 100, 3, SHM_TIF_GTC);
	order(&f, SHM_SIDE_BUY, 95, 5, SHM_TIF_IOC);
	/* Emptying a level retires it; it is reusable only after the
	 * grace period of its retire epoch. */
	const struct shm_book_view *v = eng_core_view(f.b);
	uint32_t li = rec(&f, a)->level;
	ck_assert_int_eq(cancel(&f, a), 0);
	ck_assert_uint_eq(v->levels[li].state, SHM_BOOK_LEVEL_RETIRED);
	ck_assert_uint_eq(v->levels[li].retire_epoch, 10);
	ck_assert_int_eq(submit_acct(&f, 1, SHM_SIDE_BUY, 91, 5, SHM_TIF_GTC, &x),
			 SHMEX_EBOOKFULL);
	ck_assert_uint_eq(eng_core_reclaim(f.b, 10), 0);
	ck_assert_int_eq(submit_acct(&f, 1, SHM_SIDE_BUY, 91, 5, SHM_TIF_GTC, &x),
			 SHMEX_EBOOKFULL);
	ck_assert_uint_eq(eng_core_reclaim(f.b, 11), 1);
	ck_assert_uint_eq(v->levels[li].state, SHM_BOOK_LEVEL_FREE);
	x = order(&f, SHM_SIDE_BUY, 91, 5, SHM_TIF_GTC);
	ck_assert_uint_eq(rec(&f, x)->level, li);
	fx_close(&f);
}
END_TEST

START_TEST(retired_level_not_reused_before_reclaim)
{
	struct fx f;
	fx_open(&f, 8, 64, 256, SHM_BOOK_STP_NONE);
	eng_core_reclaim(f.b, 0);
	const struct shm_book_view *v = eng_core_view(f.b);
	f.epoch = 3;
	uint64_t a = order(&f, SHM_SIDE_SELL, 100, 5, SHM_TIF_GTC);
	uint64_t b = order(&f, SHM_SIDE_SELL, 101, 5, SHM_TIF_GTC);
	uint32_t la = rec(&f, a)->level, lb = rec(&f, b)->level;
	/* A sweep retires level a (best) and leaves it pointing at b. */
	order(&f, SHM_SIDE_BUY, 100, 5, SHM_TIF_GTC);
	ck_assert_uint_eq(v->levels[la].state, SHM_BOOK_LEVEL_RETIRED);
	ck_assert_uint_eq(v->levels[la].next, lb);
	ck_assert_uint_eq(v->symbols[f.sym].head[SHM_SIDE_SELL], lb);
	/* The done order a keeps its queue link too. */
	ck_assert_uint_eq(rec(&f, a)->next, SHM_BOOK_NIL);
	for (int i = 0; i < 6; i++) {
		uint64_t x = order(&f, SHM_SIDE_BUY, 50 + i, 1, SHM_TIF_GTC);
		ck_assert_uint_ne(rec(&f, x)->level, la);
	}
	ck_assert_uint_eq(v->levels[la].state, SHM_BOOK_LEVEL_RETIRED);
	ck_assert_uint_eq(v->levels[la].price, 100);
	eng_core_reclaim(f.b, 4);
	uint64_t y = order(&f, SHM_SIDE_BUY, 40, 1, SHM_TIF_GTC);
	ck_assert_uint_eq(rec(&f, y)->level, la);
	fx_close(&f);
}
END_TEST

START_TEST(fill_pool_checked_before_matching)
{
	struct fx f;
	/* 8 fill records: a taker may touch at most 4 makers. */
	fx_open(&f, 16, 64, 8, SHM_BOOK_STP_NONE);
	eng_core_reclaim(f.b, 0);
	for (int i = 0; i < 6; i++)
		order(&f, SHM_SIDE_SELL, 100 + i, 1, SHM_TIF_GTC);
	uint64_t x;
	size_t mark = f.log.n;
	ck_assert_int_eq(submit_acct(&f, 1, SHM_SIDE_BUY, 200, 5, SHM_TIF_GTC, &x),
			 SHMEX_EBOOKFULL);
	ck_assert_uint_eq(count_type(&f, mark, ENG_EV_FILL), 0);
	struct eng_core_level_info lv[8];
	ck_assert_uint_eq(depth(&f, SHM_SIDE_SELL, lv, 8), 6);
	/* Touching 4 makers fits exactly. */
	order(&f, SHM_SIDE_BUY, 200, 4, SHM_TIF_GTC);
	ck_assert_uint_eq(depth(&f, SHM_SIDE_SELL, lv, 8), 2);
	/* Now every fill is owned; recycling done orders frees them once
	 * their grace period is over. */
	ck_assert_int_eq(submit_acct(&f, 1, SHM_SIDE_BUY, 200, 1, SHM_TIF_GTC, &x),
			 SHMEX_EBOOKFULL);
	eng_core_reclaim(f.b, 1);
	order(&f, SHM_SIDE_BUY, 200, 2, SHM_TIF_GTC);
	ck_assert_uint_eq(depth(&f, SHM_SIDE_SELL, lv, 8), 0);
	fx_close(&f);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Differential test against the reference book                        */

struct rng {
	uint64_t s;
};

static uint64_t rnd(struct rng *r)
{
	r->s ^= r->s << 13;
	r->s ^= r->s >> 7;
	r->s ^= r->s << 17;
	return r->s;
}

static uint64_t below(struct rng *r, uint64_t n)
{
	return rnd(r) % n;
}

static void ev_compare(const struct eng_event *a, const struct eng_event *b, uint64_t n)
{
	struct eng_event x = *a, y = *b;
	x.event = y.event = 0; /* numbering differs after dropped requests */
	if (memcmp(&x, &y, sizeof(x)) == 0)
		return;
	ck_abort_msg(
		"request %llu: core event type %u id %llu px %lld qty %lld maker %llu "
		"reason %u err %d / ref type %u id %llu px %lld qty %lld maker %llu "
		"reason %u err %d",
		(unsigned long long)n, a->type, (unsigned long long)a->order_id,
		(long long)a->price, (long long)a->qty, (unsigned long long)a->maker_id,
		a->reason, a->err, b->type, (unsigned long long)b->order_id,
		(long long)b->price, (long long)b->qty, (unsigned long long)b->maker_id,
		b->reason, b->err);
}

static void differential(uint32_t stp, uint32_t nreq, uint32_t cap_orders,
			 uint32_t cap_fills, uint32_t cap_levels, uint64_t seed)
{
	struct fx f;
	fx_open(&f, cap_levels, cap_orders, cap_fills, stp);
	uint32_t sym2;
	ck_assert_int_eq(eng_core_symbol_add(f.b, "Y", 1, &sym2), 0);
	struct evlog ref = {0};
	struct refbook *rb = refbook_new(2, stp, log_event, &ref);
	struct rng g = {seed};
	uint64_t *ids = malloc(sizeof(uint64_t) * (nreq + 1));
	size_t nids = 0, dropped = 0, skipped = 0, trades = 0;
	for (uint32_t n = 0; n < nreq; n++) {
		struct eng_req r = req(&f);
		r.sym = below(&g, 4) ? f.sym : sym2;
		r.account = 1 + below(&g, 3);
		r.side = (uint8_t)below(&g, 2);
		int64_t mid = 1000;
		r.price = mid + (r.side ? 1 : -1) * (int64_t)below(&g, 12) -
			  (r.side ? 4 : -4);
		r.qty = 1 + (int64_t)below(&g, 40);
		unsigned what = (unsigned)below(&g, 100);
		size_t core_from = f.log.n, ref_from = ref.n;
		int rc, rr;
		if (what < 42) {
			r.tif = what < 30   ? SHM_TIF_GTC
				: what < 38 ? SHM_TIF_IOC
					    : SHM_TIF_FOK;
			if (below(&g, 200) == 0)
				r.qty = 0; /* a bad one now and then */
			uint64_t id;
			rc = eng_core_submit(f.b, &r, &id);
			if (rc == SHMEX_EBOOKFULL) {
				f.log.n = core_from; /* not the reference's business */
				dropped++;
				continue;
			}
			rr = refbook_submit(rb, &r, id);
			if (rc == 0)
				ids[nids++] = id;
		} else {
			/* Mostly live orders (a few tries), else a dead one. */
			r.order_id = nids ? ids[below(&g, nids)] : 1;
			for (int t = 0; t < 6 && nids; t++) {
				const struct shm_book_order_sh *o =
					eng_core_order(f.b, r.order_id);
				if (o && o->state == SHM_BOOK_ORDER_LIVE)
					break;
				r.order_id = ids[below(&g, nids)];
			}
			if (below(&g, 50) == 0)
				r.order_id = rnd(&g) | 1;
			/* A record recycled by the core is gone there but merely
			 * done in the reference: not comparable. */
			if (eng_core_order(f.b, r.order_id) == NULL &&
			    refbook_has(rb, r.order_id)) {
				skipped++;
				continue;
			}
			if (what < 78) {
				rc = eng_core_cancel(f.b, &r);
				rr = refbook_cancel(rb, &r);
			} else {
				r.price = mid + (int64_t)below(&g, 24) - 12;
				r.qty = (int64_t)below(&g, 50);
				rc = eng_core_modify(f.b, &r);
				if (rc == SHMEX_EBOOKFULL) {
					f.log.n = core_from;
					dropped++;
					continue;
				}
				rr = refbook_modify(rb, &r);
			}
		}
		ck_assert_msg(rc == rr, "request %u: core %d, reference %d", n, rc, rr);
		ck_assert_msg(f.log.n - core_from == ref.n - ref_from,
			      "request %u: %zu events vs %zu", n, f.log.n - core_from,
			      ref.n - ref_from);
		for (size_t k = 0; k < f.log.n - core_from; k++) {
			ev_compare(&f.log.ev[core_from + k], &ref.ev[ref_from + k], n);
			trades += f.log.ev[core_from + k].type == ENG_EV_FILL;
		}
		f.log.n = 0;
		ref.n = 0;
		if (n % 5000 == 0 || n + 1 == nreq) {
			fx_check(&f);
			for (uint32_t s = 0; s < 2; s++) {
				for (unsigned side = 0; side < 2; side++) {
					struct eng_core_level_info a[64], b[64];
					uint32_t si = s ? sym2 : f.sym;
					size_t na = eng_core_depth(f.b, si, side, a, 64);
					size_t nb = refbook_depth(rb, si, side, b, 64);
					ck_assert_uint_eq(na, nb);
					for (size_t k = 0; k < na; k++) {
						ck_assert_int_eq(a[k].price, b[k].price);
						ck_assert_int_eq(a[k].qty, b[k].qty);
						ck_assert_uint_eq(a[k].count, b[k].count);
					}
				}
			}
		}
	}
	/* The flow must have exercised matching, and (with small pools)
	 * recycling. */
	ck_assert_uint_gt(trades, nreq / 50);
	if (cap_orders < nreq / 4) {
		struct eng_core_stats st;
		eng_core_stats(f.b, &st);
		ck_assert_uint_eq(st.orders_unused, 0);
	}
	fprintf(stderr,
		"differential stp %u: %u requests, %zu trades, %zu resting at the "
		"end, %zu dropped (book full), %zu skipped (recycled)\n",
		stp, nreq, trades, refbook_live(rb), dropped, skipped);
	refbook_free(rb);
	free(ref.ev);
	free(ids);
	fx_close(&f);
}

START_TEST(differential_vs_reference)
{
	differential(SHM_BOOK_STP_NONE, 120000, 1u << 18, 1u << 19, 1u << 12,
		     0x9e3779b97f4a7c15ull);
}
END_TEST

START_TEST(differential_small_pools_recycling)
{
	differential(SHM_BOOK_STP_NONE, 60000, 1536, 1u << 12, 512, 0x1234567ull);
}
END_TEST

START_TEST(differential_stp_modes)
{
	differential(SHM_BOOK_STP_CANCEL_NEWEST, 25000, 1u << 16, 1u << 17, 1u << 12, 11);
	differential(SHM_BOOK_STP_CANCEL_OLDEST, 25000, 1u << 16, 1u << 17, 1u << 12, 12);
	differential(SHM_BOOK_STP_CANCEL_BOTH, 25000, 1u << 16, 1u << 17, 1u << 12, 13);
}
END_TEST

/* ------------------------------------------------------------------ */
/* A reader process and the seqcount                                    */

/* Reader side of the protocol in shm_book.h.  Returns 1 for a consistent
 * snapshot that passed every check, 0 for a snapshot that changed under
 * us (retry), -1 for a consistent snapshot that is wrong. */
static int reader_snapshot(const struct shm_book_view *v, uint32_t sym, char *why,
			   size_t len)
{
	const struct shm_book_sym_sh *s = shm_book_sym_at(v, sym);
	uint64_t s1;
	if (!shm_book_seq_begin(s, &s1)) /* [BK5] */
		return 0;
	int verdict = 1;
	int64_t best[2] = {0, 0};
	for (unsigned side = 0; side < 2 && verdict == 1; side++) {
		uint32_t li = load_acquire(&s->head[side]); /* [BK2] */
		int64_t last = 0;
		uint32_t steps = 0;
		while (li != SHM_BOOK_NIL && verdict == 1) {
			const struct shm_book_level_sh *l = shm_book_level_at(v, li);
			if (!l || ++steps > v->cap_levels) {
				verdict = -1;
				snprintf(why, len, "bad level index %u", li);
				break;
			}
			int64_t px = load_relaxed(&l->price);
			int64_t q = load_relaxed(&l->qty);
			uint32_t cnt = load_relaxed(&l->count);
			if (steps > 1 && (side ? px <= last : px >= last)) {
				verdict = -1;
				snprintf(why, len, "levels out of order");
			}
			if (steps == 1)
				best[side] = px;
			last = px;
			int64_t sum = 0;
			uint32_t n = 0;
			for (uint32_t oi = load_acquire(&l->head); oi != SHM_BOOK_NIL;) {
				const struct shm_book_order_sh *o =
					shm_book_order_at(v, oi);
				if (!o || ++n > v->cap_orders) {
					verdict = -1;
					snprintf(why, len, "bad order index");
					break;
				}
				sum += load_relaxed(&o->open);
				if (load_relaxed(&o->price) != px) {
					verdict = -1;
					snprintf(why, len, "order price != level price");
				}
				oi = load_acquire(&o->next);
			}
			if (verdict == 1 && (sum != q || n != cnt || cnt == 0)) {
				verdict = -1;
				snprintf(why, len, "level %u: qty %lld/%lld count %u/%u",
					 li, (long long)sum, (long long)q, n, cnt);
			}
			li = load_acquire(&l->next);
		}
	}
	if (verdict == 1 && best[0] && best[1] && best[0] >= best[1]) {
		verdict = -1;
		snprintf(why, len, "crossed book %lld/%lld", (long long)best[0],
			 (long long)best[1]);
	}
	/* An order status: open + executed + cancelled == amount, and the
	 * fills add up to executed. */
	for (uint32_t oi = 0; oi < 4 && verdict == 1; oi++) {
		const struct shm_book_order_sh *o = shm_book_order_at(
			v, (uint32_t)(s1 / 2 + oi * 97) % v->cap_orders);
		if (load_relaxed(&o->sym) != sym ||
		    load_relaxed(&o->state) == SHM_BOOK_ORDER_FREE)
			continue;
		uint64_t id = load_relaxed(&o->id);
		int64_t am = load_relaxed(&o->amount), op = load_relaxed(&o->open);
		int64_t ex = load_relaxed(&o->executed), ca = load_relaxed(&o->cancelled);
		if (op + ex + ca != am) {
			verdict = -1;
			snprintf(why, len, "order status sums");
		}
		int64_t fsum = 0;
		uint32_t k = 0, nf = load_relaxed(&o->nfills);
		for (uint32_t fi = load_acquire(&o->fill_head);
		     fi != SHM_BOOK_NIL && k <= nf; k++) {
			const struct shm_book_fill_sh *fl = shm_book_fill_at(v, fi);
			if (!fl) {
				verdict = -1;
				snprintf(why, len, "bad fill index");
				break;
			}
			if (load_relaxed(&fl->order_id) != id) {
				verdict = -1;
				snprintf(why, len, "fill of another order");
			}
			fsum += load_relaxed(&fl->qty);
			fi = load_acquire(&fl->next);
		}
		if (verdict == 1 && (k != nf || fsum != ex)) {
			verdict = -1;
			snprintf(why, len, "fills %u/%u sum %lld/%lld", k, nf,
				 (long long)fsum, (long long)ex);
		}
	}
	if (!shm_book_seq_stable(s, s1)) /* [BK6] */
		return 0;
	return verdict;
}

static int reader_main(const char *instance, unsigned long long until_ns)
{
	struct shm_region r;
	memset(&r, 0, sizeof(r));
	if (shm_region_attach(&r, instance, "book.0", SHM_KIND_BOOK, SHM_RDONLY) != 0)
		return 10;
	struct shm_book_view v;
	if (shm_book_view_init(&v, shm_region_body(&r), shm_region_body_size(&r)) != 0)
		return 11;
	unsigned long ok = 0, retry = 0;
	char why[160];
	while (test_now_ns() < until_ns) {
		if (load_acquire(&v.hdr->nsymbols) < 1) /* [BK8] */
			continue;
		int rc = reader_snapshot(&v, 0, why, sizeof(why));
		if (rc < 0) {
			fprintf(stderr, "reader: inconsistent snapshot: %s\n", why);
			return 1;
		}
		ok += rc == 1;
		retry += rc == 0;
	}
	shm_region_detach(&r);
	fprintf(stderr, "reader: %lu consistent snapshots, %lu retries\n", ok, retry);
	return ok > 0 ? 0 : 2;
}

START_TEST(reader_process_sees_consistent_snapshots)
{
	char inst[48];
	test_instance(inst, sizeof(inst));
	struct eng_core_cfg cfg = {
		.caps = {1, 256, 2048, 1u << 14}, .shard = 0, .nshards = 1};
	struct shm_region reg;
	ck_assert_int_eq(shm_book_region_create(&reg, inst, &cfg.caps, 0, 1, 0600), 0);
	struct eng_core *b;
	ck_assert_int_eq(eng_core_init(&b, shm_region_body(&reg),
				       shm_region_body_size(&reg), &cfg, NULL, NULL),
			 0);
	uint32_t sym;
	ck_assert_int_eq(eng_core_symbol_add(b, "X", 1, &sym), 0);
	eng_core_reclaim(b, UINT64_MAX); /* harshest: immediate reuse */
	shm_region_publish(&reg);
	unsigned long long until = test_now_ns() + 1500000000ull;
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0)
		_exit(reader_main(inst, until));
	struct rng g = {42};
	uint64_t ids[4096];
	size_t nids = 0;
	uint64_t n = 0;
	while (test_now_ns() < until + 100000000ull) {
		struct eng_req r;
		memset(&r, 0, sizeof(r));
		r.seq = ++n;
		r.time_ns = n;
		r.account = 1;
		r.sym = sym;
		r.side = (uint8_t)below(&g, 2);
		r.price = 1000 + (r.side ? 1 : -1) * (int64_t)below(&g, 20) -
			  (r.side ? 3 : -3);
		r.qty = 1 + (int64_t)below(&g, 20);
		unsigned what = (unsigned)below(&g, 10);
		uint64_t id;
		if (what < 5 || !nids) {
			r.tif = below(&g, 5) ? SHM_TIF_GTC : SHM_TIF_IOC;
			if (eng_core_submit(b, &r, &id) == 0)
				ids[nids++ % 4096] = id;
		} else if (what < 8) {
			r.order_id = ids[below(&g, nids < 4096 ? nids : 4096)];
			(void)!eng_core_cancel(b, &r);
		} else {
			r.order_id = ids[below(&g, nids < 4096 ? nids : 4096)];
			(void)!eng_core_modify(b, &r);
		}
	}
	int st = test_wait_pid(pid, 10000);
	char why[256];
	int chk = eng_core_check(b, why, sizeof(why));
	eng_core_destroy(b);
	shm_region_detach(&reg);
	ck_assert_int_eq(shm_region_unlink(inst, "book.0"), 0);
	test_cleanup_instance(inst);
	ck_assert_msg(chk == 0, "%s", why);
	ck_assert_msg(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0,
		      "reader failed (status %d)", st);
	ck_assert_uint_gt(n, 1000);
}
END_TEST

START_TEST(seqcount_even_between_requests)
{
	struct fx f;
	fx_open(&f, 64, 64, 256, SHM_BOOK_STP_NONE);
	const struct shm_book_sym_sh *s = shm_book_sym_at(eng_core_view(f.b), f.sym);
	uint64_t s0 = s->seq;
	ck_assert_uint_eq(s0 & 1, 0);
	uint64_t a = order(&f, SHM_SIDE_BUY, 100, 1, SHM_TIF_GTC);
	ck_assert_uint_eq(s->seq, s0 + 2);
	ck_assert_int_eq(cancel(&f, a), 0);
	ck_assert_uint_eq(s->seq, s0 + 4);
	/* A rejected request changes nothing, the seqcount included. */
	ck_assert_int_eq(cancel(&f, a), SHMEX_ENOTOPEN);
	ck_assert_uint_eq(s->seq, s0 + 4);
	fx_close(&f);
}
END_TEST

/* Quotes: published per request by default; when the writer batches,
 * only at eng_core_publish, once per round, and not at all when the round
 * left the book as it was. */
START_TEST(quotes_published_per_round_when_batched)
{
	struct fx f;
	fx_open(&f, 64, 64, 256, SHM_BOOK_STP_NONE);
	const struct shm_book_view *v = eng_core_view(f.b);
	const struct shm_book_quote_sh *q = &v->quotes[f.sym];
	(void)order(&f, SHM_SIDE_BUY, 100, 5, SHM_TIF_GTC);
	ck_assert_uint_eq(q->ndepth[SHM_SIDE_BUY], 1);
	ck_assert_int_eq(q->level[0][SHM_SIDE_BUY].price, 100);
	ck_assert_int_eq(q->level[0][SHM_SIDE_BUY].qty, 5);
	ck_assert_uint_eq(q->book_seq, v->symbols[f.sym].seq);
	uint64_t q0 = q->seq;
	ck_assert_uint_eq(q0 & 1, 0);

	eng_core_set_batched(f.b, true);
	uint64_t b1 = order(&f, SHM_SIDE_BUY, 101, 3, SHM_TIF_GTC);
	(void)order(&f, SHM_SIDE_SELL, 103, 2, SHM_TIF_GTC);
	ck_assert_uint_eq(q->seq, q0); /* not yet */
	ck_assert_int_eq(q->level[0][SHM_SIDE_BUY].price, 100);
	ck_assert_uint_eq(q->ndepth[SHM_SIDE_SELL], 0);
	fx_check(&f); /* a symbol waiting for its publication is not compared */
	eng_core_publish(f.b);
	ck_assert_uint_eq(q->seq, q0 + 2); /* one window for the round */
	ck_assert_int_eq(q->level[0][SHM_SIDE_BUY].price, 101);
	ck_assert_int_eq(q->level[1][SHM_SIDE_BUY].price, 100);
	ck_assert_int_eq(q->level[0][SHM_SIDE_SELL].price, 103);
	ck_assert_uint_eq(q->norders[SHM_SIDE_BUY], 2);
	fx_check(&f);
	/* Nothing pending, or a round that changed nothing visible. */
	eng_core_publish(f.b);
	ck_assert_uint_eq(q->seq, q0 + 2);
	uint64_t t = order(&f, SHM_SIDE_BUY, 99, 1, SHM_TIF_GTC);
	ck_assert_int_eq(cancel(&f, t), 0);
	eng_core_publish(f.b);
	ck_assert_uint_eq(q->seq, q0 + 2);
	fx_check(&f);
	/* A trade; turning batching off publishes what is pending. */
	(void)order(&f, SHM_SIDE_SELL, 101, 3, SHM_TIF_GTC);
	ck_assert_uint_eq(q->trades, 0);
	eng_core_set_batched(f.b, false);
	ck_assert_uint_eq(q->trades, 1);
	ck_assert_int_eq(q->last_price, 101);
	ck_assert_int_eq(q->level[0][SHM_SIDE_BUY].price, 100);
	ck_assert_uint_eq(q->ndepth[SHM_SIDE_BUY], 1);
	ck_assert_int_eq(q->level[1][SHM_SIDE_BUY].price, 0); /* cleared */
	ck_assert_int_eq(rec(&f, b1)->state, SHM_BOOK_ORDER_DONE);
	fx_check(&f);
	fx_close(&f);
}
END_TEST

/* Every order record's own seqcount: odd only inside a request that
 * changes it, bumped once per such request, even after every request
 * and after trimming. */
START_TEST(order_seqcount_per_request)
{
	struct fx f;
	fx_open(&f, 64, 64, 256, SHM_BOOK_STP_NONE);
	uint64_t a = order(&f, SHM_SIDE_BUY, 100, 5, SHM_TIF_GTC);
	const struct shm_book_order_sh *o = rec(&f, a);
	uint64_t s0 = o->seq;
	ck_assert_uint_eq(s0 & 1, 0);
	(void)order(&f, SHM_SIDE_SELL, 100, 2, SHM_TIF_GTC); /* a fill of a */
	ck_assert_uint_eq(o->seq, s0 + 2);
	(void)order(&f, SHM_SIDE_SELL, 105, 2, SHM_TIF_GTC); /* not a */
	ck_assert_uint_eq(o->seq, s0 + 2);
	ck_assert_int_eq(modify(&f, a, 100, 1), 0);
	ck_assert_uint_eq(o->seq, s0 + 4);
	ck_assert_int_eq(cancel(&f, a), 0);
	ck_assert_uint_eq(o->seq, s0 + 6);
	ck_assert_int_eq(cancel(&f, a), SHMEX_ENOTOPEN); /* rejected: no change */
	ck_assert_uint_eq(o->seq, s0 + 6);
	ck_assert_uint_gt(eng_core_trim(f.b, 0), 0); /* recycles a */
	ck_assert_uint_eq(o->seq, s0 + 8);
	fx_check(&f);
	fx_close(&f);
}
END_TEST

START_TEST(layout_validation)
{
	struct shm_book_caps caps = {2, 8, 16, 32};
	size_t bytes = shm_book_body_bytes(&caps);
	ck_assert_uint_eq(bytes, 256 + 2 * 128 + 8 * 64 + 16 * 128 + 32 * 64 + 2 * 640);
	char *mem = aligned_alloc(64, bytes);
	struct shm_book_hdr_sh *h = (struct shm_book_hdr_sh *)mem;
	memset(mem, 0, bytes);
	ck_assert_int_eq(shm_book_layout(h, &caps, 1, 2, 0), 0);
	struct shm_book_view v;
	ck_assert_int_eq(shm_book_view_init(&v, mem, bytes), 0);
	ck_assert_ptr_null(shm_book_order_at(&v, 16));
	ck_assert_ptr_null(shm_book_level_at(&v, SHM_BOOK_NIL));
	ck_assert_ptr_nonnull(shm_book_fill_at(&v, 31));
	ck_assert_int_eq(shm_book_view_init(&v, mem, bytes - 1), SHMEX_ETOOSHORT);
	h->off_orders += 64;
	ck_assert_int_eq(shm_book_validate(mem, bytes), SHMEX_EBADLAYOUT);
	h->off_orders -= 64;
	h->off_quotes -= 640; /* a quote pool over the fills */
	ck_assert_int_eq(shm_book_validate(mem, bytes), SHMEX_EBADLAYOUT);
	h->off_quotes += 640;
	ck_assert_ptr_eq(v.quotes,
			 (void *)(mem + 256 + 2 * 128 + 8 * 64 + 16 * 128 + 32 * 64));
	ck_assert_ptr_null(shm_book_quote_at(&v, 2));
	h->cap_fills = 1u << 31;
	ck_assert_int_eq(shm_book_validate(mem, bytes), SHMEX_EBADLAYOUT);
	h->cap_fills = 32;
	h->magic ^= 1;
	ck_assert_int_eq(shm_book_validate(mem, bytes), SHMEX_EBADLAYOUT);
	h->magic ^= 1;
	h->shard = 2;
	ck_assert_int_eq(shm_book_validate(mem, bytes), SHMEX_EBADLAYOUT);
	caps.orders = 0;
	ck_assert_int_eq(shm_book_layout(h, &caps, 0, 1, 0), -EINVAL);
	free(mem);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Snapshots of the core                                               */

/* n random orders, cancels and modifies on X and Y; ids kept in ids. */
static void random_flow(struct fx *f, uint32_t sym2, struct rng *g, uint32_t n,
			uint64_t *ids, size_t *nids, size_t cap)
{
	for (uint32_t k = 0; k < n; k++) {
		struct eng_req r = req(f);
		r.sym = below(g, 3) ? f->sym : sym2;
		r.account = 1 + below(g, 3);
		r.side = (uint8_t)below(g, 2);
		r.price = 1000 + (r.side ? 1 : -1) * (int64_t)below(g, 12) -
			  (r.side ? 4 : -4);
		r.qty = 1 + (int64_t)below(g, 40);
		unsigned what = (unsigned)below(g, 100);
		/* Cancels and modifies aim at the newest orders, most of which
		 * still rest. */
		size_t recent = *nids < 32 ? *nids : 32;
		if (what < 45 || *nids == 0) {
			r.tif = what < 38 ? SHM_TIF_GTC : SHM_TIF_IOC;
			uint64_t id;
			if (eng_core_submit(f->b, &r, &id) == 0 && *nids < cap)
				ids[(*nids)++] = id;
		} else if (what < 85) {
			r.order_id = ids[*nids - 1 - below(g, recent)];
			int rc =
				eng_core_cancel(f->b, &r); /* rejections are part of it */
			(void)rc;
		} else {
			r.order_id = ids[*nids - 1 - below(g, recent)];
			r.price = 1000 + (int64_t)below(g, 24) - 12;
			r.qty = (int64_t)below(g, 50);
			int rc = eng_core_modify(f->b, &r);
			(void)rc;
		}
		eng_core_reclaim(f->b, UINT64_MAX);
	}
}

struct sbuf {
	unsigned char *p;
	size_t n, cap;
};

static int sbuf_put(void *ctx, const void *p, size_t n)
{
	struct sbuf *b = ctx;
	if (b->n + n > b->cap) {
		b->cap = 2 * (b->n + n);
		b->p = realloc(b->p, b->cap);
		ck_assert_ptr_nonnull(b->p);
	}
	memcpy(b->p + b->n, p, n);
	b->n += n;
	return 0;
}

/* A second core on a copy of f's body, without symbols (as recovery makes
 * it): eng_core_init, then the saved body copied over it. */
static void fx_twin(struct fx *t, const struct fx *f, uint32_t levels, uint32_t orders,
		    uint32_t fills)
{
	memset(t, 0, sizeof(*t));
	struct eng_core_cfg cfg = {
		.caps = {.symbols = 4,
			 .levels = levels,
			 .orders = orders,
			 .fills = fills},
		.nshards = 1,
	};
	size_t bytes = eng_core_bytes(&cfg);
	t->mem = aligned_alloc(64, (bytes + 63) & ~(size_t)63);
	ck_assert_ptr_nonnull(t->mem);
	ck_assert_int_eq(eng_core_init(&t->b, t->mem, bytes, &cfg, log_event, &t->log),
			 0);
	memcpy(t->mem, f->mem, bytes);
	t->sym = f->sym;
	t->seq = f->seq;
}

/* A book of small pools (64 levels, 256 orders, 512 fills) with two
 * symbols after n requests of random_flow from `seed`, saved into *s;
 * returns the second symbol's index. */
static uint32_t fx_saved(struct fx *a, uint64_t seed, uint32_t n, struct sbuf *s)
{
	fx_open(a, 64, 256, 512, SHM_BOOK_STP_NONE);
	uint32_t sym2;
	ck_assert_int_eq(eng_core_symbol_add(a->b, "Y", 1, &sym2), 0);
	uint64_t *ids = calloc(n, sizeof(*ids));
	ck_assert_ptr_nonnull(ids);
	size_t nids = 0;
	struct rng g = {seed};
	random_flow(a, sym2, &g, n, ids, &nids, n);
	free(ids);
	*s = (struct sbuf){0};
	ck_assert_int_eq(eng_core_save(a->b, sbuf_put, s), 0);
	return sym2;
}

/*
 * Saved and loaded into a twin, the core goes on exactly as the original:
 * the same events for the same requests and, at the end, the same book
 * body byte for byte (small pools, so that every free list, FIFO and
 * recycled record is in play).
 */
/* A book whose bytes come with a seqcount left odd (a damaged snapshot: a
 * snapshot is taken between requests, so every window is closed) loads
 * with every window closed, the quotes readable: an odd count that stayed
 * would answer every reader "busy" for good. */
START_TEST(snapshot_with_open_windows_loads_closed)
{
	enum { LV = 64, OR = 256, FI = 512 };
	struct fx a, b;
	struct sbuf s;
	uint32_t sym2 = fx_saved(&a, 7, 2000, &s);
	fx_twin(&b, &a, LV, OR, FI);
	const struct shm_book_view *v = eng_core_view(b.b);
	struct shm_book_quote_sh *q0 = (struct shm_book_quote_sh *)&v->quotes[a.sym];
	struct shm_book_quote_sh *q1 = (struct shm_book_quote_sh *)&v->quotes[sym2];
	struct shm_book_order_sh *o = (struct shm_book_order_sh *)&v->orders[0];
	struct shm_book_sym_sh *y = (struct shm_book_sym_sh *)&v->symbols[sym2];
	q0->seq |= 1;
	q1->seq |= 1;
	o->seq |= 1;
	y->seq |= 1;
	ck_assert_int_eq(eng_core_load(b.b, s.p, s.n, NULL, 0), 0);
	ck_assert_uint_eq(q0->seq & 1, 0);
	ck_assert_uint_eq(q1->seq & 1, 0);
	ck_assert_uint_eq(o->seq & 1, 0);
	ck_assert_uint_eq(y->seq & 1, 0);
	fx_check(&b);
	free(s.p);
	fx_close(&b);
	fx_close(&a);
}
END_TEST

/* A snapshot vouches only for what is below its watermarks: the bytes of
 * a symbol slot above its symbol count and of an order slot above its
 * used mark (left in a forged or damaged file) are not trusted.  A symbol
 * added there starts empty with a closed quote window; an order taken
 * there closes its window at the end of its request. */
START_TEST(bytes_above_the_watermarks_are_not_trusted)
{
	enum { LV = 64, OR = 256, FI = 512 };
	struct fx a, b;
	struct sbuf s;
	(void)fx_saved(&a, 3, 40, &s);
	struct eng_core_stats st;
	eng_core_stats(a.b, &st);
	ck_assert_uint_gt(st.orders_unused, 0);
	uint32_t next_slot = OR - st.orders_unused;
	fx_twin(&b, &a, LV, OR, FI);
	const struct shm_book_view *v = eng_core_view(b.b);
	struct shm_book_sym_sh *z = (struct shm_book_sym_sh *)&v->symbols[2];
	struct shm_book_quote_sh *qz = (struct shm_book_quote_sh *)&v->quotes[2];
	struct shm_book_order_sh *o = (struct shm_book_order_sh *)&v->orders[next_slot];
	z->seq = 1;
	z->open_qty[SHM_SIDE_BUY] = INT64_MAX - 5;
	z->norders[SHM_SIDE_BUY] = 7;
	qz->seq = 1;
	qz->nlevels[SHM_SIDE_BUY] = 3;
	o->seq = 41;
	ck_assert_int_eq(eng_core_load(b.b, s.p, s.n, NULL, 0), 0);
	fx_check(&b);

	uint32_t zi;
	ck_assert_int_eq(eng_core_symbol_add(b.b, "Z", 1, &zi), 0);
	ck_assert_uint_eq(zi, 2);
	ck_assert_uint_eq(z->seq & 1, 0);
	ck_assert_uint_eq(qz->seq & 1, 0);
	ck_assert_int_eq(z->open_qty[SHM_SIDE_BUY], 0);
	b.sym = zi;
	uint64_t id = order(&b, SHM_SIDE_BUY, 100, 10, SHM_TIF_GTC);
	ck_assert_uint_eq(shm_order_slot(id, 1, OR), next_slot);
	ck_assert_uint_eq(o->seq & 1, 0);
	fx_check(&b);
	free(s.p);
	fx_close(&b);
	fx_close(&a);
}
END_TEST

START_TEST(snapshot_round_trip_continues_identically)
{
	enum { LV = 64, OR = 256, FI = 512, N1 = 6000, N2 = 6000 };
	struct fx a, b;
	fx_open(&a, LV, OR, FI, SHM_BOOK_STP_NONE);
	uint32_t sym2;
	ck_assert_int_eq(eng_core_symbol_add(a.b, "Y", 1, &sym2), 0);
	static uint64_t ids[N1 + N2];
	size_t nids = 0;
	struct rng g = {42};
	random_flow(&a, sym2, &g, N1, ids, &nids, N1 + N2);
	struct sbuf s = {0};
	ck_assert_int_eq(eng_core_save(a.b, sbuf_put, &s), 0);
	fx_twin(&b, &a, LV, OR, FI);
	ck_assert_int_eq(eng_core_load(b.b, s.p, s.n, NULL, 0), 0);
	fx_check(&b);
	struct eng_core_stats sa, sb;
	eng_core_stats(a.b, &sa);
	eng_core_stats(b.b, &sb);
	ck_assert_mem_eq(&sa, &sb, sizeof(sa));
	ck_assert_uint_eq(sa.orders_unused, 0); /* the pool has wrapped */
	/* Every list is in play. */
	ck_assert_uint_gt(sa.orders_done, 0);
	ck_assert_uint_gt(sa.levels_free, 0);

	a.log.n = 0;
	struct rng ga = g, gb = g;
	size_t na = nids, nb = nids;
	static uint64_t idb[N1 + N2];
	memcpy(idb, ids, sizeof(ids));
	random_flow(&a, sym2, &ga, N2, ids, &na, N1 + N2);
	random_flow(&b, sym2, &gb, N2, idb, &nb, N1 + N2);
	ck_assert_uint_eq(a.log.n, b.log.n);
	ck_assert_mem_eq(a.log.ev, b.log.ev, a.log.n * sizeof(a.log.ev[0]));
	ck_assert_mem_eq(a.mem, b.mem,
			 eng_core_bytes(&(struct eng_core_cfg){.caps = {4, LV, OR, FI},
							       .nshards = 1}));
	free(s.p);
	fx_close(&b);
	fx_close(&a);
}
END_TEST

/* A cut short or inconsistent saved core is refused and changes nothing:
 * the twin can still load the good one afterwards. */
START_TEST(snapshot_load_refuses_bad_bytes)
{
	enum { LV = 64, OR = 256, FI = 512 };
	struct fx a, b;
	struct sbuf s;
	fx_saved(&a, 7, 3000, &s);
	fx_twin(&b, &a, LV, OR, FI);
	size_t cuts[] = {0, 10, s.n / 2, s.n - 1};
	for (size_t i = 0; i < sizeof(cuts) / sizeof(cuts[0]); i++)
		ck_assert_int_eq(eng_core_load(b.b, s.p, cuts[i], NULL, 0),
				 SHMEX_EJCORRUPT);
	unsigned char *bad = malloc(s.n + 4);
	memcpy(bad, s.p, s.n);
	ck_assert_int_eq(eng_core_load(b.b, bad, s.n + 4, NULL, 0), SHMEX_EJCORRUPT);
	/* Counters past the capacities: the first words are the symbol count
	 * and the level free count. */
	uint32_t huge = 1u << 30;
	for (size_t off = 0; off < 11 * sizeof(uint32_t); off += sizeof(uint32_t)) {
		memcpy(bad, s.p, s.n);
		memcpy(bad + off, &huge, sizeof(huge));
		ck_assert_msg(eng_core_load(b.b, bad, s.n, NULL, 0) == SHMEX_EJCORRUPT,
			      "counter at byte %zu", off);
	}
	free(bad);
	ck_assert_int_eq(eng_core_load(b.b, s.p, s.n, NULL, 0), 0);
	fx_check(&b);
	free(s.p);
	fx_close(&b);
	fx_close(&a);
}
END_TEST

/* The saved core's counters (the first words of eng_core_save's output,
 * in the order of struct core_snap_hdr in eng_core.c). */
enum {
	SNAP_ORD_UNUSED = 5,
	SNAP_ORD_DONE = 6,
	SNAP_FILL_NFREE = 7,
	SNAP_HDR_BYTES = 12 * 4 + 5 * 8 /* the whole struct */
};

static uint32_t snap_word(const struct sbuf *s, unsigned k)
{
	uint32_t w;
	memcpy(&w, s->p + k * sizeof(w), sizeof(w));
	return w;
}

/* Loads `bytes` (a copy of the good snapshot, forged) into a fresh twin
 * of `a` whose body is forged by `body` (NULL: none); the load must be
 * refused with a reason. */
static void expect_forgery_refused(const struct fx *a, const struct sbuf *good,
				   const unsigned char *bytes,
				   void (*body)(struct shm_book_view *v),
				   const char *what)
{
	enum { LV = 64, OR = 256, FI = 512 };
	struct fx t;
	fx_twin(&t, a, LV, OR, FI);
	if (body)
		body((struct shm_book_view *)eng_core_view(t.b));
	char why[256] = "";
	int rc = eng_core_load(t.b, bytes, good->n, why, sizeof(why));
	ck_assert_msg(rc == SHMEX_EJCORRUPT, "%s: loaded (%d)", what, rc);
	ck_assert_msg(why[0] != 0, "%s: refused without a reason", what);
	fx_discard(&t);
}

/* Order records in a queue of at least two. */
static bool two_queued(const struct shm_book_view *v, uint32_t *first, uint32_t *second)
{
	for (uint32_t li = 0; li < v->cap_levels; li++) {
		const struct shm_book_level_sh *l = &v->levels[li];
		if (l->state == SHM_BOOK_LEVEL_LIVE && l->count >= 2) {
			*first = l->head;
			*second = v->orders[l->head].next;
			return true;
		}
	}
	return false;
}

static void forge_cyclic_queue(struct shm_book_view *v)
{
	uint32_t x, y;
	ck_assert(two_queued(v, &x, &y));
	struct shm_book_level_sh *l =
		(struct shm_book_level_sh *)&v->levels[v->orders[x].level];
	/* The tail links back to the head: match would walk it for ever. */
	((struct shm_book_order_sh *)&v->orders[l->tail])->next = x;
}

/* The first record below the watermark in `state`. */
static struct shm_book_order_sh *order_in(struct shm_book_view *v, unsigned state)
{
	for (uint32_t oi = 0; oi < v->cap_orders; oi++)
		if (v->orders[oi].state == state)
			return (struct shm_book_order_sh *)&v->orders[oi];
	ck_abort_msg("no order in state %u", state);
	return NULL;
}

static void forge_done_tif(struct shm_book_view *v)
{
	order_in(v, SHM_BOOK_ORDER_DONE)->tif = 9;
}

static void forge_free_generation(struct shm_book_view *v)
{
	/* Its next use would wrap to generation 0: an id issued before. */
	((struct shm_book_order_sh *)&v->orders[0])->gen = UINT64_MAX;
}

static void forge_live_id(struct shm_book_view *v)
{
	struct shm_book_order_sh *o = order_in(v, SHM_BOOK_ORDER_LIVE);
	o->id += v->nshards; /* the next slot's id */
}

static void forge_live_cancelled(struct shm_book_view *v)
{
	/* The sum still adds up; a live order has no cancelled part. */
	struct shm_book_order_sh *o = order_in(v, SHM_BOOK_ORDER_LIVE);
	o->cancelled += INT64_MAX / 4;
	o->amount += INT64_MAX / 4;
}

static void forge_future_event(struct shm_book_view *v)
{
	order_in(v, SHM_BOOK_ORDER_DONE)->mod_event = UINT64_MAX / 2;
}

static void forge_lower_generation(struct shm_book_view *v)
{
	/* A finished order's generation taken back by one, its id and its
	 * fills' with it: the next order there would get an id issued
	 * before. */
	for (uint32_t oi = 0; oi < v->cap_orders; oi++) {
		struct shm_book_order_sh *o = (struct shm_book_order_sh *)&v->orders[oi];
		if (o->gen == 0 || o->state != SHM_BOOK_ORDER_DONE)
			continue;
		o->gen--;
		o->id = shm_order_id_make(v->shard, v->nshards, oi, o->gen,
					  v->cap_orders);
		for (uint32_t fi = o->fill_head; fi != SHM_BOOK_NIL;
		     fi = v->fills[fi].next)
			((struct shm_book_fill_sh *)&v->fills[fi])->order_id = o->id;
		return;
	}
	ck_abort_msg("no slot to forge");
}

static void forge_twin_symbol(struct shm_book_view *v)
{
	memcpy(((struct shm_book_sym_sh *)&v->symbols[1])->name, v->symbols[0].name, 16);
}

/* Order records with fills, one live. */
static uint32_t order_with_fills(const struct shm_book_view *v, uint32_t below, bool live)
{
	for (uint32_t oi = 0; oi < below; oi++)
		if (v->orders[oi].nfills > 0 &&
		    (v->orders[oi].state == SHM_BOOK_ORDER_LIVE) == live)
			return oi;
	return SHM_BOOK_NIL;
}

/* A snapshot whose checksums are right but whose structure no core could
 * have written is refused at load with what is wrong, and a twin loads
 * the good one: a fill on the free stack that an order still owns (the
 * next trade would write over it), a done-FIFO entry naming a live order
 * (recycling would free a resting order), a queue that cycles (matching
 * would never end). */
START_TEST(snapshot_load_refuses_forged_structure)
{
	enum { LV = 64, OR = 256, FI = 512 };
	struct fx a, b;
	struct sbuf s;
	/* As in the round trip: every list is in play. */
	fx_saved(&a, 42, 6000, &s);
	const struct shm_book_view *va = eng_core_view(a.b);
	uint32_t ord_unused = snap_word(&s, SNAP_ORD_UNUSED);
	uint32_t ndone = snap_word(&s, SNAP_ORD_DONE);
	uint32_t fill_nfree = snap_word(&s, SNAP_FILL_NFREE);
	ck_assert_uint_gt(fill_nfree, 0);
	ck_assert_uint_gt(ndone, 0);
	/* The tail of the saved core: ... done FIFO, fill free stack, then
	 * ORDER_FILLS indexes per used order slot. */
	size_t ofills = (size_t)ord_unused * 4 * sizeof(uint32_t);
	size_t fill_free_at = s.n - ofills - (size_t)fill_nfree * sizeof(uint32_t);
	size_t done_at = fill_free_at - (size_t)ndone * sizeof(uint32_t);
	unsigned char *bad = malloc(s.n);
	ck_assert_ptr_nonnull(bad);

	uint32_t owner = order_with_fills(va, ord_unused, false);
	ck_assert_uint_ne(owner, SHM_BOOK_NIL);
	uint32_t owned = va->orders[owner].fill_head;
	memcpy(bad, s.p, s.n);
	memcpy(bad + fill_free_at, &owned, sizeof(owned));
	expect_forgery_refused(&a, &s, bad, NULL, "owned fill on the free stack");

	uint32_t x, y;
	ck_assert(two_queued(va, &x, &y));
	memcpy(bad, s.p, s.n);
	memcpy(bad + done_at, &x, sizeof(x));
	expect_forgery_refused(&a, &s, bad, NULL, "live order in the done FIFO");

	expect_forgery_refused(&a, &s, s.p, forge_cyclic_queue, "cyclic queue");
	expect_forgery_refused(&a, &s, s.p, forge_done_tif, "done order with tif 9");
	expect_forgery_refused(&a, &s, s.p, forge_free_generation,
			       "slot past the last generation");
	expect_forgery_refused(&a, &s, s.p, forge_live_id,
			       "order with another slot's id");
	expect_forgery_refused(&a, &s, s.p, forge_live_cancelled,
			       "live order with a cancelled part");
	expect_forgery_refused(&a, &s, s.p, forge_future_event,
			       "order changed by an event to come");
	expect_forgery_refused(&a, &s, s.p, forge_lower_generation,
			       "slot with its generation taken back");
	expect_forgery_refused(&a, &s, s.p, forge_twin_symbol, "two symbols of one name");

	/* The first symbol's worst bid key made negative (a negative price):
	 * its price array follows the counters and its two side counts. */
	size_t bids_at = SNAP_HDR_BYTES + 2 * sizeof(uint32_t);
	int64_t key;
	memcpy(&key, s.p + bids_at, sizeof(key));
	ck_assert_uint_gt(snap_word(&s, SNAP_HDR_BYTES / sizeof(uint32_t)), 0);
	ck_assert_int_gt(key, 0);
	key = -key;
	memcpy(bad, s.p, s.n);
	memcpy(bad + bids_at, &key, sizeof(key));
	expect_forgery_refused(&a, &s, bad, NULL, "negative bid price");

	fx_twin(&b, &a, LV, OR, FI);
	ck_assert_int_eq(eng_core_load(b.b, s.p, s.n, NULL, 0), 0);
	fx_check(&b);
	free(bad);
	free(s.p);
	fx_close(&b);
	fx_close(&a);
}
END_TEST

/* A fixture of any shape (shard of nshards, capacities, STP mode), with
 * symbol X or, for a twin to load into, none. */
static void fx_open_cfg(struct fx *f, const struct eng_core_cfg *cfg, bool symbol)
{
	memset(f, 0, sizeof(*f));
	size_t bytes = eng_core_bytes(cfg);
	ck_assert_uint_gt(bytes, 0);
	f->mem = aligned_alloc(64, (bytes + 63) & ~(size_t)63);
	ck_assert_ptr_nonnull(f->mem);
	ck_assert_int_eq(eng_core_init(&f->b, f->mem, bytes, cfg, log_event, &f->log), 0);
	if (symbol)
		ck_assert_int_eq(eng_core_symbol_add(f->b, "X", 1, &f->sym), 0);
}

/* One request of every kind the core takes, or a trim, a recycle, a
 * change of batching; reclamation lags the epoch at random. */
static void any_step(struct fx *f, struct rng *g, uint32_t nsym, uint64_t *ids,
		     size_t *nids, size_t cap, bool *batched)
{
	struct eng_req r = req(f);
	r.sym = (uint32_t)below(g, nsym);
	r.account = 1 + below(g, 3);
	r.side = (uint8_t)below(g, 2);
	r.price = 100 + (r.side ? 1 : -1) * (int64_t)below(g, 8) - (r.side ? 3 : -3);
	r.qty = 1 + (int64_t)below(g, 30);
	unsigned what = (unsigned)below(g, 100);
	size_t recent = *nids < 40 ? *nids : 40;
	if (what < 45 || *nids == 0) {
		unsigned t = (unsigned)below(g, 10);
		r.tif = t < 6 ? SHM_TIF_GTC : t < 8 ? SHM_TIF_IOC : SHM_TIF_FOK;
		if (below(g, 8) == 0)
			r.flags = ENG_REQ_POST_ONLY;
		if (below(g, 80) == 0)
			r.qty = 1000; /* sweeps, or is refused for want of records */
		uint64_t id;
		if (eng_core_submit(f->b, &r, &id) == 0)
			ids[(*nids)++ % cap] = id;
	} else if (what < 78) {
		r.order_id = ids[(*nids - 1 - below(g, recent)) % cap];
		(void)!eng_core_cancel(f->b, &r);
	} else if (what < 95) {
		r.order_id = ids[(*nids - 1 - below(g, recent)) % cap];
		const struct shm_book_order_sh *o = eng_core_order(f->b, r.order_id);
		int64_t px = o ? o->price : 100, open = o ? o->open : 5;
		switch (below(g, 4)) {
		case 0: /* to zero */
			r.price = px;
			r.qty = 0;
			break;
		case 1: /* smaller, keeps its place */
			r.price = px;
			r.qty = open > 1 ? 1 + (int64_t)below(g, (uint64_t)open) : 1;
			break;
		case 2: /* larger, to the back */
			r.price = px;
			r.qty = open + 1 + (int64_t)below(g, 10);
			break;
		default: /* another price: may trade */
			r.price = 92 + (int64_t)below(g, 16);
			break;
		}
		(void)!eng_core_modify(f->b, &r);
	} else if (what < 97) {
		(void)eng_core_trim(f->b, (uint32_t)below(g, 20));
	} else if (what < 98) {
		(void)eng_core_recycle(f->b, below(g, 5));
	} else {
		*batched = !*batched;
		eng_core_set_batched(f->b, *batched);
	}
	if (below(g, 10) == 0)
		f->epoch++;
	if (below(g, 5) == 0)
		eng_core_reclaim(f->b, f->epoch > 2 ? f->epoch - below(g, 3) : 0);
	if (*batched && below(g, 3) == 0)
		eng_core_publish(f->b);
}

/*
 * The load check refuses no book a core wrote: shards of several shapes,
 * order capacities that are not powers of two, every STP mode, every kind
 * of request (FOK kills, IOC remainders, post-only refusals, modifies of
 * every kind, cancels, trims, recycles, book-full refusals, batched and
 * not, reclamation lagging), saved and loaded every 97 steps; the book is
 * checked after every step and each loaded twin too.
 */
START_TEST(snapshots_of_every_shape_load)
{
	static const struct {
		uint32_t nshards, shard, orders, levels, fills;
	} shapes[] = {
		{1, 0, 256, 64, 512},
		{3, 2, 100, 40, 300},
		{4, 3, 97, 33, 257},
		{7, 6, 300, 100, 1000},
	};
	unsigned loads = 0;
	for (unsigned si = 0; si < sizeof(shapes) / sizeof(shapes[0]); si++) {
		for (uint32_t stp = SHM_BOOK_STP_NONE; stp <= SHM_BOOK_STP_CANCEL_BOTH;
		     stp++) {
			struct eng_core_cfg cfg = {
				.caps = {.symbols = 4,
					 .levels = shapes[si].levels,
					 .orders = shapes[si].orders,
					 .fills = shapes[si].fills},
				.shard = shapes[si].shard,
				.nshards = shapes[si].nshards,
				.stp_mode = stp,
			};
			struct fx a;
			fx_open_cfg(&a, &cfg, true);
			a.epoch = 1;
			uint32_t nsym = 1, idx;
			static uint64_t ids[512];
			size_t nids = 0;
			bool batched = false;
			struct rng g = {si * 4 + stp + 1};
			for (unsigned k = 1; k <= 1500; k++) {
				if (k == 500 || k == 1000) {
					char name[2] = {(char)('A' + nsym), 0};
					ck_assert_int_eq(
						eng_core_symbol_add(a.b, name, 1, &idx),
						0);
					nsym++;
				}
				any_step(&a, &g, nsym, ids, &nids, 512, &batched);
				fx_check(&a);
				if (k % 97)
					continue;
				struct sbuf s = {0};
				ck_assert_int_eq(eng_core_save(a.b, sbuf_put, &s), 0);
				struct fx t;
				fx_open_cfg(&t, &cfg, false);
				memcpy(t.mem, a.mem, eng_core_bytes(&cfg));
				char why[256] = "";
				int rc = eng_core_load(t.b, s.p, s.n, why, sizeof(why));
				ck_assert_msg(
					rc == 0,
					"shape %u stp %u step %u: a good snapshot refused (%d): %s",
					si, stp, k, rc, why);
				fx_check(&t);
				loads++;
				free(s.p);
				fx_close(&t);
			}
			/* Records were recycled: every list was in play. */
			struct eng_core_stats st;
			eng_core_stats(a.b, &st);
			ck_assert_uint_gt(st.orders_recycled, 0);
			fx_close(&a);
		}
	}
	ck_assert_uint_eq(loads, 4 * 4 * 15);
}
END_TEST

static Suite *eng_core_suite(void)
{
	Suite *s = suite_create("eng_core");
	TCase *tc = tcase_create("rules");
	tcase_add_test(tc, handout_example);
	tcase_add_test(tc, price_time_priority);
	tcase_add_test(tc, partial_fills_keep_priority);
	tcase_add_test(tc, cancel_after_partial_fill);
	tcase_add_test(tc, ioc_remainder_never_rests);
	tcase_add_test(tc, fok_exact_boundary);
	tcase_add_test(tc, modify_priority_rules);
	tcase_add_test(tc, self_trade_prevention);
	tcase_add_test(tc, bad_requests_change_nothing);
	tcase_add_test(tc, post_only_rejected_when_it_would_cross);
	tcase_add_test(tc, symbols_and_ids);
	tcase_add_test(tc, seqcount_even_between_requests);
	tcase_add_test(tc, layout_validation);
	tcase_add_test(tc, quotes_published_per_round_when_batched);
	tcase_add_test(tc, order_seqcount_per_request);
	suite_add_tcase(s, tc);

	tc = tcase_create("capacity");
	tcase_add_test(tc, order_pool_full_then_recycled_after_reclaim);
	tcase_add_test(tc, trim_keeps_a_window_and_reuses_the_youngest_first);
	tcase_add_test(tc, level_pool_full_then_recovered);
	tcase_add_test(tc, retired_level_not_reused_before_reclaim);
	tcase_add_test(tc, fill_pool_checked_before_matching);
	suite_add_tcase(s, tc);

	tc = tcase_create("differential");
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, differential_vs_reference);
	tcase_add_test(tc, differential_small_pools_recycling);
	tcase_add_test(tc, differential_stp_modes);
	suite_add_tcase(s, tc);

	tc = tcase_create("snapshots");
	tcase_add_test(tc, snapshot_round_trip_continues_identically);
	tcase_add_test(tc, snapshot_with_open_windows_loads_closed);
	tcase_add_test(tc, snapshot_load_refuses_bad_bytes);
	tcase_add_test(tc, snapshot_load_refuses_forged_structure);
	tcase_add_test(tc, bytes_above_the_watermarks_are_not_trusted);
	tcase_add_test(tc, snapshots_of_every_shape_load);
	suite_add_tcase(s, tc);

	tc = tcase_create("readers");
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, reader_process_sees_consistent_snapshots);
	suite_add_tcase(s, tc);
	return s;
}

SHMEX_TEST_MAIN(eng_core_suite)
