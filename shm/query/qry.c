/*
 * qry: read-only inspection of a running exchange (contract in
 * qry.h), the library of `shmex-query`.
 *
 * Shape.  The handle attaches the control region as an observer and opens
 * a shm_snap handle per shard on first use.  Commands gather what they show
 * into private structs first and print afterwards, so no output is ever
 * produced from inside a read-side section and a failed read prints
 * nothing.  Text and JSON share the gathering code; JSON is one line per
 * result (decimals as strings in the shortest exact form, ids and counters
 * as numbers), written by a few helpers here rather than a library so that
 * shm/ keeps no dependency beyond libc and liburcu.
 *
 * The full-book snapshot.  shm_snap offers top of book and depth, each its
 * own snapshot; `book` needs the symbol's counters and its levels (and, for
 * --orders and the invariant checker, every order of every level) from ONE
 * state.  snap_try() therefore walks the symbol itself, with the same
 * protocol as shm_snap.c: inside a read-side section of the shard's reader
 * table (nothing reachable is reused under it) it loads the symbol's
 * seqcount with acquire [QY1] (pairs with the matcher's closing release
 * [BK4]; odd means a change is in progress), loads every link with acquire
 * [BK2] and every other field relaxed, then issues an acquire fence [QY2]
 * (pairs with the matcher's opening fence [BK3]) and re-reads the
 * seqcount: unchanged means nothing it read belongs to another state.
 * Walks are bounded by the pools' capacities and every index is checked
 * against them, so a torn or corrupted list ends the walk instead of
 * looping or leaving the mapping.  Semantic invariants are judged only on
 * stable snapshots (qry_snap_check), where a violation is real.
 *
 * Limits.  A very deep book walked under heavy churn may stay unstable for
 * every try and answer SHMEX_EBUSY (the watch loop then shows the previous
 * frame's state as busy and tries again).  Positions are found by scanning
 * every position slot of every shard (no index by account): linear in the
 * positions capacity, fine for an operator's tool.
 */
#include "shm/query/qry.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "shm/shm_accounts.h"
#include "shm/shm_dec.h"
#include "shm/shm_error.h"
#include "shm/shm_history.h"
#include "shm/shm_msg.h"
#include "shm/shm_positions.h"
#include "shm/shm_proc.h"
#include "shm/shm_ring.h"

#define NIL SHM_BOOK_NIL
/* A snapshot attempt's "the seqcount moved, try again". */
#define SNAP_RETRY SHM_SNAP_RETRY

/* --- small formatting helpers --------------------------------------------- */

struct num {
	char s[48];
};

static struct num dec(int64_t v, int digits)
{
	struct num n;
	if (shm_dec_format(n.s, sizeof(n.s), v, digits) < 0)
		snprintf(n.s, sizeof(n.s), "?");
	return n;
}

/* 128-bit cash (accounts). */
static struct num cash(shm_cash_t v)
{
	struct num n;
	_Static_assert(sizeof(n.s) >= SHM_DEC_CASH_BUF - 8, "cash text");
	char b[SHM_DEC_CASH_BUF];
	if (shm_dec_format_cash(b, sizeof(b), v) < 0 || strlen(b) >= sizeof(n.s))
		snprintf(n.s, sizeof(n.s), "?");
	else
		memcpy(n.s, b, strlen(b) + 1);
	return n;
}

/* 128-bit share amounts (positions). */
static struct num shares(shm_shares_t v)
{
	struct num n;
	char b[SHM_DEC_128_BUF];
	if (shm_dec_format128(b, sizeof(b), v, SHM_QTY_DIGITS) < 0 ||
	    strlen(b) >= sizeof(n.s))
		snprintf(n.s, sizeof(n.s), "?");
	else
		memcpy(n.s, b, strlen(b) + 1);
	return n;
}

#define PX(v) (dec((v), SHM_PRICE_DIGITS).s)
#define QTY(v) (dec((v), SHM_QTY_DIGITS).s)
#define SHARES(v) (shares(v).s)
#define CASH(v) (cash(v).s)
#define PLURAL(n) ((n) == 1 ? "" : "s")

/* UTC time with nanoseconds, "-" for 0. */
static struct num utc(uint64_t ns)
{
	struct num n;
	struct tm tm;
	time_t t = (time_t)(ns / 1000000000u);
	if (ns == 0 || !gmtime_r(&t, &tm)) {
		snprintf(n.s, sizeof(n.s), "-");
		return n;
	}
	size_t k = strftime(n.s, sizeof(n.s), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(n.s + k, sizeof(n.s) - k, ".%09" PRIu64 "Z", ns % 1000000000u);
	return n;
}

/* A JSON string (names and messages; control bytes escaped). */
static void json_str(FILE *f, const char *s)
{
	fputc('"', f);
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '"' || c == '\\')
			fprintf(f, "\\%c", c);
		else if (c < 0x20)
			fprintf(f, "\\u%04x", c);
		else
			fputc(c, f);
	}
	fputc('"', f);
}

static const char *side_name(unsigned side)
{
	return side == SHM_SIDE_BUY ? "buy" : side == SHM_SIDE_SELL ? "sell" : "?";
}

static const char *tif_name(unsigned tif)
{
	static const char *const n[] = {"GTC", "IOC", "FOK"};
	return tif < 3 ? n[tif] : "?";
}

/* What an order's state means to a user. */
static const char *status_name(unsigned state, unsigned reason)
{
	static const char *const done[] = {
		"done", /* NONE: impossible for DONE */
		"filled",
		"cancelled",
		"cancelled (IOC remainder)",
		"killed (FOK)",
		"cancelled (self-trade prevention)",
		"cancelled (modified to zero)",
	};
	if (state == SHM_BOOK_ORDER_LIVE)
		return "open";
	if (state == SHM_BOOK_ORDER_DONE && reason < sizeof(done) / sizeof(done[0]))
		return done[reason];
	return "?";
}

/* --- handle --------------------------------------------------------------- */

int qry_open(struct qry *q, const char *instance)
{
	memset(q, 0, sizeof(*q));
	snprintf(q->instance, sizeof(q->instance), "%s", instance);
	int rc = shm_instance_attach(instance, SHM_ROLE_OBSERVER, 0, &q->inst);
	if (rc) {
		const char *why = shmex_error_msg(&q->inst.err, rc);
		if (rc == -ENOENT)
			shmex_error_set(&q->err, 0, "instance '%s' is not running: %s",
					instance, why);
		else if (rc == SHMEX_EBADNAME)
			shmex_error_set(&q->err, 0,
					"invalid instance name '%s' (1-%d of A-Z a-z "
					"0-9 _ -)",
					instance, SHM_INSTANCE_MAX);
		else
			shmex_error_set(&q->err, 0, "instance '%s': %s", instance, why);
		return rc;
	}
	q->nshards = q->inst.nshards;
	q->ngateways = q->inst.ngateways;
	q->rd = calloc(q->nshards, sizeof(*q->rd));
	q->rd_open = calloc(q->nshards, sizeof(*q->rd_open));
	if (!q->rd || !q->rd_open) {
		qry_close(q);
		shmex_error_set(&q->err, 0, "out of memory");
		return -ENOMEM;
	}
	return 0;
}

void qry_close(struct qry *q)
{
	for (uint32_t k = 0; q->rd_open && k < q->nshards; k++)
		if (q->rd_open[k])
			shm_snap_close(&q->rd[k]);
	free(q->rd);
	free(q->rd_open);
	q->rd = NULL;
	q->rd_open = NULL;
	shm_instance_detach(&q->inst);
}

int qry_shard(struct qry *q, uint32_t k, struct shm_snap **rd)
{
	if (k >= q->nshards) {
		shmex_error_set(&q->err, 0, "shard %u out of range (%u shards)", k,
				q->nshards);
		return SHMEX_EBADINDEX;
	}
	if (!q->rd_open[k]) {
		int rc = shm_snap_open(&q->rd[k], q->instance, k);
		if (rc) {
			/* rd.err names the object (book.<k>, readers.<k>). */
			if (q->rd[k].err.msg[0])
				q->err = q->rd[k].err;
			else
				shmex_error_set(&q->err, 0, "shard %u: %s", k,
						shmex_strerror(rc));
			return rc;
		}
		q->rd_open[k] = true;
	}
	*rd = &q->rd[k];
	return 0;
}

