/*
 * rpl: the conformance adapter around the matching core (contract
 * in rpl.h; the rule differences it bridges in docs/matching.md).
 *
 * Translation.  The batteries name orders with client ids that may be
 * reused once the order is dead; shmex issues its own ids.  The adapter
 * keeps client id -> shmex id (a growing open-addressing hash, entries
 * overwritten on reuse) and shmex slot -> client id (an array indexed by
 * the order record slot, set when the core accepts the order).  A cancel or
 * modify of a client id never seen is answered by the adapter itself (4/5
 * line); every other request goes to the core, whose REJECT events give
 * the 4/5 lines.  All orders belong to account 1 on symbol "X"; the
 * message seq is the request's seq and its time; the reader epoch is 0
 * and the safe epoch UINT64_MAX (no readers), so retired nodes are reused
 * at once.
 *
 * Lines of one message are buffered and stable-sorted by type before they
 * go out (the core emits a MODIFY before that modify's trades; the
 * batteries sort trades first).  Numbers are rendered by hand: the 2M
 * message workload produces ~2.2M lines.
 *
 * Checking a battery case is split from executing it: rpl_case_drive
 * owns the loop (messages, due states, report/hash/state verdict and the
 * reason) and calls a runner for the book, so the in-process book here and
 * shmex-replay --through-shm (a matcher process, book read via shm_snap)
 * share one loop and one state comparison (rpl_levels_check over
 * plain [price, qty] arrays) and cannot drift apart.
 *
 * Limits: the line buffer grows without bound within one message (a sweep
 * of the whole book); everything else is sized at open.
 */
#include "engine/replay/rpl.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <lzma.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "shm/shm_error.h"
#include "shm/shm_msg.h"

#define REPLAY_ACCOUNT 1

struct rpl {
	struct rpl_cfg cfg;
	void *mem;
	struct eng_core *book;
	uint32_t sym;
	uint32_t nshards, cap_orders;

	struct rpl_idmap ids;      /* client id -> shmex id */
	uint64_t *cid_of_slot;     /* order record slot -> client id */
	const struct rpl_msg *msg; /* the message being applied */
	struct rpl_report rep;
};

void rpl_cfg_default(struct rpl_cfg *cfg, bool small)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->caps.symbols = 1;
	if (small) {
		cfg->caps.levels = 1u << 13;
		cfg->caps.orders = 1u << 14;
		cfg->caps.fills = 1u << 15;
	} else {
		cfg->caps.levels = 1u << 16;
		cfg->caps.orders = 1u << 18;
		cfg->caps.fills = 1u << 18;
	}
	cfg->stp_mode = SHM_BOOK_STP_NONE;
	cfg->format = true;
	cfg->sha256 = true;
}

static void line_add(struct rpl *r, unsigned type, int n, const int64_t *f)
{
	rpl_report_line(&r->rep, type, n, f);
}

static uint64_t cid_of(const struct rpl *r, uint64_t id)
{
	return r->cid_of_slot[shm_order_slot(id, r->nshards, r->cap_orders)];
}

static void on_event(void *ctx, const struct eng_event *ev)
{
	struct rpl *r = ctx;
	const struct rpl_msg *m = r->msg;
	int64_t f[5];
	switch (ev->type) {
	case ENG_EV_ACCEPT:
		r->cid_of_slot[shm_order_slot(ev->order_id, r->nshards, r->cap_orders)] =
			m->order_id;
		f[0] = (int64_t)m->seq;
		f[1] = ev->side;
		f[2] = (int64_t)m->order_id;
		f[3] = ev->price;
		f[4] = ev->qty;
		line_add(r, 0, 5, f);
		break;
	case ENG_EV_FILL:
		f[0] = (int64_t)m->seq;
		f[1] = ev->price;
		f[2] = ev->qty;
		f[3] = (int64_t)cid_of(r, ev->maker_id);
		f[4] = (int64_t)cid_of(r, ev->order_id);
		line_add(r, 1, 5, f);
		break;
	case ENG_EV_CANCEL:
		f[0] = (int64_t)m->seq;
		f[1] = ev->side;
		f[2] = (int64_t)cid_of(r, ev->order_id);
		f[3] = ev->price;
		line_add(r, 2, 4, f);
		break;
	case ENG_EV_MODIFY:
		f[0] = (int64_t)m->seq;
		f[1] = ev->side;
		f[2] = (int64_t)cid_of(r, ev->order_id);
		f[3] = ev->price;
		f[4] = ev->qty;
		line_add(r, 3, 5, f);
		break;
	case ENG_EV_REJECT:
		f[0] = (int64_t)m->seq;
		f[1] = (int64_t)m->order_id;
		if (ev->reason == ENG_REQ_CANCEL)
			line_add(r, 4, 2, f);
		else if (ev->reason == ENG_REQ_MODIFY)
			line_add(r, 5, 2, f);
		else
			r->rep.rejected++;
		break;
	default:
		break;
	}
}

