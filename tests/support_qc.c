/*
 * qc: the QuantCup 2011 API over eng_core (contract in tests/qc.h).
 *
 * Every name (trader, symbol) is at most STRINGLEN bytes, packed into a
 * uint64 and looked up in a small open-addressing table; a one-entry cache
 * remembers the last symbol (the contest feed has one).  The event callback
 * turns each FILL into the two execution reports, buyer first.
 */
#include "tests/qc.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "engine/eng_core.h"
#include "shm/shm_msg.h"

#define QC_NAMES 1024 /* traders or symbols; the table has twice that */

struct qc_names {
	uint64_t key[2 * QC_NAMES]; /* packed name, 0 = empty */
	uint32_t val[2 * QC_NAMES];
	char name[QC_NAMES + 1][STRINGLEN]; /* by value */
	uint32_t n;
};

struct qc {
	void *mem;
	struct eng_core *b;
	struct eng_req req;
	uint64_t *ids; /* QuantCup id -> shmex id (0: refused) */
	uint32_t nids, max_ids;
	uint32_t window, round;
	uint64_t last_sym_key;
	uint32_t last_sym;
	qc_exec_fn fn;
	void *ctx;
	struct qc_names traders; /* value = account */
	struct qc_names symbols; /* value = symbol index + 1 */
};

static uint64_t pack(const char s[STRINGLEN])
{
	uint64_t k = 0;
	for (int i = 0; i < STRINGLEN && s[i]; i++)
		k |= (uint64_t)(unsigned char)s[i] << (8 * i);
	return k | UINT64_C(1) << 63; /* never 0, even for "" */
}

/* The slot of key (found or empty). */
static uint32_t names_slot(const struct qc_names *t, uint64_t key)
{
	uint32_t i = (uint32_t)((key * UINT64_C(0x9e3779b97f4a7c15)) >> 53) &
		     (2 * QC_NAMES - 1);
	while (t->key[i] && t->key[i] != key)
		i = (i + 1) & (2 * QC_NAMES - 1);
	return i;
}

static void report(struct qc *q, uint64_t account, uint8_t side, uint32_t sym,
		   int64_t price, int64_t qty)
{
	t_execution x;
	memcpy(x.symbol, q->symbols.name[sym + 1], STRINGLEN);
	memcpy(x.trader, q->traders.name[account], STRINGLEN);
	x.side = side == SHM_SIDE_BUY ? 0 : 1;
	x.price = (t_price)price;
	x.size = (t_size)qty;
	q->fn(q->ctx, &x);
}

static void on_event(void *ctx, const struct eng_event *ev)
{
	struct qc *q = ctx;
	if (ev->type != ENG_EV_FILL || !q->fn)
		return;
	bool taker_buys = ev->side == SHM_SIDE_BUY;
	uint64_t buyer = taker_buys ? ev->account : ev->maker_account;
	uint64_t seller = taker_buys ? ev->maker_account : ev->account;
	report(q, buyer, SHM_SIDE_BUY, ev->sym, ev->price, ev->qty);
	report(q, seller, SHM_SIDE_SELL, ev->sym, ev->price, ev->qty);
}

int qc_open(struct qc **out, const struct qc_cfg *cfg, qc_exec_fn fn, void *ctx)
{
	*out = NULL;
	if (cfg->max_ids == 0)
		return -EINVAL;
	struct eng_core_cfg ccfg = {.caps = cfg->caps, .shard = 0, .nshards = 1};
	size_t bytes = eng_core_bytes(&ccfg);
	if (bytes == 0)
		return -EINVAL;
	struct qc *q = calloc(1, sizeof(*q));
	if (!q)
		return -ENOMEM;
	q->ids = calloc((size_t)cfg->max_ids + 1, sizeof(uint64_t));
	q->mem = aligned_alloc(64, (bytes + 63) & ~(size_t)63);
	if (!q->ids || !q->mem)
		goto out_free;
	int rc = eng_core_init(&q->b, q->mem, bytes, &ccfg, on_event, q);
	if (rc) {
		free(q->ids);
		free(q->mem);
		free(q);
		return rc;
	}
	eng_core_reclaim(q->b, UINT64_MAX);
	eng_core_set_batched(q->b, true); /* quotes once per round, as a matcher */
	q->max_ids = cfg->max_ids;
	q->window = cfg->window;
	q->fn = fn;
	q->ctx = ctx;
	q->last_sym = UINT32_MAX;
	*out = q;
	return 0;

out_free:
	free(q->ids);
	free(q->mem);
	free(q);
	return -ENOMEM;
}

