/*
 * refbook: the naive reference book (see refbook.h).  Deliberately
 * simple: one array of every order ever accepted, one array of the indexes
 * of resting orders (unordered), a hash from id to order.  Priority is
 * (better price, smaller arrival number); an order that re-queues gets a
 * new arrival number.
 */
#include "tests/refbook.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "shm/shm_error.h"
#include "shm/shm_msg.h"

struct ref_order {
	uint64_t id, account, arrival;
	int64_t price, amount, open, executed, cancelled;
	uint32_t sym;
	uint8_t side, tif;
	bool live;
};

struct refbook {
	uint32_t nsym, stp;
	eng_event_fn fn;
	void *ctx;
	struct ref_order *o;
	size_t n, cap;
	size_t *rest; /* indexes of resting orders */
	size_t nrest, rest_cap;
	uint64_t *hkey;
	size_t *hval;
	size_t hmask, hused;
	uint64_t arrivals, events;
	const struct eng_req *req;
	bool dry; /* FOK trial: no events */
};

static void grow(void **p, size_t *cap, size_t need, size_t size)
{
	if (need <= *cap)
		return;
	size_t c = *cap ? *cap : 64;
	while (c < need)
		c *= 2;
	*p = realloc(*p, c * size);
	if (!*p)
		abort();
	*cap = c;
}

static size_t hslot(const struct refbook *rb, uint64_t id)
{
	size_t i = (size_t)(id * UINT64_C(0x9e3779b97f4a7c15) >> 20) & rb->hmask;
	while (rb->hkey[i] && rb->hkey[i] != id)
		i = (i + 1) & rb->hmask;
	return i;
}

static void hput(struct refbook *rb, uint64_t id, size_t v)
{
	if (2 * (rb->hused + 1) > rb->hmask + 1) {
		uint64_t *ok = rb->hkey;
		size_t *ov = rb->hval, ocap = rb->hmask + 1;
		rb->hmask = 2 * ocap - 1;
		rb->hkey = calloc(2 * ocap, sizeof(uint64_t));
		rb->hval = calloc(2 * ocap, sizeof(size_t));
		if (!rb->hkey || !rb->hval)
			abort();
		for (size_t i = 0; i < ocap; i++)
			if (ok[i]) {
				size_t j = hslot(rb, ok[i]);
				rb->hkey[j] = ok[i];
				rb->hval[j] = ov[i];
			}
		free(ok);
		free(ov);
	}
	size_t i = hslot(rb, id);
	if (!rb->hkey[i])
		rb->hused++;
	rb->hkey[i] = id;
	rb->hval[i] = v;
}

static struct ref_order *hget(const struct refbook *rb, uint64_t id)
{
	if (!id)
		return NULL;
	size_t i = hslot(rb, id);
	return rb->hkey[i] ? &rb->o[rb->hval[i]] : NULL;
}

struct refbook *refbook_new(uint32_t nsymbols, uint32_t stp_mode, eng_event_fn fn,
			    void *ctx)
{
	struct refbook *rb = calloc(1, sizeof(*rb));
	if (!rb)
		abort();
	rb->nsym = nsymbols;
	rb->stp = stp_mode;
	rb->fn = fn;
	rb->ctx = ctx;
	rb->hmask = 1023;
	rb->hkey = calloc(1024, sizeof(uint64_t));
	rb->hval = calloc(1024, sizeof(size_t));
	if (!rb->hkey || !rb->hval)
		abort();
	return rb;
}

void refbook_free(struct refbook *rb)
{
	if (!rb)
		return;
	free(rb->o);
	free(rb->rest);
	free(rb->hkey);
	free(rb->hval);
	free(rb);
}

static void emit(struct refbook *rb, struct eng_event *ev)
{
	if (rb->dry)
		return;
	ev->event = ++rb->events;
	ev->seq = rb->req->seq;
	ev->time_ns = rb->req->time_ns;
	if (rb->fn)
		rb->fn(rb->ctx, ev);
}

static void ev_order(struct eng_event *ev, unsigned type, const struct ref_order *o)
{
	memset(ev, 0, sizeof(*ev));
	ev->type = (uint8_t)type;
	ev->sym = o->sym;
	ev->side = o->side;
	ev->tif = o->tif;
	ev->order_id = o->id;
	ev->account = o->account;
	ev->price = o->price;
}

static void unrest(struct refbook *rb, const struct ref_order *o)
{
	for (size_t i = 0; i < rb->nrest; i++)
		if (&rb->o[rb->rest[i]] == o) {
			rb->rest[i] = rb->rest[--rb->nrest];
			return;
		}
}

static void rest(struct refbook *rb, struct ref_order *o)
{
	grow((void **)&rb->rest, &rb->rest_cap, rb->nrest + 1, sizeof(size_t));
	rb->rest[rb->nrest++] = (size_t)(o - rb->o);
}