/* --- book ----------------------------------------------------------------- */

/* Finds the symbol's shard and index; messages in q->err. */
static int symbol_lookup(struct qry *q, const char *symbol, struct shm_snap **rd,
			 uint32_t *sym)
{
	size_t len = strlen(symbol);
	if (!shm_symbol_valid(symbol, len)) {
		shmex_error_set(&q->err, 0,
				"invalid symbol '%s' (1-%d letters and digits)", symbol,
				SHM_SYMBOL_MAX);
		return SHMEX_EBADSYMBOL;
	}
	uint32_t k = shm_shard_of_symbol(symbol, len, q->nshards);
	int rc = qry_shard(q, k, rd);
	if (rc)
		return rc;
	rc = shm_snap_symbol_find(*rd, symbol, len, sym);
	if (rc == SHMEX_ENOSYMBOL)
		shmex_error_set(&q->err, 0, "symbol '%s' does not exist (shard %u)",
				symbol, k);
	else if (rc)
		shmex_error_set(&q->err, 0, "symbol '%s': %s", symbol,
				shmex_strerror(rc));
	return rc;
}

static int snap_error(struct qry *q, const char *what, int rc)
{
	if (rc == SHMEX_EBUSY)
		shmex_error_set(&q->err, 0, "%s: the book kept changing; try again",
				what);
	else
		shmex_error_set(&q->err, 0, "%s: %s", what, shmex_strerror(rc));
	return rc;
}

static void level_text(FILE *f, const struct shm_snap_book *s,
		       const struct shm_snap_book_level *L, unsigned side)
{
	fprintf(f, "  %s %14s %14s %7u\n", side == SHM_SIDE_BUY ? "bid" : "ask",
		PX(L->price), QTY(L->qty), L->count);
	for (uint32_t j = 0; s->orders && j < L->n; j++) {
		const struct shm_snap_book_order *O = &s->ords[L->first + j];
		fprintf(f, "        order %" PRIu64 ", account %" PRIu64 ": %s of %s\n",
			O->id, O->account, QTY(O->open), QTY(O->amount));
	}
}

static void book_text(FILE *f, const struct shm_snap_book *s)
{
	fprintf(f, "%s (shard %u)\n", s->name, s->shard);
	fprintf(f, "  %-4s %14s %14s %7s\n", "side", "price", "qty", "orders");
	if (s->more[1])
		fprintf(f, "  ask  ...\n");
	for (size_t k = s->side_n[1]; k-- > 0;)
		level_text(f, s, &s->levels[s->side_first[1] + k], SHM_SIDE_SELL);
	if (s->side_n[1] == 0)
		fprintf(f, "  (no asks)\n");
	fprintf(f, "  ----\n");
	for (size_t k = 0; k < s->side_n[0]; k++)
		level_text(f, s, &s->levels[s->side_first[0] + k], SHM_SIDE_BUY);
	if (s->side_n[0] == 0)
		fprintf(f, "  (no bids)\n");
	if (s->more[0])
		fprintf(f, "  bid  ...\n");
	for (unsigned side = 0; side < 2; side++)
		fprintf(f, "%s: %u level%s, %u order%s, %s shares%s",
			side == SHM_SIDE_BUY ? "bids" : "asks", s->nlevels[side],
			PLURAL(s->nlevels[side]), s->norders[side],
			PLURAL(s->norders[side]), QTY(s->open_qty[side]),
			side == SHM_SIDE_BUY ? "; " : "\n");
	if (s->trades)
		fprintf(f, "last trade: %s @ %s; %" PRIu64 " trade%s, volume %s\n",
			QTY(s->last_qty), PX(s->last_price), s->trades, PLURAL(s->trades),
			QTY(s->volume));
	else
		fprintf(f, "no trades\n");
}

static void levels_json(FILE *f, const struct shm_snap_book *s, unsigned side)
{
	fputc('[', f);
	for (size_t k = 0; k < s->side_n[side]; k++) {
		const struct shm_snap_book_level *L = &s->levels[s->side_first[side] + k];
		fprintf(f, "%s{\"price\":\"%s\",\"qty\":\"%s\",\"orders\":%u",
			k ? "," : "", PX(L->price), QTY(L->qty), L->count);
		if (s->orders) {
			fprintf(f, ",\"queue\":[");
			for (uint32_t j = 0; j < L->n; j++) {
				const struct shm_snap_book_order *O =
					&s->ords[L->first + j];
				fprintf(f,
					"%s{\"id\":%" PRIu64 ",\"account\":%" PRIu64
					",\"open\":\"%s\",\"amount\":\"%s\",\"time_"
					"ns\":%" PRIu64 "}",
					j ? "," : "", O->id, O->account, QTY(O->open),
					QTY(O->amount), O->time_ns);
			}
			fputc(']', f);
		}
		fputc('}', f);
	}
	fputc(']', f);
}

static void book_json(FILE *f, const struct shm_snap_book *s)
{
	fprintf(f, "{\"symbol\":");
	json_str(f, s->name);
	fprintf(f, ",\"shard\":%u,\"bids\":", s->shard);
	levels_json(f, s, SHM_SIDE_BUY);
	fprintf(f, ",\"asks\":");
	levels_json(f, s, SHM_SIDE_SELL);
	fprintf(f, ",\"more_bids\":%s,\"more_asks\":%s", s->more[0] ? "true" : "false",
		s->more[1] ? "true" : "false");
	fprintf(f, ",\"bid_levels\":%u,\"bid_orders\":%u,\"bid_qty\":\"%s\"",
		s->nlevels[0], s->norders[0], QTY(s->open_qty[0]));
	fprintf(f, ",\"ask_levels\":%u,\"ask_orders\":%u,\"ask_qty\":\"%s\"",
		s->nlevels[1], s->norders[1], QTY(s->open_qty[1]));
	fprintf(f, ",\"trades\":%" PRIu64 ",\"volume\":\"%s\"", s->trades,
		QTY(s->volume));
	if (s->trades)
		fprintf(f, ",\"last\":{\"price\":\"%s\",\"qty\":\"%s\"}",
			PX(s->last_price), QTY(s->last_qty));
	else
		fprintf(f, ",\"last\":null");
	fprintf(f, "}\n");
}

int qry_book(struct qry *q, FILE *out, unsigned flags, const char *symbol, size_t depth)
{
	struct shm_snap *rd;
	uint32_t sym;
	int rc = symbol_lookup(q, symbol, &rd, &sym);
	if (rc)
		return rc;
	struct shm_snap_book s;
	memset(&s, 0, sizeof(s));
	rc = shm_snap_book_read(rd, sym, depth, (flags & QRY_ORDERS) != 0, &s);
	if (rc == 0) {
		if (flags & QRY_JSON)
			book_json(out, &s);
		else
			book_text(out, &s);
	} else {
		snap_error(q, symbol, rc);
	}
	shm_snap_book_free(&s);
	return rc;
}

/* --- order ---------------------------------------------------------------- */