/* ------------------------------------------------------------------ */
/* Adapter                                                             */

int rpl_open(struct rpl **out, const struct rpl_cfg *cfg)
{
	*out = NULL;
	struct rpl *r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	r->cfg = *cfg;
	rpl_report_reset(&r->rep, cfg->format, cfg->sha256, cfg->line, cfg->ctx);
	struct eng_core_cfg bc = {
		.caps = cfg->caps, .shard = 0, .nshards = 1, .stp_mode = cfg->stp_mode};
	size_t bytes = eng_core_bytes(&bc);
	int rc = -EINVAL;
	if (!bytes)
		goto out_free;
	bytes = (bytes + SHM_CACHE_LINE - 1) & ~(size_t)(SHM_CACHE_LINE - 1);
	rc = -ENOMEM;
	r->mem = aligned_alloc(SHM_CACHE_LINE, bytes);
	if (!r->mem)
		goto out_free;
	rc = eng_core_init(&r->book, r->mem, bytes, &bc, on_event, r);
	if (rc)
		goto out_mem;
	rc = eng_core_symbol_add(r->book, "X", 1, &r->sym);
	if (rc)
		goto out_book;
	eng_core_reclaim(r->book, UINT64_MAX);
	r->nshards = 1;
	r->cap_orders = cfg->caps.orders;
	rc = -ENOMEM;
	r->cid_of_slot = calloc(cfg->caps.orders, sizeof(uint64_t));
	if (!r->cid_of_slot)
		goto out_book;
	if (rpl_idmap_init(&r->ids, 1u << 12) != 0)
		goto out_map;
	*out = r;
	return 0;

out_map:
	free(r->cid_of_slot);
out_book:
	eng_core_destroy(r->book);
out_mem:
	free(r->mem);
out_free:
	free(r);
	return rc;
}

void rpl_close(struct rpl *r)
{
	if (!r)
		return;
	eng_core_destroy(r->book);
	free(r->mem);
	rpl_idmap_free(&r->ids);
	free(r->cid_of_slot);
	rpl_report_free(&r->rep);
	free(r);
}

int rpl_apply(struct rpl *r, const struct rpl_msg *m)
{
	struct eng_req q;
	memset(&q, 0, sizeof(q));
	q.seq = m->seq;
	q.time_ns = m->seq;
	q.epoch = 0;
	q.account = REPLAY_ACCOUNT;
	q.sym = r->sym;
	q.side = m->side;
	q.tif = m->tif;
	q.price = m->price;
	q.qty = m->qty;
	r->msg = m;
	int rc = 0;
	uint64_t id;
	int64_t f[2] = {(int64_t)m->seq, (int64_t)m->order_id};
	switch (m->type) {
	case RPL_NEW:
		if (eng_core_submit(r->book, &q, &id) == 0)
			rc = rpl_idmap_put(&r->ids, m->order_id, id);
		break;
	case RPL_CANCEL:
	case RPL_MODIFY:
		q.order_id = rpl_idmap_get(&r->ids, m->order_id);
		if (q.order_id == 0) {
			/* Never seen: the batteries' "not resting". */
			line_add(r, m->type == RPL_CANCEL ? 4 : 5, 2, f);
			break;
		}
		/* The core's REJECT event renders the 4/5 line. */
		if (m->type == RPL_CANCEL)
			(void)!eng_core_cancel(r->book, &q);
		else
			(void)!eng_core_modify(r->book, &q);
		break;
	default:
		r->rep.rejected++;
		break;
	}
	rpl_report_flush(&r->rep);
	r->msg = NULL;
	if (r->rep.oom)
		return -ENOMEM;
	return rc;
}