static void cancel_open(struct refbook *rb, struct ref_order *o, uint8_t reason)
{
	struct eng_event ev;
	ev_order(&ev, ENG_EV_CANCEL, o);
	ev.reason = reason;
	ev.qty = o->open;
	o->cancelled += o->open;
	o->open = 0;
	o->live = false;
	emit(rb, &ev);
}

/* The best resting order that t may trade with, or NULL. */
static struct ref_order *best_maker(struct refbook *rb, const struct ref_order *t)
{
	struct ref_order *best = NULL;
	for (size_t i = 0; i < rb->nrest; i++) {
		struct ref_order *m = &rb->o[rb->rest[i]];
		if (m->sym != t->sym || m->side == t->side)
			continue;
		bool cross = t->side == SHM_SIDE_BUY ? m->price <= t->price
						     : m->price >= t->price;
		if (!cross)
			continue;
		if (!best)
			best = m;
		else if (m->price != best->price) {
			bool better = t->side == SHM_SIDE_BUY ? m->price < best->price
							      : m->price > best->price;
			if (better)
				best = m;
		} else if (m->arrival < best->arrival) {
			best = m;
		}
	}
	return best;
}

/* Returns true when STP stopped the taker. */
static bool match(struct refbook *rb, struct ref_order *t)
{
	while (t->open > 0) {
		struct ref_order *m = best_maker(rb, t);
		if (!m)
			return false;
		if (rb->stp != SHM_BOOK_STP_NONE && m->account == t->account) {
			if (rb->stp != SHM_BOOK_STP_CANCEL_NEWEST) {
				unrest(rb, m);
				cancel_open(rb, m, SHM_BOOK_DONE_STP);
			}
			if (rb->stp != SHM_BOOK_STP_CANCEL_OLDEST)
				return true;
			continue;
		}
		int64_t x = t->open < m->open ? t->open : m->open;
		m->open -= x;
		m->executed += x;
		t->open -= x;
		t->executed += x;
		struct eng_event ev;
		ev_order(&ev, ENG_EV_FILL, t);
		ev.price = m->price;
		ev.qty = x;
		ev.maker_id = m->id;
		ev.maker_account = m->account;
		ev.maker_price = m->price;
		ev.taker_price = t->price;
		ev.maker_open = m->open;
		ev.taker_open = t->open;
		emit(rb, &ev);
		if (m->open == 0) {
			m->live = false;
			unrest(rb, m);
		}
	}
	return false;
}

/* FOK: would t fill completely?  Runs the match on the resting orders
 * without events, then puts them back as they were. */
static bool fok_ok(struct refbook *rb, const struct ref_order *t)
{
	size_t nrest = rb->nrest;
	struct ref_order *saved = malloc((nrest + 1) * sizeof(*saved));
	size_t *saved_rest = malloc((nrest + 1) * sizeof(size_t));
	if (!saved || !saved_rest)
		abort();
	for (size_t i = 0; i < nrest; i++) {
		saved[i] = rb->o[rb->rest[i]];
		saved_rest[i] = rb->rest[i];
	}
	struct ref_order copy = *t;
	rb->dry = true;
	bool stopped = match(rb, &copy);
	rb->dry = false;
	bool ok = !stopped && copy.open == 0;
	for (size_t i = 0; i < nrest; i++) {
		rb->o[saved_rest[i]] = saved[i];
		rb->rest[i] = saved_rest[i];
	}
	rb->nrest = nrest;
	free(saved);
	free(saved_rest);
	return ok;
}

static int reject(struct refbook *rb, enum eng_req_type what, int err)
{
	const struct eng_req *r = rb->req;
	struct eng_event ev;
	memset(&ev, 0, sizeof(ev));
	ev.type = ENG_EV_REJECT;
	ev.reason = (uint8_t)what;
	ev.err = err;
	ev.sym = r->sym;
	ev.side = r->side;
	ev.tif = r->tif;
	ev.order_id = r->order_id;
	ev.account = r->account;
	ev.price = r->price;
	ev.qty = r->qty;
	emit(rb, &ev);
	return err;
}

static void finish(struct refbook *rb, struct ref_order *t, bool stopped)
{
	if (t->open == 0) {
		t->live = false;
	} else if (stopped) {
		cancel_open(rb, t, SHM_BOOK_DONE_STP);
	} else if (t->tif == SHM_TIF_GTC) {
		rest(rb, t);
	} else {
		cancel_open(rb, t,
			    t->tif == SHM_TIF_IOC ? SHM_BOOK_DONE_IOC
						  : SHM_BOOK_DONE_FOK);
	}
}