int qry_order(struct qry *q, FILE *out, unsigned flags, uint64_t id)
{
	if (id == 0) {
		shmex_error_set(&q->err, 0, "order 0 does not exist");
		return SHMEX_ENOORDER;
	}
	uint32_t k = shm_shard_of_order(id, q->nshards);
	struct shm_snap *rd;
	int rc = qry_shard(q, k, &rd);
	if (rc)
		return rc;
	struct shm_snap_order o;
	struct shm_snap_fill *fills = NULL;
	size_t max = 16, nf = 0;
	for (;;) {
		struct shm_snap_fill *p = realloc(fills, max * sizeof(*fills));
		if (!p) {
			rc = -ENOMEM;
			break;
		}
		fills = p;
		rc = shm_snap_order(rd, id, &o, fills, max, &nf);
		if (rc == SHMEX_ENOORDER) {
			/* Finished and gone from the book: the order history
			 * (shm_history.h) has it. */
			struct shm_history h = {0};
			struct shmex_error he = {0};
			rc = shm_history_lookup(&h, rd, q->inst.data_dir, id, &o, fills,
						max, &nf, &he);
			shm_history_close(&h);
			if (rc && rc != SHMEX_ENOORDER) {
				shmex_error_set(&q->err, rc, "order %" PRIu64 ": %s", id,
						he.msg[0] ? he.msg : shmex_strerror(rc));
				free(fills);
				return rc;
			}
		}
		/* More fills than room: read again with room for all. */
		if (rc || o.nfills <= max)
			break;
		if (o.nfills > rd->view.cap_fills) {
			rc = SHMEX_EBADINDEX;
			break;
		}
		max = o.nfills;
	}
	if (rc) {
		if (rc == SHMEX_ENOORDER)
			shmex_error_set(&q->err, 0, "order %" PRIu64 " does not exist",
					id);
		else
			snap_error(q, "order", rc);
		free(fills);
		return rc;
	}
	char name[16];
	if (shm_snap_symbol_name(rd, o.sym, name) != 0)
		snprintf(name, sizeof(name), "?");
	const char *st = status_name(o.state, o.done_reason);
	if (flags & QRY_JSON) {
		fprintf(out,
			"{\"id\":%" PRIu64 ",\"shard\":%u,\"account\":%" PRIu64
			",\"symbol\":",
			o.id, k, o.account);
		json_str(out, name);
		fprintf(out,
			",\"side\":\"%s\",\"tif\":\"%s\",\"price\":\"%s\","
			"\"amount\":\"%s\""
			",\"status\":",
			side_name(o.side), tif_name(o.tif), PX(o.price), QTY(o.amount));
		json_str(out, st);
		fprintf(out,
			",\"open\":\"%s\",\"executed\":\"%s\",\"cancelled\":\"%s\""
			",\"time_ns\":%" PRIu64 ",\"cancel_time_ns\":%" PRIu64
			",\"fills\":[",
			QTY(o.open), QTY(o.executed), QTY(o.cancelled), o.time_ns,
			o.cancel_time_ns);
		for (size_t i = 0; i < nf; i++)
			fprintf(out,
				"%s{\"qty\":\"%s\",\"price\":\"%s\",\"time_"
				"ns\":%" PRIu64 ",\"counterparty\":%" PRIu64
				",\"event\":%" PRIu64 ",\"maker\":%s}",
				i ? "," : "", QTY(fills[i].qty), PX(fills[i].price),
				fills[i].time_ns, fills[i].counterparty, fills[i].event,
				fills[i].maker ? "true" : "false");
		fprintf(out, "]}\n");
	} else {
		fprintf(out,
			"order %" PRIu64 ": %s %s %s @ %s %s, account %" PRIu64
			", shard %u\n",
			o.id, side_name(o.side), QTY(o.amount), name, PX(o.price),
			tif_name(o.tif), o.account, k);
		fprintf(out, "  status     %s\n", st);
		fprintf(out, "  open       %s\n", QTY(o.open));
		fprintf(out, "  executed   %s\n", QTY(o.executed));
		fprintf(out, "  cancelled  %s\n", QTY(o.cancelled));
		fprintf(out, "  accepted   %s\n", utc(o.time_ns).s);
		if (o.cancel_time_ns)
			fprintf(out, "  cancel at  %s\n", utc(o.cancel_time_ns).s);
		fprintf(out, "  fills      %zu\n", nf);
		for (size_t i = 0; i < nf; i++)
			fprintf(out, "    %s @ %s  %s  %s, counterparty %" PRIu64 "\n",
				QTY(fills[i].qty), PX(fills[i].price),
				utc(fills[i].time_ns).s,
				fills[i].maker ? "maker" : "taker",
				fills[i].counterparty);
	}
	free(fills);
	return 0;
}

/* --- account -------------------------------------------------------------- */

struct pos {
	uint64_t account;
	char sym[16];
	uint32_t shard;
	shm_shares_t amount, reserved;
};

static int pos_cmp(const void *a, const void *b)
{
	const struct pos *x = a, *y = b;
	int c = strcmp(x->sym, y->sym);
	return c ? c : (x->shard > y->shard) - (x->shard < y->shard);
}

/* Every position of account *id (of every account when id is NULL) in
 * shard k, appended to *v. */
static int positions_of(struct qry *q, uint32_t k, const uint64_t *id, struct pos **v,
			size_t *n, size_t *cap)
{
	struct shm_positions p;
	int rc = shm_positions_attach(&p, q->instance, k, SHM_RDONLY);
	if (rc) {
		shmex_error_set(&q->err, 0, "positions of shard %u: %s", k,
				shmex_error_msg(&p.region.err, rc));
		return rc;
	}
	for (uint32_t i = 0; i < p.pos_slots; i++) {
		struct shm_position_view pv;
		if (shm_positions_read_slot(&p, i, &pv) != 0 || (id && pv.account != *id))
			continue;
		if (*n == *cap) {
			size_t ncap = *cap ? 2 * *cap : 16;
			struct pos *nv = realloc(*v, ncap * sizeof(**v));
			if (!nv) {
				rc = -ENOMEM;
				shmex_error_set(&q->err, rc, "out of memory");
				break;
			}
			*v = nv;
			*cap = ncap;
		}
		struct pos *x = &(*v)[(*n)++];
		x->account = pv.account;
		size_t len = shm_symbol_unpack_len(pv.symbol);
		memcpy(x->sym, pv.symbol, 16);
		x->sym[len < 16 ? len : 15] = '\0';
		x->shard = k;
		x->amount = pv.amount;
		x->reserved = pv.reserved;
	}
	shm_positions_detach(&p);
	return rc;
}

int qry_account(struct qry *q, FILE *out, unsigned flags, uint64_t id)
{
	struct shm_accounts a;
	struct shm_account_view av;
	int rc = shm_accounts_attach(&a, q->instance, SHM_RDONLY);
	if (rc) {
		shmex_error_set(&q->err, 0, "accounts: %s",
				shmex_error_msg(&a.region.err, rc));
		return rc;
	}
	rc = shm_accounts_read(&a, id, &av);
	shm_accounts_detach(&a);
	if (rc) {
		if (rc == SHMEX_ENOACCOUNT)
			shmex_error_set(&q->err, 0, "account %" PRIu64 " does not exist",
					id);
		else
			shmex_error_set(&q->err, 0, "account %" PRIu64 ": %s", id,
					shmex_strerror(rc));
		return rc;
	}
	struct pos *v = NULL;
	size_t n = 0, cap = 0;
	for (uint32_t k = 0; k < q->nshards && rc == 0; k++)
		rc = positions_of(q, k, &id, &v, &n, &cap);
	if (rc) {
		free(v);
		return rc;
	}
	if (n > 1)
		qsort(v, n, sizeof(*v), pos_cmp);
	if (flags & QRY_JSON) {
		fprintf(out,
			"{\"account\":%" PRIu64 ",\"balance\":\"%s\",\"reserved\":\"%s\""
			",\"deposited\":\"%s\",\"positions\":[",
			av.id, CASH(av.balance), CASH(av.reserved), CASH(av.deposited));
		for (size_t i = 0; i < n; i++) {
			fprintf(out, "%s{\"symbol\":", i ? "," : "");
			json_str(out, v[i].sym);
			fprintf(out,
				",\"shard\":%u,\"amount\":\"%s\",\"reserved\":"
				"\"%s\"}",
				v[i].shard, SHARES(v[i].amount), SHARES(v[i].reserved));
		}
		fprintf(out, "]}\n");
	} else {
		fprintf(out, "account %" PRIu64 "\n", av.id);
		fprintf(out, "  balance    %s\n", CASH(av.balance));
		fprintf(out, "  reserved   %s\n", CASH(av.reserved));
		fprintf(out, "  deposited  %s\n", CASH(av.deposited));
		if (n == 0)
			fprintf(out, "  no positions\n");
		else
			fprintf(out, "  symbol           shard         amount  "
				     "     reserved\n");
		for (size_t i = 0; i < n; i++)
			fprintf(out, "  %-15s %6u %14s %14s\n", v[i].sym, v[i].shard,
				SHARES(v[i].amount), SHARES(v[i].reserved));
	}
	free(v);
	return 0;
}

/* --- readers -------------------------------------------------------------- */