void rpl_counts(const struct rpl *r, uint64_t counts[6])
{
	memcpy(counts, r->rep.counts, sizeof(r->rep.counts));
}

uint64_t rpl_rejected(const struct rpl *r)
{
	return r->rep.rejected;
}

void rpl_report_hex(struct rpl *r, char out[65])
{
	rpl_report_sha256_hex(&r->rep, out);
}

struct eng_core *rpl_book(struct rpl *r)
{
	return r->book;
}

/* ------------------------------------------------------------------ */
/* Book state                                                          */

static int side_check(const char *name, size_t n, int64_t (*got)[2], size_t nwant,
		      int64_t (*want)[2], char *why, size_t len)
{
	if (n != nwant) {
		snprintf(why, len, "%s: %zu levels, expected %zu", name, n, nwant);
		return -1;
	}
	for (size_t i = 0; i < n; i++) {
		if (got[i][0] != want[i][0] || got[i][1] != want[i][1]) {
			snprintf(why, len,
				 "%s[%zu] = [%lld, %lld], expected [%lld, %lld]", name, i,
				 (long long)got[i][0], (long long)got[i][1],
				 (long long)want[i][0], (long long)want[i][1]);
			return -1;
		}
	}
	return 0;
}

int rpl_levels_check(const struct rpl_levels *got, const struct rpl_state *want,
		     char *why, size_t len)
{
	bool has_bid = got->nbids > 0;
	int64_t bid = has_bid ? got->bids[0][0] : 0;
	bool has_ask = got->nasks > 0;
	int64_t ask = has_ask ? got->asks[0][0] : 0;
	if (has_bid != want->has_best_bid || (has_bid && bid != want->best_bid)) {
		snprintf(why, len, "best_bid %s%lld, expected %s%lld",
			 has_bid ? "" : "null/", (long long)bid,
			 want->has_best_bid ? "" : "null/", (long long)want->best_bid);
		return -1;
	}
	if (has_ask != want->has_best_ask || (has_ask && ask != want->best_ask)) {
		snprintf(why, len, "best_ask %s%lld, expected %s%lld",
			 has_ask ? "" : "null/", (long long)ask,
			 want->has_best_ask ? "" : "null/", (long long)want->best_ask);
		return -1;
	}
	if (side_check("bids", got->nbids, got->bids, want->nbids, want->bids, why,
		       len) ||
	    side_check("asks", got->nasks, got->asks, want->nasks, want->asks, why, len))
		return -1;
	if (want->has_probe) {
		bool ask_side = want->probe[1] == 1;
		int64_t(*lv)[2] = ask_side ? got->asks : got->bids;
		size_t n = ask_side ? got->nasks : got->nbids;
		int64_t d = 0;
		for (size_t i = 0; i < n; i++)
			if (lv[i][0] == want->probe[0])
				d = lv[i][1];
		if (d != want->probe[2]) {
			snprintf(why, len,
				 "probe [%lld, %lld]: depth %lld, expected %lld",
				 (long long)want->probe[0], (long long)want->probe[1],
				 (long long)d, (long long)want->probe[2]);
			return -1;
		}
	}
	return 0;
}

/* One side of the in-process book as [price, qty] pairs; returns how many. */
static size_t book_side(struct rpl *r, unsigned side, struct eng_core_level_info *tmp,
			size_t cap, int64_t (*out)[2])
{
	size_t n = eng_core_depth(r->book, r->sym, side, tmp, cap);
	for (size_t i = 0; i < n; i++) {
		out[i][0] = tmp[i].price;
		out[i][1] = tmp[i].qty;
	}
	return n;
}