int refbook_submit(struct refbook *rb, const struct eng_req *r, uint64_t id)
{
	rb->req = r;
	if (r->sym >= rb->nsym)
		return reject(rb, ENG_REQ_NEW, SHMEX_ENOSYMBOL);
	if (r->side > 1)
		return reject(rb, ENG_REQ_NEW, SHMEX_EBADREQUEST);
	if (r->tif > 2)
		return reject(rb, ENG_REQ_NEW, SHMEX_EBADTIF);
	if (r->qty <= 0)
		return reject(rb, ENG_REQ_NEW, SHMEX_EBADAMOUNT);
	if (r->price <= 0)
		return reject(rb, ENG_REQ_NEW, SHMEX_EBADPRICE);
	grow((void **)&rb->o, &rb->cap, rb->n + 1, sizeof(struct ref_order));
	struct ref_order *t = &rb->o[rb->n];
	memset(t, 0, sizeof(*t));
	t->id = id;
	t->account = r->account;
	t->arrival = ++rb->arrivals;
	t->price = r->price;
	t->amount = t->open = r->qty;
	t->sym = r->sym;
	t->side = r->side;
	t->tif = r->tif;
	t->live = true;
	hput(rb, id, rb->n);
	rb->n++;
	struct eng_event ev;
	ev_order(&ev, ENG_EV_ACCEPT, t);
	ev.qty = t->amount;
	emit(rb, &ev);
	if (t->tif == SHM_TIF_FOK && !fok_ok(rb, t)) {
		cancel_open(rb, t, SHM_BOOK_DONE_FOK);
		return 0;
	}
	bool stopped = match(rb, t);
	finish(rb, t, stopped);
	return 0;
}

static int lookup(struct refbook *rb, const struct eng_req *r, struct ref_order **out)
{
	struct ref_order *o = hget(rb, r->order_id);
	if (!o)
		return SHMEX_ENOORDER;
	if (o->account != r->account)
		return SHMEX_ENOTOWNER;
	if (!o->live)
		return SHMEX_ENOTOPEN;
	*out = o;
	return 0;
}

int refbook_cancel(struct refbook *rb, const struct eng_req *r)
{
	rb->req = r;
	struct ref_order *o;
	int err = lookup(rb, r, &o);
	if (err)
		return reject(rb, ENG_REQ_CANCEL, err);
	unrest(rb, o);
	cancel_open(rb, o, SHM_BOOK_DONE_CANCEL);
	return 0;
}

int refbook_modify(struct refbook *rb, const struct eng_req *r)
{
	rb->req = r;
	struct ref_order *o;
	int err = lookup(rb, r, &o);
	if (!err && r->price <= 0)
		err = SHMEX_EBADPRICE;
	if (!err && r->qty < 0)
		err = SHMEX_EBADAMOUNT;
	if (err)
		return reject(rb, ENG_REQ_MODIFY, err);
	if (r->qty == 0) {
		unrest(rb, o);
		cancel_open(rb, o, SHM_BOOK_DONE_MODIFY);
		return 0;
	}
	struct eng_event ev;
	ev_order(&ev, ENG_EV_MODIFY, o);
	ev.price = r->price;
	ev.qty = r->qty;
	ev.old_price = o->price;
	ev.old_qty = o->open;
	if (r->price == o->price && r->qty <= o->open) {
		o->amount -= o->open - r->qty;
		o->open = r->qty;
		emit(rb, &ev);
		return 0;
	}
	unrest(rb, o);
	o->price = r->price;
	o->open = r->qty;
	o->amount = o->executed + o->cancelled + r->qty;
	o->arrival = ++rb->arrivals;
	emit(rb, &ev);
	bool stopped = match(rb, o);
	finish(rb, o, stopped);
	return 0;
}

size_t refbook_depth(const struct refbook *rb, uint32_t sym, unsigned side,
		     struct eng_core_level_info *out, size_t max)
{
	size_t k = 0;
	int64_t last = 0;
	bool have = false;
	for (;;) {
		/* Next best price after `last`. */
		bool found = false;
		int64_t px = 0;
		for (size_t i = 0; i < rb->nrest; i++) {
			const struct ref_order *o = &rb->o[rb->rest[i]];
			if (o->sym != sym || o->side != side)
				continue;
			bool after = !have || (side == SHM_SIDE_BUY ? o->price < last
								    : o->price > last);
			bool better = !found || (side == SHM_SIDE_BUY ? o->price > px
								      : o->price < px);
			if (after && better) {
				px = o->price;
				found = true;
			}
		}
		if (!found || k == max)
			return k;
		out[k].price = px;
		out[k].qty = 0;
		out[k].count = 0;
		for (size_t i = 0; i < rb->nrest; i++) {
			const struct ref_order *o = &rb->o[rb->rest[i]];
			if (o->sym == sym && o->side == side && o->price == px) {
				out[k].qty += o->open;
				out[k].count++;
			}
		}
		k++;
		last = px;
		have = true;
	}
}

size_t refbook_live(const struct refbook *rb)
{
	return rb->nrest;
}

bool refbook_has(const struct refbook *rb, uint64_t id)
{
	return hget(rb, id) != NULL;
}