struct readers_shard {
	struct shm_rcu_stats st;
	struct shm_rcu_reader_info *info;
	size_t n;
	unsigned cleared;
	bool cleaned;
};

static int readers_gather(struct qry *q, uint32_t k, bool clear, struct readers_shard *r)
{
	struct shm_rcu t;
	int rc = shm_rcu_attach(&t, q->instance, k,
				clear ? SHM_RCU_READER : SHM_RCU_OBSERVER);
	if (rc) {
		shmex_error_set(&q->err, 0, "reader table of shard %u: %s", k,
				shmex_error_msg(&t.region.err, rc));
		return rc;
	}
	if (clear) {
		rc = shm_rcu_clear_stale(&t, &r->cleared);
		if (rc) {
			shmex_error_set(&q->err, 0,
					"reader table of shard %u: clearing stale "
					"slots: %s",
					k, shmex_strerror(rc));
			goto out_detach;
		}
		r->cleaned = true;
	}
	shm_rcu_stats(&t, &r->st);
	r->info = calloc(t.nslots ? t.nslots : 1, sizeof(*r->info));
	if (!r->info) {
		rc = -ENOMEM;
		shmex_error_set(&q->err, 0, "out of memory");
		goto out_detach;
	}
	rc = shm_rcu_list(&t, r->info, t.nslots, &r->n);
	if (r->n > t.nslots)
		r->n = t.nslots;
	if (rc)
		shmex_error_set(&q->err, 0, "reader table of shard %u: %s", k,
				shmex_strerror(rc));
out_detach:
	shm_rcu_detach(&t);
	return rc;
}

static void readers_print(FILE *f, unsigned flags, uint32_t k,
			  const struct readers_shard *r, bool first)
{
	const struct shm_rcu_stats *st = &r->st;
	if (flags & QRY_JSON) {
		fprintf(f,
			"%s{\"shard\":%u,\"epoch\":%" PRIu64 ",\"safe_epoch\":%" PRIu64
			",\"slots\":%u,\"registered\":%u,\"active\":%u,\"max_"
			"lag\":%" PRIu64 ",\"reaped\":%" PRIu64,
			first ? "" : ",", k, st->epoch, st->safe_epoch, st->nslots,
			st->registered, st->active, st->max_lag, st->reaped);
		if (r->cleaned)
			fprintf(f, ",\"cleared\":%u", r->cleared);
		fprintf(f, ",\"readers\":[");
		for (size_t i = 0; i < r->n; i++) {
			const struct shm_rcu_reader_info *x = &r->info[i];
			fprintf(f,
				"%s{\"slot\":%u,\"pid\":%d,\"alive\":%s,\"in_"
				"section\":%s"
				",\"epoch\":%" PRIu64 ",\"lag\":%" PRIu64
				",\"nesting\":%u}",
				i ? "," : "", x->slot, x->pid,
				x->alive ? "true" : "false",
				x->in_section ? "true" : "false", x->epoch, x->lag,
				x->nesting);
		}
		fprintf(f, "]}");
		return;
	}
	if (r->cleaned)
		fprintf(f, "shard %u: cleared %u stale slot%s\n", k, r->cleared,
			r->cleared == 1 ? "" : "s");
	fprintf(f,
		"shard %u: epoch %" PRIu64 ", safe epoch %" PRIu64
		", %u of %u slots registered, %u in a section, oldest lag %" PRIu64
		", %" PRIu64 " reaped\n",
		k, st->epoch, st->safe_epoch, st->registered, st->nslots, st->active,
		st->max_lag, st->reaped);
	if (r->n == 0)
		return;
	fprintf(f, "   slot      pid  alive            epoch        lag  nesting\n");
	for (size_t i = 0; i < r->n; i++) {
		const struct shm_rcu_reader_info *x = &r->info[i];
		char ep[24] = "-", lag[24] = "-";
		if (x->in_section) {
			snprintf(ep, sizeof(ep), "%" PRIu64, x->epoch);
			snprintf(lag, sizeof(lag), "%" PRIu64, x->lag);
		}
		fprintf(f, "  %5u %8d  %-5s %16s %10s %8u\n", x->slot, x->pid,
			x->alive ? "yes" : "no", ep, lag, x->nesting);
	}
}

int qry_readers(struct qry *q, FILE *out, unsigned flags)
{
	struct readers_shard *r = calloc(q->nshards, sizeof(*r));
	int rc = 0;
	if (!r) {
		shmex_error_set(&q->err, 0, "out of memory");
		return -ENOMEM;
	}
	for (uint32_t k = 0; k < q->nshards && rc == 0; k++)
		rc = readers_gather(q, k, (flags & QRY_CLEAR_STALE) != 0, &r[k]);
	if (rc == 0) {
		if (flags & QRY_JSON)
			fprintf(out, "{\"instance\":\"%s\",\"shards\":[", q->instance);
		for (uint32_t k = 0; k < q->nshards; k++)
			readers_print(out, flags, k, &r[k], k == 0);
		if (flags & QRY_JSON)
			fprintf(out, "]}\n");
	}
	for (uint32_t k = 0; k < q->nshards; k++)
		free(r[k].info);
	free(r);
	return rc;
}

/* --- stats ---------------------------------------------------------------- */

struct ring_depth {
	uint32_t depth;
	bool ok;
	bool repairing;   /* a repair is under way (quiesce asked) */
	uint32_t repairs; /* generations past the first */
	uint64_t corrupt; /* bad indexes the ends refused */
};

static struct ring_depth ring_depth(struct qry *q, bool request, uint32_t g, uint32_t k)
{
	struct shm_ring r;
	struct shm_ring_stats st;
	struct ring_depth d = {0};
	int rc = request ? shm_instance_request_ring(&q->inst, g, k, &r)
			 : shm_instance_reply_ring(&q->inst, k, g, &r);
	if (rc && rc != SHMEX_ERINGCORRUPT) /* a corrupt one is filled in */
		return d;
	shm_ring_stats(&r, &st);
	d.depth = st.depth;
	d.ok = !st.corrupt_now;
	d.repairing = st.quiescing;
	d.repairs = st.gen > 0 ? st.gen - 1 : 0;
	d.corrupt = st.corrupt;
	return d;
}

/* Per ring: its depth, or "corrupt"; then, when it has a history of
 * damage, how often it was repaired and how many bad indexes its ends
 * refused ("g0 0 (repaired 1, 2 corrupt seen)"). */
static void rings_print(FILE *f, unsigned flags, struct qry *q, uint32_t k, bool request)
{
	for (uint32_t g = 0; g < q->ngateways; g++) {
		struct ring_depth d = ring_depth(q, request, g, k);
		if (flags & QRY_JSON) {
			fprintf(f, "%s{\"gateway\":%u,", g ? "," : "", g);
			if (d.ok)
				fprintf(f, "\"depth\":%u", d.depth);
			else
				fprintf(f, "\"depth\":null");
			fprintf(f,
				",\"repairs\":%u,\"corrupt_seen\":%llu,\"repairing\":%s}",
				d.repairs, (unsigned long long)d.corrupt,
				d.repairing ? "true" : "false");
			continue;
		}
		if (d.ok)
			fprintf(f, "%s g%u %u", g ? "," : "", g, d.depth);
		else
			fprintf(f, "%s g%u corrupt", g ? "," : "", g);
		if (d.repairing || d.repairs || d.corrupt)
			fprintf(f, " (%srepaired %u, %llu corrupt seen)",
				d.repairing ? "repair under way, " : "", d.repairs,
				(unsigned long long)d.corrupt);
	}
}

/* --- state hash ------------------------------------------------------------ */

#define FNV_OFFSET UINT64_C(0xcbf29ce484222325)
#define FNV_PRIME UINT64_C(0x100000001b3)

static void fnv_bytes(uint64_t *h, const void *p, size_t n)
{
	const unsigned char *b = p;
	for (size_t i = 0; i < n; i++) {
		*h ^= b[i];
		*h *= FNV_PRIME;
	}
}

/* Integers are hashed one by one (never a struct: padding is not state). */
static void fnv_u64(uint64_t *h, uint64_t v)
{
	fnv_bytes(h, &v, sizeof(v));
}