int rpl_state_check(struct rpl *r, const struct rpl_state *want, char *why, size_t len)
{
	size_t cap = eng_core_view(r->book)->cap_levels;
	struct eng_core_level_info *tmp = malloc(cap * sizeof(*tmp));
	int64_t(*lv)[2] = malloc(2 * cap * sizeof(*lv));
	int rc = -1;
	if (!tmp || !lv) {
		snprintf(why, len, "out of memory");
		goto out_free;
	}
	struct rpl_levels got = {.bids = lv, .asks = lv + cap};
	got.nbids = book_side(r, 0, tmp, cap, got.bids);
	got.nasks = book_side(r, 1, tmp, cap, got.asks);
	rc = rpl_levels_check(&got, want, why, len);
out_free:
	free(tmp);
	free(lv);
	return rc;
}

/* ------------------------------------------------------------------ */
/* Running a case                                                      */

struct case_sink {
	const struct rpl_case *c;
	rpl_line_fn line; /* the caller's sink, may be NULL */
	void *line_ctx;
	size_t n;
	bool mismatch;
	char *why;
	size_t why_len;
};

static void case_line(void *ctx, const char *s, size_t len)
{
	struct case_sink *k = ctx;
	if (!k->mismatch) {
		if (k->n >= k->c->nreports) {
			snprintf(k->why, k->why_len, "extra line %zu: %.*s", k->n,
				 (int)len, s);
			k->mismatch = true;
		} else if (strlen(k->c->reports[k->n]) != len ||
			   memcmp(k->c->reports[k->n], s, len) != 0) {
			snprintf(k->why, k->why_len, "line %zu: got %.*s, expected %s",
				 k->n, (int)len, s, k->c->reports[k->n]);
			k->mismatch = true;
		}
	}
	k->n++;
	if (k->line)
		k->line(k->line_ctx, s, len);
}

int rpl_case_drive(const struct rpl_case *c, const struct rpl_runner *run,
		   rpl_line_fn line, void *line_ctx, struct rpl_result *res)
{
	memset(res, 0, sizeof(*res));
	struct case_sink k = {.c = c,
			      .line = line,
			      .line_ctx = line_ctx,
			      .why = res->why,
			      .why_len = sizeof(res->why)};
	int err = run->begin(run->ctx, case_line, &k);
	if (err)
		return err;
	res->states_ok = true;
	char why[256];
	for (size_t i = 0; i < c->nmsgs; i++) {
		err = run->apply(run->ctx, &c->msgs[i]);
		if (err)
			return err;
		for (size_t j = 0; j < c->nstates; j++) {
			const struct rpl_state *st = &c->states[j];
			bool due = st->has_after_seq ? st->after_seq == c->msgs[i].seq
						     : i + 1 == c->nmsgs;
			if (!due)
				continue;
			res->nstates_checked++;
			if (!res->states_ok)
				continue;
			err = run->state(run->ctx, st, why, sizeof(why));
			if (err < 0)
				return err;
			if (err) {
				res->states_ok = false;
				if (!k.mismatch)
					snprintf(res->why, sizeof(res->why),
						 "state after seq %llu: %s",
						 (unsigned long long)c->msgs[i].seq, why);
			}
		}
	}
	/* Every line is out only once finish returns. */
	err = run->finish(run->ctx, res->sha256);
	if (err)
		return err;
	res->nlines = k.n;
	res->reports_ok = !k.mismatch && k.n == c->nreports;
	if (!k.mismatch && k.n != c->nreports)
		snprintf(res->why, sizeof(res->why), "%zu lines, expected %zu", k.n,
			 c->nreports);
	res->sha_ok = c->sha256[0] == '\0' || strcmp(res->sha256, c->sha256) == 0;
	if (res->reports_ok && res->states_ok && !res->sha_ok)
		snprintf(res->why, sizeof(res->why), "sha256 %s, expected %s",
			 res->sha256, c->sha256);
	if (res->nstates_checked != c->nstates && res->states_ok) {
		res->states_ok = false;
		snprintf(res->why, sizeof(res->why), "%zu of %zu states not reached",
			 c->nstates - res->nstates_checked, c->nstates);
	}
	res->pass = res->reports_ok && res->sha_ok && res->states_ok;
	return 0;
}