int qc_reset(struct qc *q)
{
	const struct shm_book_view *v = eng_core_view(q->b);
	struct eng_core_cfg ccfg = {
		.caps = {.symbols = v->cap_symbols,
			 .levels = v->cap_levels,
			 .orders = v->cap_orders,
			 .fills = v->cap_fills},
		.shard = 0,
		.nshards = 1,
	};
	size_t bytes = eng_core_bytes(&ccfg);
	eng_core_destroy(q->b);
	q->b = NULL;
	int rc = eng_core_init(&q->b, q->mem, bytes, &ccfg, on_event, q);
	if (rc)
		return rc;
	eng_core_reclaim(q->b, UINT64_MAX);
	eng_core_set_batched(q->b, true);
	memset(&q->req, 0, sizeof(q->req));
	memset(&q->traders, 0, sizeof(q->traders));
	memset(&q->symbols, 0, sizeof(q->symbols));
	q->nids = 0;
	q->round = 0;
	q->last_sym_key = 0;
	q->last_sym = UINT32_MAX;
	return 0;
}

void qc_close(struct qc *q)
{
	if (!q)
		return;
	eng_core_destroy(q->b);
	free(q->mem);
	free(q->ids);
	free(q);
}

struct eng_core *qc_core(struct qc *q)
{
	return q->b;
}

/* The account of a trader (a new one for a new name), 0 when full. */
static uint64_t trader_account(struct qc *q, const char name[STRINGLEN])
{
	struct qc_names *t = &q->traders;
	uint64_t key = pack(name);
	uint32_t i = names_slot(t, key);
	if (t->key[i])
		return t->val[i];
	if (t->n >= QC_NAMES)
		return 0;
	t->key[i] = key;
	t->val[i] = ++t->n;
	memcpy(t->name[t->n], name, STRINGLEN);
	return t->n;
}

/* The core's index of a symbol (added on first use); false when full. */
static bool symbol_index(struct qc *q, const char name[STRINGLEN], uint32_t *idx)
{
	uint64_t key = pack(name);
	if (key == q->last_sym_key) {
		*idx = q->last_sym;
		return true;
	}
	struct qc_names *t = &q->symbols;
	uint32_t i = names_slot(t, key);
	if (!t->key[i]) {
		char s[STRINGLEN + 1] = {0};
		memcpy(s, name, STRINGLEN);
		uint32_t si;
		if (t->n >= QC_NAMES || eng_core_symbol_add(q->b, s, strlen(s), &si) != 0)
			return false;
		t->key[i] = key;
		t->val[i] = si + 1;
		memcpy(t->name[si + 1], name, STRINGLEN);
		t->n++;
	}
	q->last_sym_key = key;
	q->last_sym = t->val[i] - 1;
	*idx = q->last_sym;
	return true;
}

/* A matcher's end of round: publishes the round's quotes, trims the
 * finished orders to the window. */
static inline void round_tick(struct qc *q)
{
	if (++q->round == QC_ROUND) {
		q->round = 0;
		eng_core_publish(q->b);
		if (q->window)
			(void)eng_core_trim(q->b, q->window);
	}
}

t_orderid qc_limit(struct qc *q, const t_order *o)
{
	round_tick(q);
	if (q->nids >= q->max_ids)
		return 0;
	t_orderid qid = ++q->nids;
	q->ids[qid] = 0;
	struct eng_req *r = &q->req;
	r->seq++;
	r->time_ns = r->seq;
	r->account = trader_account(q, o->trader);
	if (r->account == 0 || !symbol_index(q, o->symbol, &r->sym))
		return qid;
	r->order_id = 0;
	r->price = o->price;
	r->qty = (int64_t)o->size;
	r->side = o->side ? SHM_SIDE_SELL : SHM_SIDE_BUY;
	r->tif = SHM_TIF_GTC;
	uint64_t id;
	if (eng_core_submit(q->b, r, &id) == 0)
		q->ids[qid] = id;
	return qid;
}

void qc_cancel(struct qc *q, t_orderid qid)
{
	round_tick(q);
	if (qid == 0 || qid > q->nids || q->ids[qid] == 0)
		return;
	const struct shm_book_order_sh *o = eng_core_order(q->b, q->ids[qid]);
	if (!o || o->state != SHM_BOOK_ORDER_LIVE)
		return;
	struct eng_req *r = &q->req;
	r->seq++;
	r->time_ns = r->seq;
	r->account = o->account;
	r->order_id = q->ids[qid];
	/* An order that is not open is ignored (the API's contract). */
	(void)!eng_core_cancel(q->b, r);
}

void qc_session(struct qc *q, int cancel_open)
{
	if (cancel_open)
		for (t_orderid i = 1; i <= q->nids; i++)
			qc_cancel(q, i);
	q->nids = 0;
}