static void hash_book(uint64_t *h, const struct shm_snap_book *b)
{
	fnv_bytes(h, b->name, sizeof(b->name));
	for (int s = 0; s < 2; s++) {
		fnv_u64(h, b->nlevels[s]);
		fnv_u64(h, b->norders[s]);
		fnv_u64(h, (uint64_t)b->open_qty[s]);
	}
	fnv_u64(h, (uint64_t)b->last_price);
	fnv_u64(h, (uint64_t)b->last_qty);
	fnv_u64(h, b->last_time_ns);
	fnv_u64(h, b->trades);
	fnv_u64(h, (uint64_t)b->volume);
	for (int s = 0; s < 2; s++) {
		for (size_t l = b->side_first[s]; l < b->side_first[s] + b->side_n[s];
		     l++) {
			const struct shm_snap_book_level *lv = &b->levels[l];
			fnv_u64(h, (uint64_t)lv->price);
			fnv_u64(h, (uint64_t)lv->qty);
			fnv_u64(h, lv->count);
			for (uint32_t i = lv->first; i < lv->first + lv->n; i++) {
				const struct shm_snap_book_order *o = &b->ords[i];
				fnv_u64(h, o->id);
				fnv_u64(h, o->account);
				fnv_u64(h, (uint64_t)o->price);
				fnv_u64(h, (uint64_t)o->open);
				fnv_u64(h, o->time_ns);
			}
		}
	}
}

static void hash_order(uint64_t *h, const struct shm_snap_order *o,
		       const struct shm_snap_fill *f, size_t nf)
{
	fnv_u64(h, o->id);
	fnv_u64(h, o->account);
	fnv_u64(h, o->sym);
	fnv_u64(h, (uint64_t)o->side << 24 | (uint64_t)o->tif << 16 |
			   (uint64_t)o->state << 8 | o->done_reason);
	fnv_u64(h, (uint64_t)o->price);
	fnv_u64(h, (uint64_t)o->amount);
	fnv_u64(h, (uint64_t)o->open);
	fnv_u64(h, (uint64_t)o->executed);
	fnv_u64(h, (uint64_t)o->cancelled);
	fnv_u64(h, o->time_ns);
	fnv_u64(h, o->cancel_time_ns);
	fnv_u64(h, o->nfills);
	for (size_t i = 0; i < nf; i++) {
		fnv_u64(h, (uint64_t)f[i].qty);
		fnv_u64(h, (uint64_t)f[i].price);
		fnv_u64(h, f[i].time_ns);
		fnv_u64(h, f[i].counterparty);
		fnv_u64(h, f[i].event);
		fnv_u64(h, f[i].maker);
	}
}

/* Shard k's books, order records and counters. */
static int hash_shard(struct qry *q, uint32_t k, uint64_t *h)
{
	struct shm_snap *rd;
	int rc = qry_shard(q, k, &rd);
	if (rc)
		return rc;
	struct shm_snap_book b;
	memset(&b, 0, sizeof(b));
	uint32_t nsym = shm_snap_nsymbols(rd);
	for (uint32_t s = 0; s < nsym && rc == 0; s++) {
		rc = shm_snap_book_read(rd, s, 0, true, &b);
		if (rc == 0)
			hash_book(h, &b);
		else
			shmex_error_set(&q->err, 0, "shard %u, symbol %u: %s", k, s,
					shmex_strerror(rc));
	}
	shm_snap_book_free(&b);
	size_t cap = 64, nf;
	struct shm_snap_fill *f = rc ? NULL : malloc(cap * sizeof(*f));
	if (!rc && !f)
		rc = -ENOMEM;
	for (uint32_t i = 0; i < rd->view.cap_orders && rc == 0; i++) {
		/* Relaxed: the id only names the record; shm_snap_order reads
		 * it in a section and checks it. */
		uint64_t id = load_relaxed(&rd->view.orders[i].id);
		struct shm_snap_order o;
		if (id == 0)
			continue;
		rc = shm_snap_order(rd, id, &o, f, cap, &nf);
		if (rc == 0 && o.nfills > cap) {
			struct shm_snap_fill *nfp = realloc(f, o.nfills * sizeof(*f));
			if (!nfp) {
				rc = -ENOMEM;
				break;
			}
			f = nfp;
			cap = o.nfills;
			rc = shm_snap_order(rd, id, &o, f, cap, &nf);
		}
		if (rc == SHMEX_ENOORDER) { /* a record being reused */
			rc = 0;
			continue;
		}
		if (rc == 0)
			hash_order(h, &o, f, nf);
		else
			shmex_error_set(&q->err, 0, "shard %u, order %" PRIu64 ": %s", k,
					id, shmex_strerror(rc));
	}
	free(f);
	if (rc == -ENOMEM)
		shmex_error_set(&q->err, rc, "out of memory");
	if (rc)
		return rc;
	struct shm_snap_shard_stats st;
	shm_snap_stats(rd, &st);
	fnv_u64(h, st.orders_created);
	fnv_u64(h, st.events);
	return 0;
}

static int pos_by_account(const void *a, const void *b)
{
	const struct pos *x = a, *y = b;
	if (x->account != y->account)
		return x->account < y->account ? -1 : 1;
	return pos_cmp(a, b);
}

static int acct_cmp(const void *a, const void *b)
{
	const struct shm_account_view *x = a, *y = b;
	return x->id < y->id ? -1 : x->id > y->id;
}

/* Every position of every shard into *v, sorted by account, symbol. */
static int all_positions(struct qry *q, struct pos **v, size_t *n)
{
	size_t cap = 0;
	*v = NULL;
	*n = 0;
	for (uint32_t k = 0; k < q->nshards; k++) {
		int rc = positions_of(q, k, NULL, v, n, &cap);
		if (rc) {
			free(*v);
			*v = NULL;
			return rc;
		}
	}
	if (*n > 1)
		qsort(*v, *n, sizeof(**v), pos_by_account);
	return 0;
}

/* Every account into *v (sorted by id), *n of them. */
static int all_accounts(struct qry *q, struct shm_account_view **v, size_t *n)
{
	struct shm_accounts a;
	int rc = shm_accounts_attach(&a, q->instance, SHM_RDONLY);
	if (rc) {
		shmex_error_set(&q->err, 0, "accounts: %s",
				shmex_error_msg(&a.region.err, rc));
		return rc;
	}
	*n = 0;
	*v = malloc(((size_t)a.nslots + 1) * sizeof(**v));
	if (!*v) {
		shm_accounts_detach(&a);
		shmex_error_set(&q->err, -ENOMEM, "out of memory");
		return -ENOMEM;
	}
	for (uint32_t i = 0; i < a.nslots; i++)
		if (shm_accounts_read_slot(&a, i, &(*v)[*n]) == 0)
			(*n)++;
	shm_accounts_detach(&a);
	if (*n > 1)
		qsort(*v, *n, sizeof(**v), acct_cmp);
	return 0;
}

/* A 128-bit value: its low 64 bits, and its high 64 bits too when it does
 * not fit an int64.  So every state of the int64 range hashes as it did
 * before 128-bit cash and positions, and two values that differ only in
 * the high word (by a multiple of 2^64 units) never hash the same for
 * that reason. */
static void fnv_i128(uint64_t *h, __int128 v)
{
	fnv_u64(h, (uint64_t)v);
	if (v < INT64_MIN || v > INT64_MAX)
		fnv_u64(h, (uint64_t)((unsigned __int128)v >> 64));
}

int qry_state_hash(struct qry *q, uint64_t *hash)
{
	uint64_t h = FNV_OFFSET;
	fnv_u64(&h, q->nshards);
	for (uint32_t k = 0; k < q->nshards; k++) {
		int rc = hash_shard(q, k, &h);
		if (rc)
			return rc;
	}
	struct pos *pv;
	size_t np;
	int rc = all_positions(q, &pv, &np);
	if (rc)
		return rc;
	for (size_t i = 0; i < np; i++) {
		fnv_u64(&h, pv[i].account);
		fnv_bytes(&h, pv[i].sym, sizeof(pv[i].sym));
		fnv_i128(&h, pv[i].amount);
		fnv_i128(&h, pv[i].reserved);
	}
	free(pv);
	struct shm_account_view *av;
	size_t na;
	rc = all_accounts(q, &av, &na);
	if (rc)
		return rc;
	for (size_t i = 0; i < na; i++) {
		fnv_u64(&h, av[i].id);
		fnv_i128(&h, av[i].balance);
		fnv_i128(&h, av[i].reserved);
		fnv_i128(&h, av[i].deposited);
	}
	free(av);
	*hash = h;
	return 0;
}