/* The in-process runner: a fresh rpl per case. */
struct book_runner {
	struct rpl_cfg cfg;
	struct rpl *r;
};

static int book_begin(void *ctx, rpl_line_fn line, void *line_ctx)
{
	struct book_runner *b = ctx;
	b->cfg.format = true;
	b->cfg.sha256 = true;
	b->cfg.line = line;
	b->cfg.ctx = line_ctx;
	return rpl_open(&b->r, &b->cfg);
}

static int book_apply(void *ctx, const struct rpl_msg *m)
{
	struct book_runner *b = ctx;
	return rpl_apply(b->r, m);
}

static int book_state(void *ctx, const struct rpl_state *want, char *why, size_t len)
{
	struct book_runner *b = ctx;
	return rpl_state_check(b->r, want, why, len) ? 1 : 0;
}

static int book_finish(void *ctx, char hex[65])
{
	struct book_runner *b = ctx;
	rpl_report_hex(b->r, hex);
	return 0;
}

int rpl_case_run(const struct rpl_case *c, const struct rpl_cfg *cfg,
		 struct rpl_result *res)
{
	struct book_runner b = {.cfg = *cfg};
	const struct rpl_runner run = {
		.ctx = &b,
		.begin = book_begin,
		.apply = book_apply,
		.state = book_state,
		.finish = book_finish,
	};
	int err = rpl_case_drive(c, &run, cfg->line, cfg->ctx, res);
	rpl_close(b.r);
	return err;
}

/* ------------------------------------------------------------------ */
/* JSON batteries                                                      */

static bool js_int(const json_t *o, const char *key, int64_t *v)
{
	const json_t *x = json_object_get(o, key);
	if (!json_is_integer(x))
		return false;
	*v = json_integer_value(x);
	return true;
}

static int load_msg(const json_t *j, struct rpl_msg *m)
{
	int64_t seq, type, id, side, qty, px, ioc = 0;
	if (!json_is_object(j) || !js_int(j, "seq", &seq) || !js_int(j, "type", &type) ||
	    !js_int(j, "order_id", &id) || !js_int(j, "side", &side) ||
	    !js_int(j, "qty", &qty) || !js_int(j, "price_ticks", &px))
		return -1;
	(void)js_int(j, "ioc", &ioc);
	if (seq < 0 || type < 0 || type > 2 || id < 0 || side < 0 || side > 1 ||
	    ioc < 0 || ioc > 1)
		return -1;
	memset(m, 0, sizeof(*m));
	m->seq = (uint64_t)seq;
	m->type = (uint8_t)type;
	m->order_id = (uint64_t)id;
	m->side = (uint8_t)side;
	m->qty = qty;
	m->price = px;
	m->tif = ioc ? SHM_TIF_IOC : SHM_TIF_GTC;
	const char *tif = json_string_value(json_object_get(j, "tif"));
	if (tif) {
		if (!strcmp(tif, "GTC"))
			m->tif = SHM_TIF_GTC;
		else if (!strcmp(tif, "IOC"))
			m->tif = SHM_TIF_IOC;
		else if (!strcmp(tif, "FOK"))
			m->tif = SHM_TIF_FOK;
		else
			return -1;
	}
	return 0;
}

static int load_levels(const json_t *a, size_t *n, int64_t (**out)[2])
{
	*n = 0;
	*out = NULL;
	if (!json_is_array(a))
		return -1;
	size_t k = json_array_size(a);
	if (!k)
		return 0;
	int64_t(*v)[2] = calloc(k, sizeof(*v));
	if (!v)
		return -1;
	for (size_t i = 0; i < k; i++) {
		const json_t *e = json_array_get(a, i);
		if (!json_is_array(e) || json_array_size(e) != 2 ||
		    !json_is_integer(json_array_get(e, 0)) ||
		    !json_is_integer(json_array_get(e, 1))) {
			free(v);
			return -1;
		}
		v[i][0] = json_integer_value(json_array_get(e, 0));
		v[i][1] = json_integer_value(json_array_get(e, 1));
	}
	*n = k;
	*out = v;
	return 0;
}