int qry_stats(struct qry *q, FILE *out, unsigned flags)
{
	struct shm_snap_shard_stats *st = calloc(q->nshards, sizeof(*st));
	if (!st) {
		shmex_error_set(&q->err, 0, "out of memory");
		return -ENOMEM;
	}
	/* A shard whose book cannot be read (its matcher is restarting and
	 * lays the book out again) is shown with its matcher and the reason;
	 * the other shards are shown as usual. */
	char(*why)[SHMEX_ERROR_MAX] = calloc(q->nshards, sizeof(*why));
	if (!why) {
		free(st);
		shmex_error_set(&q->err, 0, "out of memory");
		return -ENOMEM;
	}
	for (uint32_t k = 0; k < q->nshards; k++) {
		struct shm_snap *rd;
		int rc = qry_shard(q, k, &rd);
		if (rc)
			snprintf(why[k], sizeof(why[k]), "%s",
				 shmex_error_msg(&q->err, rc));
		else
			shm_snap_stats(rd, &st[k]);
	}
	bool json = flags & QRY_JSON;
	uint64_t hash = 0;
	if (flags & QRY_STATE_HASH) {
		int rc = qry_state_hash(q, &hash);
		if (rc) {
			free(st);
			free(why);
			return rc;
		}
	}
	uint32_t port = shm_instance_port(&q->inst);
	if (json && (flags & QRY_STATE_HASH))
		fprintf(out, "{\"state_hash\":\"%016" PRIx64 "\",", hash);
	else if (json)
		fprintf(out, "{");
	else if (flags & QRY_STATE_HASH)
		fprintf(out, "state hash %016" PRIx64 "\n", hash);
	if (json) {
		fprintf(out,
			"\"instance\":\"%s\",\"port\":%u,\"nshards\":%u,\"ngateways\":%u"
			",\"ring_capacity\":%u,\"gateways\":[",
			q->instance, port, q->nshards, q->ngateways,
			q->inst.ring_capacity);
	} else {
		fprintf(out,
			"instance %s: %u shard%s, %u gateway%s, rings of %u "
			"messages",
			q->instance, q->nshards, PLURAL(q->nshards), q->ngateways,
			PLURAL(q->ngateways), q->inst.ring_capacity);
		if (port)
			fprintf(out, ", listening on port %u", port);
		fprintf(out, "\n");
	}
	for (uint32_t g = 0; g < q->ngateways; g++) {
		int32_t pid;
		uint64_t start;
		struct shm_gateway_counters c;
		shm_instance_member(&q->inst, SHM_ROLE_GATEWAY, g, &pid, &start);
		shm_instance_gateway_counters(&q->inst, g, &c);
		bool alive = pid > 0 && shm_proc_alive(pid, start);
		if (json)
			fprintf(out,
				"%s{\"gateway\":%u,\"pid\":%d,\"alive\":%s,\"open\":%u"
				",\"requests\":%" PRIu64 ",\"refused\":%" PRIu64
				",\"outcome_unknown\":%" PRIu64 ",\"busy\":%" PRIu64 "}",
				g ? "," : "", g, pid, alive ? "true" : "false", c.open,
				c.requests, c.refused, c.unknown, c.busy);
		else
			fprintf(out,
				"gateway %u: pid %d (%s), %u connections open, %" PRIu64
				" requests, %" PRIu64 " connections refused, %" PRIu64
				" items outcome unknown, %" PRIu64 " busy\n",
				g, pid,
				alive     ? "alive"
				: pid > 0 ? "dead"
					  : "none",
				c.open, c.requests, c.refused, c.unknown, c.busy);
	}
	if (json)
		fprintf(out, "],\"shards\":[");
	for (uint32_t k = 0; k < q->nshards; k++) {
		const struct shm_snap_shard_stats *s = &st[k];
		int32_t pid;
		uint64_t start;
		shm_instance_member(&q->inst, SHM_ROLE_MATCHER, k, &pid, &start);
		bool alive = pid > 0 && shm_proc_alive(pid, start);
		if (why[k][0] && json) {
			fprintf(out,
				"%s{\"shard\":%u,\"matcher_pid\":%d,\"matcher_"
				"alive\":%s,\"available\":false,\"error\":",
				k ? "," : "", k, pid, alive ? "true" : "false");
			json_str(out, why[k]);
			fprintf(out, "}");
			continue;
		}
		if (why[k][0]) {
			fprintf(out,
				"shard %u: matcher pid %d (%s); book not available: %s\n",
				k, pid, alive ? "alive" : "dead", why[k]);
			continue;
		}
		if (json) {
			fprintf(out,
				"%s{\"shard\":%u,\"matcher_pid\":%d,\"matcher_"
				"alive\":%s"
				",\"available\":true"
				",\"symbols\":%u,\"cap_symbols\":%u,\"orders_"
				"live\":%u"
				",\"orders_used\":%u,\"cap_orders\":%u,\"orders_"
				"created\":%" PRIu64 ",\"rejects_full\":%" PRIu64
				",\"levels_live\":%u,\"cap_levels\":%u"
				",\"fills_used\":%u,\"cap_fills\":%u,\"events\":"
				"%" PRIu64 ",\"last_seq\":%" PRIu64 ",\"epoch\":%" PRIu64
				",\"safe_epoch\":%" PRIu64
				",\"reader_slots\":%u,\"readers_registered\":%u,"
				"\"readers_active\":%u"
				",\"max_lag\":%" PRIu64 ",\"reaped\":%" PRIu64
				",\"rings_in\":[",
				k ? "," : "", k, pid, alive ? "true" : "false",
				s->nsymbols, s->cap_symbols, s->orders_live,
				s->orders_used, s->cap_orders, s->orders_created,
				s->rejects_full, s->levels_live, s->cap_levels,
				s->fills_used, s->cap_fills, s->events, s->last_seq,
				s->readers.epoch, s->book_safe_epoch, s->readers.nslots,
				s->readers.registered, s->readers.active,
				s->readers.max_lag, s->readers.reaped);
			rings_print(out, flags, q, k, true);
			fprintf(out, "],\"rings_out\":[");
			rings_print(out, flags, q, k, false);
			fprintf(out, "]}");
			continue;
		}
		if (pid > 0)
			fprintf(out, "shard %u: matcher pid %d (%s)\n", k, pid,
				alive ? "alive" : "dead");
		else
			fprintf(out, "shard %u: no matcher attached\n", k);
		fprintf(out, "  symbols   %u of %u\n", s->nsymbols, s->cap_symbols);
		fprintf(out,
			"  orders    %u live, %u records used of %u, %" PRIu64
			" accepted, %" PRIu64
			" rejected because the book was full (other "
			"reject reasons are counted by the matcher only)\n",
			s->orders_live, s->orders_used, s->cap_orders, s->orders_created,
			s->rejects_full);
		fprintf(out, "  rejected ");
		for (int c = 0; c < SHM_BOOK_REJECT_CAUSES; c++)
			fprintf(out, "%s %" PRIu64 " %s", c ? "," : "", s->rejects_by[c],
				shm_book_reject_names[c]);
		fprintf(out, "\n");
		fprintf(out, "  levels    %u live of %u\n", s->levels_live,
			s->cap_levels);
		fprintf(out, "  fills     %u of %u\n", s->fills_used, s->cap_fills);
		fprintf(out, "  events    %" PRIu64 ", last request %" PRIu64 "\n",
			s->events, s->last_seq);
		fprintf(out,
			"  readers   %u of %u slots, %u in a section, oldest "
			"lag %" PRIu64 ", %" PRIu64 " reaped; epoch %" PRIu64
			", safe epoch %" PRIu64 "\n",
			s->readers.registered, s->readers.nslots, s->readers.active,
			s->readers.max_lag, s->readers.reaped, s->readers.epoch,
			s->book_safe_epoch);
		fprintf(out, "  rings in ");
		rings_print(out, flags, q, k, true);
		fprintf(out, "; out");
		rings_print(out, flags, q, k, false);
		fprintf(out, "\n");
	}
	if (json)
		fprintf(out, "]}\n");
	free(st);
	free(why);
	return 0;
}

/* --- metrics and instances ------------------------------------------------ */

int qry_metrics(struct qry *q, FILE *out, unsigned flags)
{
	(void)flags;
	static const struct {
		const char *name, *type, *help;
	} m[] = {
		{"shmex_matcher_up", "gauge",
		 "1 when the shard's matcher process is alive"},
		{"shmex_symbols", "gauge", "symbols in the shard's book"},
		{"shmex_symbols_capacity", "gauge", "symbol capacity of the shard"},
		{"shmex_orders_live", "gauge", "orders resting in the book"},
		{"shmex_order_records_used", "gauge", "order records in use"},
		{"shmex_order_records_capacity", "gauge", "order record capacity"},
		{"shmex_orders_accepted_total", "counter", "orders accepted"},
		{"shmex_orders_rejected_book_full_total", "counter",
		 "orders rejected because a pool of the book was full"},
		{"shmex_levels_live", "gauge", "price levels in use"},
		{"shmex_levels_capacity", "gauge", "price level capacity"},
		{"shmex_fills_used", "gauge", "fill records in use"},
		{"shmex_fills_capacity", "gauge", "fill record capacity"},
		{"shmex_events_total", "counter", "book events published"},
		{"shmex_reader_slots", "gauge", "reader table slots"},
		{"shmex_readers_registered", "gauge", "registered readers"},
		{"shmex_readers_active", "gauge", "readers inside a read-side section"},
		{"shmex_reader_max_lag", "gauge", "epochs the oldest active reader lags"},
		{"shmex_readers_reaped_total", "counter", "reader slots reclaimed"},
	};
	enum { NM = sizeof(m) / sizeof(m[0]) };
	uint64_t *v = calloc((size_t)q->nshards * NM, sizeof(*v));
	if (!v) {
		shmex_error_set(&q->err, 0, "out of memory");
		return -ENOMEM;
	}
	for (uint32_t k = 0; k < q->nshards; k++) {
		struct shm_snap *rd;
		int rc = qry_shard(q, k, &rd);
		if (rc) {
			free(v);
			return rc;
		}
		struct shm_snap_shard_stats s;
		shm_snap_stats(rd, &s);
		int32_t pid;
		uint64_t start;
		shm_instance_member(&q->inst, SHM_ROLE_MATCHER, k, &pid, &start);
		uint64_t row[NM] = {
			pid > 0 && shm_proc_alive(pid, start),
			s.nsymbols,
			s.cap_symbols,
			s.orders_live,
			s.orders_used,
			s.cap_orders,
			s.orders_created,
			s.rejects_full,
			s.levels_live,
			s.cap_levels,
			s.fills_used,
			s.cap_fills,
			s.events,
			s.readers.nslots,
			s.readers.registered,
			s.readers.active,
			s.readers.max_lag,
			s.readers.reaped,
		};
		memcpy(v + (size_t)k * NM, row, sizeof(row));
	}
	for (size_t i = 0; i < NM; i++) {
		fprintf(out, "# HELP %s %s\n# TYPE %s %s\n", m[i].name, m[i].help,
			m[i].name, m[i].type);
		for (uint32_t k = 0; k < q->nshards; k++)
			fprintf(out, "%s{instance=\"%s\",shard=\"%u\"} %" PRIu64 "\n",
				m[i].name, q->instance, k, v[(size_t)k * NM + i]);
	}
	static const char *const gm[][3] = {
		{"shmex_gateway_connections_open", "gauge", "connections open"},
		{"shmex_gateway_requests_total", "counter", "requests answered"},
		{"shmex_gateway_refused_total", "counter", "connections turned away"},
		{"shmex_gateway_outcome_unknown_total", "counter",
		 "items answered Outcome unknown"},
		{"shmex_gateway_busy_total", "counter", "items answered Exchange busy"},
	};
	for (size_t i = 0; i < sizeof(gm) / sizeof(gm[0]); i++) {
		fprintf(out, "# HELP %s %s\n# TYPE %s %s\n", gm[i][0], gm[i][2], gm[i][0],
			gm[i][1]);
		for (uint32_t g = 0; g < q->ngateways; g++) {
			struct shm_gateway_counters c;
			shm_instance_gateway_counters(&q->inst, g, &c);
			uint64_t val = i == 0   ? c.open
				       : i == 1 ? c.requests
				       : i == 2 ? c.refused
				       : i == 3 ? c.unknown
						: c.busy;
			fprintf(out, "%s{instance=\"%s\",gateway=\"%u\"} %" PRIu64 "\n",
				gm[i][0], q->instance, g, val);
		}
	}
	fprintf(out,
		"# HELP shmex_requests_rejected_total requests a matcher rejected, by "
		"cause\n# TYPE shmex_requests_rejected_total counter\n");
	for (uint32_t k = 0; k < q->nshards; k++) {
		struct shm_snap *rd;
		if (qry_shard(q, k, &rd) != 0)
			continue;
		struct shm_snap_shard_stats s;
		shm_snap_stats(rd, &s);
		for (int c = 0; c < SHM_BOOK_REJECT_CAUSES; c++)
			fprintf(out,
				"shmex_requests_rejected_total{instance=\"%s\",shard=\"%u\","
				"cause=\"%s\"} %" PRIu64 "\n",
				q->instance, k, shm_book_reject_names[c],
				s.rejects_by[c]);
	}
	fprintf(out, "# HELP shmex_ring_depth messages waiting in a ring\n"
		     "# TYPE shmex_ring_depth gauge\n");
	for (uint32_t k = 0; k < q->nshards; k++)
		for (uint32_t g = 0; g < q->ngateways; g++)
			for (int req = 1; req >= 0; req--) {
				struct ring_depth d = ring_depth(q, req, g, k);
				if (d.ok)
					fprintf(out,
						"shmex_ring_depth{instance=\"%s\",shard=\"%u\","
						"gateway=\"%u\",direction=\"%s\"} %u\n",
						q->instance, k, g,
						req ? "request" : "reply", d.depth);
			}
	free(v);
	return 0;
}

int qry_instances(FILE *out, unsigned flags)
{
	DIR *d = opendir("/dev/shm");
	if (!d)
		return -errno;
	bool json = flags & QRY_JSON, first = true;
	if (json)
		fprintf(out, "[");
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		const char *n = e->d_name;
		size_t len = strlen(n);
		static const char suffix[] = ".control";
		if (strncmp(n, "shmex.", 6) || len < 6 + sizeof(suffix) ||
		    strcmp(n + len - (sizeof(suffix) - 1), suffix))
			continue;
		char name[SHM_INSTANCE_MAX + 1];
		size_t nl = len - 6 - (sizeof(suffix) - 1);
		if (nl == 0 || nl > SHM_INSTANCE_MAX)
			continue;
		memcpy(name, n + 6, nl);
		name[nl] = 0;
		if (!shm_instance_name_valid(name))
			continue;
		struct shm_region_info info;
		int rc = shm_region_inspect(name, SHM_REGION_CONTROL, &info);
		const char *state = rc ? "unreadable"
				    : info.creator_alive
					    ? "running"
					    : "left over (its supervisor is gone)";
		struct shm_instance inst;
		bool shape = info.creator_alive &&
			     shm_instance_attach(name, SHM_ROLE_OBSERVER, 0, &inst) == 0;
		if (json) {
			fprintf(out, "%s{\"instance\":\"%s\",\"state\":\"%s\",\"pid\":%d",
				first ? "" : ",", name,
				rc                   ? "unreadable"
				: info.creator_alive ? "running"
						     : "leftover",
				rc ? 0 : (int)info.creator_pid);
			if (shape)
				fprintf(out, ",\"shards\":%u,\"gateways\":%u",
					inst.nshards, inst.ngateways);
			fprintf(out, "}");
		} else {
			fprintf(out, "%s: %s", name, state);
			if (!rc)
				fprintf(out, ", supervisor pid %d",
					(int)info.creator_pid);
			if (shape)
				fprintf(out, ", %u shards, %u gateways", inst.nshards,
					inst.ngateways);
			fprintf(out, "\n");
		}
		if (shape)
			shm_instance_detach(&inst);
		first = false;
	}
	closedir(d);
	if (json)
		fprintf(out, "]\n");
	return 0;
}