static int load_state(const json_t *j, struct rpl_state *s)
{
	memset(s, 0, sizeof(*s));
	if (!json_is_object(j))
		return -1;
	int64_t v;
	if (js_int(j, "after_seq", &v)) {
		s->has_after_seq = true;
		s->after_seq = (uint64_t)v;
	}
	const json_t *bb = json_object_get(j, "best_bid");
	const json_t *ba = json_object_get(j, "best_ask");
	if (json_is_integer(bb)) {
		s->has_best_bid = true;
		s->best_bid = json_integer_value(bb);
	} else if (!json_is_null(bb)) {
		return -1;
	}
	if (json_is_integer(ba)) {
		s->has_best_ask = true;
		s->best_ask = json_integer_value(ba);
	} else if (!json_is_null(ba)) {
		return -1;
	}
	if (load_levels(json_object_get(j, "bids"), &s->nbids, &s->bids) ||
	    load_levels(json_object_get(j, "asks"), &s->nasks, &s->asks))
		return -1;
	const json_t *p = json_object_get(j, "probe");
	if (p) {
		if (!json_is_array(p) || json_array_size(p) != 3)
			return -1;
		for (int i = 0; i < 3; i++) {
			if (!json_is_integer(json_array_get(p, (size_t)i)))
				return -1;
			s->probe[i] = json_integer_value(json_array_get(p, (size_t)i));
		}
		s->has_probe = true;
	}
	return 0;
}

static void case_free(struct rpl_case *c)
{
	free(c->name);
	free(c->msgs);
	for (size_t i = 0; i < c->nreports; i++)
		free(c->reports[i]);
	free(c->reports);
	for (size_t i = 0; i < c->nstates; i++) {
		free(c->states[i].bids);
		free(c->states[i].asks);
	}
	free(c->states);
}

void rpl_battery_free(struct rpl_battery *b)
{
	if (!b)
		return;
	for (size_t i = 0; i < b->ncases; i++)
		case_free(&b->cases[i]);
	free(b->cases);
	free(b->format);
	free(b);
}

static int load_case(const json_t *j, struct rpl_case *c, char *err, size_t len)
{
	const char *name = json_string_value(json_object_get(j, "name"));
	const json_t *msgs = json_object_get(j, "messages");
	const json_t *reps = json_object_get(j, "expected_reports");
	const json_t *sts = json_object_get(j, "expected_state");
	const char *sha = json_string_value(json_object_get(j, "expected_sha256"));
	if (!name || !json_is_array(msgs) || !json_is_array(reps)) {
		snprintf(err, len, "case without name, messages or expected_reports");
		return -1;
	}
	c->name = strdup(name);
	c->nmsgs = json_array_size(msgs);
	c->msgs = calloc(c->nmsgs ? c->nmsgs : 1, sizeof(*c->msgs));
	c->reports = calloc(json_array_size(reps) + 1, sizeof(char *));
	if (!c->name || !c->msgs || !c->reports) {
		snprintf(err, len, "out of memory");
		return -1;
	}
	for (size_t i = 0; i < c->nmsgs; i++) {
		if (load_msg(json_array_get(msgs, i), &c->msgs[i])) {
			snprintf(err, len, "case %s: bad message %zu", name, i);
			return -1;
		}
	}
	for (size_t i = 0; i < json_array_size(reps); i++) {
		const char *s = json_string_value(json_array_get(reps, i));
		if (!s) {
			snprintf(err, len, "case %s: bad report %zu", name, i);
			return -1;
		}
		c->reports[i] = strdup(s);
		if (!c->reports[i]) {
			snprintf(err, len, "out of memory");
			return -1;
		}
		c->nreports = i + 1;
	}
	if (sha) {
		if (strlen(sha) != 64) {
			snprintf(err, len, "case %s: bad expected_sha256", name);
			return -1;
		}
		memcpy(c->sha256, sha, 65);
	}
	if (sts) {
		if (!json_is_array(sts)) {
			snprintf(err, len, "case %s: bad expected_state", name);
			return -1;
		}
		c->states = calloc(json_array_size(sts) + 1, sizeof(*c->states));
		if (!c->states) {
			snprintf(err, len, "out of memory");
			return -1;
		}
		for (size_t i = 0; i < json_array_size(sts); i++) {
			c->nstates = i + 1;
			if (load_state(json_array_get(sts, i), &c->states[i])) {
				snprintf(err, len, "case %s: bad state %zu", name, i);
				return -1;
			}
		}
	}
	return 0;
}

int rpl_battery_load(const char *path, struct rpl_battery **out, char *err, size_t errlen)
{
	*out = NULL;
	json_error_t je;
	json_t *root = json_load_file(path, 0, &je);
	if (!root) {
		snprintf(err, errlen, "%s:%d: %s", path, je.line, je.text);
		return -EINVAL;
	}
	int rc = -EINVAL;
	struct rpl_battery *b = calloc(1, sizeof(*b));
	const json_t *cases = json_object_get(root, "cases");
	if (!b) {
		snprintf(err, errlen, "out of memory");
		rc = -ENOMEM;
		goto out_root;
	}
	if (!json_is_array(cases)) {
		snprintf(err, errlen, "%s: no \"cases\" array", path);
		goto out_battery;
	}
	const char *fmt = json_string_value(json_object_get(root, "format"));
	b->format = strdup(fmt ? fmt : "");
	b->cases = calloc(json_array_size(cases) + 1, sizeof(*b->cases));
	if (!b->format || !b->cases) {
		snprintf(err, errlen, "out of memory");
		goto out_battery;
	}
	for (size_t i = 0; i < json_array_size(cases); i++) {
		b->ncases = i + 1;
		if (load_case(json_array_get(cases, i), &b->cases[i], err, errlen))
			goto out_battery;
	}
	json_decref(root);
	*out = b;
	return 0;

out_battery:
	rpl_battery_free(b);
out_root:
	json_decref(root);
	return rc;
}

/* ------------------------------------------------------------------ */
/* MEBW_001 workloads                                                  */

#define WL_HDR 16
#define WL_REC 40
#define WL_IN 65536
#define WL_OUT (WL_REC * 4096)

struct rpl_wl {
	int fd;
	bool xz;
	bool in_eof;
	lzma_stream lz;
	uint8_t in[WL_IN];
	uint8_t out[WL_OUT];
	size_t out_pos, out_len; /* unread bytes are out[out_pos, out_len) */
	uint32_t count, done;
};

/* Refills out[] so that at least `want` unread bytes are there, unless
 * the input ends.  Returns 0 or -EIO (read error, corrupt stream). */
static int wl_fill(struct rpl_wl *w, size_t want)
{
	if (w->out_len - w->out_pos >= want)
		return 0;
	memmove(w->out, w->out + w->out_pos, w->out_len - w->out_pos);
	w->out_len -= w->out_pos;
	w->out_pos = 0;
	while (w->out_len < want) {
		if (!w->xz) {
			ssize_t n = read(w->fd, w->out + w->out_len, WL_OUT - w->out_len);
			if (n < 0 && errno == EINTR)
				continue;
			if (n < 0)
				return -EIO;
			if (n == 0)
				return 0;
			w->out_len += (size_t)n;
			continue;
		}
		if (w->lz.avail_in == 0 && !w->in_eof) {
			ssize_t n = read(w->fd, w->in, WL_IN);
			if (n < 0 && errno == EINTR)
				continue;
			if (n < 0)
				return -EIO;
			w->in_eof = n == 0;
			w->lz.next_in = w->in;
			w->lz.avail_in = (size_t)n;
		}
		w->lz.next_out = w->out + w->out_len;
		w->lz.avail_out = WL_OUT - w->out_len;
		lzma_ret ret = lzma_code(&w->lz, w->in_eof ? LZMA_FINISH : LZMA_RUN);
		w->out_len = WL_OUT - w->lz.avail_out;
		if (ret == LZMA_STREAM_END)
			return 0;
		if (ret != LZMA_OK)
			return -EIO;
		if (w->in_eof && w->lz.avail_in == 0 && w->lz.avail_out != 0)
			return -EIO; /* truncated .xz */
	}
	return 0;
}