/* --- check ---------------------------------------------------------------- */

int qry_check(struct qry *q, FILE *out, unsigned flags, const char *symbol)
{
	struct shm_snap_book s;
	unsigned violations = 0, busy = 0, checked = 0;
	bool json = flags & QRY_JSON;
	bool first = true;
	int rc = 0;
	struct shm_snap *sym_rd = NULL;
	uint32_t sym_idx = 0;
	memset(&s, 0, sizeof(s));
	if (json)
		fprintf(out, "{\"symbols\":[");
	/* One symbol: look it up once; the loop below visits its shard. */
	if (symbol)
		rc = symbol_lookup(q, symbol, &sym_rd, &sym_idx);
	for (uint32_t k = 0; k < q->nshards && rc == 0; k++) {
		struct shm_snap *rd;
		uint32_t lo = 0, hi;
		if (symbol) {
			if (sym_rd->view.shard != k)
				continue;
			rd = sym_rd;
			lo = sym_idx;
			hi = lo + 1;
		} else {
			rc = qry_shard(q, k, &rd);
			if (rc)
				break;
			hi = shm_snap_nsymbols(rd);
		}
		for (uint32_t i = lo; i < hi; i++) {
			char why[256] = "";
			int r = shm_snap_book_read(rd, i, 0, true, &s);
			if (r == 0 &&
			    shm_snap_book_check(&s, &rd->view, why, sizeof(why)))
				r = SHMEX_EINTERNAL;
			else if (r && r != SHMEX_EBUSY)
				snprintf(why, sizeof(why), "%s", shmex_strerror(r));
			if (r == -ENOMEM) {
				rc = r;
				shmex_error_set(&q->err, 0, "out of memory");
				break;
			}
			checked++;
			busy += r == SHMEX_EBUSY;
			violations += r != 0 && r != SHMEX_EBUSY;
			const char *res = r == 0             ? "ok"
					  : r == SHMEX_EBUSY ? "busy"
							     : "VIOLATION";
			if (json) {
				fprintf(out, "%s{\"symbol\":", first ? "" : ",");
				json_str(out, s.name);
				fprintf(out, ",\"shard\":%u,\"result\":\"%s\"", k,
					r == 0             ? "ok"
					: r == SHMEX_EBUSY ? "busy"
							   : "violation");
				if (r == 0)
					fprintf(out, ",\"levels\":%zu,\"orders\":%zu",
						s.nlev, s.nord);
				else if (r != SHMEX_EBUSY) {
					fprintf(out, ",\"why\":");
					json_str(out, why);
				}
				fputc('}', out);
			} else if (r == 0) {
				fprintf(out,
					"%s (shard %u): ok, %zu levels, %zu "
					"orders\n",
					s.name, k, s.nlev, s.nord);
			} else {
				fprintf(out, "%s (shard %u): %s%s%s\n", s.name, k, res,
					why[0] ? ": " : "", why);
			}
			first = false;
		}
		if (symbol)
			break;
	}
	shm_snap_book_free(&s);
	if (rc)
		return rc;
	if (json)
		fprintf(out, "],\"checked\":%u,\"violations\":%u,\"busy\":%u}\n", checked,
			violations, busy);
	else
		fprintf(out, "%u symbols checked, %u violations, %u busy\n", checked,
			violations, busy);
	if (violations) {
		shmex_error_set(&q->err, 0, "%u invariant violation%s", violations,
				violations == 1 ? "" : "s");
		return SHMEX_EINTERNAL;
	}
	if (busy) {
		shmex_error_set(&q->err, 0, "%u symbol%s kept changing; try again", busy,
				busy == 1 ? "" : "s");
		return SHMEX_EBUSY;
	}
	return 0;
}

/* --- watch ---------------------------------------------------------------- */

/*
 * Is what the watch draws still served?  The exchange (the control
 * region's creator, the supervisor, alive and not stopping) and the
 * matcher that made the book being read (book.<k>'s creator, the same one
 * as when the watch began).  Returns 0, or SHMEX_ENOTREADY with q->err
 * saying which is gone.
 */
static int watch_still_served(struct qry *q, uint32_t k, const struct shm_region_info *b0)
{
	struct shm_region_info c, b;
	char book[SHM_REGION_NAME_MAX];
	if (shm_region_inspect(q->instance, SHM_REGION_CONTROL, &c) != 0 ||
	    !c.creator_alive)
		return shmex_error_set(
			&q->err, SHMEX_ENOTREADY,
			"instance '%s' is gone (its supervisor exited); the "
			"book shown last is not served any more",
			q->instance);
	if (shm_instance_stopping(&q->inst))
		return shmex_error_set(&q->err, SHMEX_ENOTREADY,
				       "instance '%s' is stopping", q->instance);
	(void)!shm_region_name(book, SHM_KIND_BOOK, k);
	int rc = shm_region_inspect(q->instance, book, &b);
	if (rc != 0 || !b.creator_alive)
		return shmex_error_set(
			&q->err, SHMEX_ENOTREADY,
			"the matcher of shard %u of instance '%s' is gone; "
			"the book shown last is not served any more",
			k, q->instance);
	if (b.creator_pid != b0->creator_pid || b.creator_start != b0->creator_start)
		return shmex_error_set(
			&q->err, SHMEX_ENOTREADY,
			"the matcher of shard %u of instance '%s' restarted "
			"(pid %d now): the book shown last is its "
			"predecessor's; start the watch again",
			k, q->instance, (int)b.creator_pid);
	return 0;
}

int qry_watch(struct qry *q, FILE *out, unsigned flags, const char *symbol, size_t depth,
	      unsigned long count, unsigned interval_ms,
	      const volatile sig_atomic_t *stop)
{
	struct shm_snap *rd;
	uint32_t sym;
	int rc = symbol_lookup(q, symbol, &rd, &sym);
	if (rc)
		return rc;
	uint32_t k = shm_shard_of_symbol(symbol, strlen(symbol), q->nshards);
	struct shm_region_info b0;
	char book[SHM_REGION_NAME_MAX];
	(void)!shm_region_name(book, SHM_KIND_BOOK, k);
	if (shm_region_inspect(q->instance, book, &b0) != 0)
		memset(&b0, 0, sizeof(b0));
	struct shm_snap_book s;
	memset(&s, 0, sizeof(s));
	for (unsigned long frame = 1; !*stop; frame++) {
		if ((rc = watch_still_served(q, k, &b0)) != 0)
			break;
		int r = shm_snap_book_read(rd, sym, depth, (flags & QRY_ORDERS) != 0, &s);
		if (r && r != SHMEX_EBUSY) {
			rc = snap_error(q, symbol, r);
			break;
		}
		if (flags & QRY_JSON) {
			if (r == 0)
				book_json(out, &s);
			else
				fprintf(out, "{\"symbol\":\"%s\",\"busy\":true}\n",
					symbol);
		} else {
			struct timespec now;
			struct tm tm;
			char hms[16] = "";
			clock_gettime(CLOCK_REALTIME, &now);
			if (localtime_r(&now.tv_sec, &tm))
				strftime(hms, sizeof(hms), "%H:%M:%S", &tm);
			if (flags & QRY_ANSI)
				fputs("\033[H\033[2J", out);
			fprintf(out,
				"shmex-query watch %s  instance %s  %s  frame "
				"%lu\n\n",
				symbol, q->instance, hms, frame);
			if (r == 0)
				book_text(out, &s);
			else
				fprintf(out, "(the book kept changing; retrying)\n");
		}
		fflush(out);
		if (count && frame >= count)
			break;
		struct timespec ts = {interval_ms / 1000,
				      (long)(interval_ms % 1000) * 1000000L};
		/* Interrupted by a signal: the loop re-checks *stop. */
		(void)nanosleep(&ts, NULL);
	}
	shm_snap_book_free(&s);
	return rc;
}