static uint64_t le64(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 7; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

static uint32_t le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}

int rpl_wl_open(struct rpl_wl **out, const char *path, char *err, size_t errlen)
{
	*out = NULL;
	struct rpl_wl *w = calloc(1, sizeof(*w));
	if (!w) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	int rc;
	w->fd = open(path, O_RDONLY | O_CLOEXEC);
	if (w->fd < 0) {
		rc = -errno;
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		goto out_free;
	}
	size_t plen = strlen(path);
	w->xz = plen > 3 && !strcmp(path + plen - 3, ".xz");
	if (w->xz) {
		lzma_stream init = LZMA_STREAM_INIT;
		w->lz = init;
		if (lzma_stream_decoder(&w->lz, UINT64_MAX, 0) != LZMA_OK) {
			rc = -ENOMEM;
			snprintf(err, errlen, "%s: cannot start the xz decoder", path);
			goto out_close;
		}
	}
	rc = wl_fill(w, WL_HDR);
	if (rc || w->out_len < WL_HDR) {
		rc = rc ? rc : -EINVAL;
		snprintf(err, errlen, "%s: cannot read the header%s", path,
			 w->xz ? " (corrupt .xz?)" : "");
		goto out_lzma;
	}
	if (le64(w->out) != RPL_WL_MAGIC || le32(w->out + 8) != 1) {
		rc = -EINVAL;
		snprintf(err, errlen, "%s: not a MEBW_001 version 1 workload", path);
		goto out_lzma;
	}
	w->count = le32(w->out + 12);
	w->out_pos = WL_HDR;
	*out = w;
	return 0;

out_lzma:
	if (w->xz)
		lzma_end(&w->lz);
out_close:
	close(w->fd);
out_free:
	free(w);
	return rc;
}

uint32_t rpl_wl_count(const struct rpl_wl *w)
{
	return w->count;
}

int rpl_wl_next(struct rpl_wl *w, struct rpl_msg *m)
{
	if (w->done == w->count)
		return 0;
	int rc = wl_fill(w, WL_REC);
	if (rc)
		return rc;
	if (w->out_len - w->out_pos < WL_REC)
		return -EIO; /* truncated: fewer records than announced */
	const uint8_t *p = w->out + w->out_pos;
	w->out_pos += WL_REC;
	w->done++;
	if (p[0] > 2 || p[1] > 1 || p[2] > 1)
		return -EINVAL;
	memset(m, 0, sizeof(*m));
	m->type = p[0];
	m->side = p[1];
	m->tif = p[2] ? SHM_TIF_IOC : SHM_TIF_GTC;
	m->qty = le32(p + 4);
	m->seq = le64(p + 8);
	m->order_id = le64(p + 16);
	m->price = (int64_t)le64(p + 24);
	return 1;
}

void rpl_wl_close(struct rpl_wl *w)
{
	if (!w)
		return;
	if (w->xz)
		lzma_end(&w->lz);
	close(w->fd);
	free(w);
}

int rpl_wl_load(const char *path, struct rpl_msg **msgs, size_t *n, char *err,
		size_t errlen)
{
	*msgs = NULL;
	*n = 0;
	struct rpl_wl *w;
	int rc = rpl_wl_open(&w, path, err, errlen);
	if (rc)
		return rc;
	struct rpl_msg *v = malloc(((size_t)w->count + 1) * sizeof(*v));
	if (!v) {
		rpl_wl_close(w);
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	size_t k = 0;
	while ((rc = rpl_wl_next(w, &v[k])) == 1)
		k++;
	rpl_wl_close(w);
	if (rc < 0) {
		free(v);
		snprintf(err, errlen, "%s: bad or truncated record %zu", path, k);
		return rc;
	}
	*msgs = v;
	*n = k;
	return 0;
}
