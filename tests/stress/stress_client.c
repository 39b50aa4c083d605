/*
 * A client worker of shmex-stress: one process, one TCP connection at a
 * time (reconnected whenever its gateway dies), random requests until the
 * parent says stop.  The mix: single orders around a mid price (so they
 * cross), deep sweeps through many levels, multi-child transactions that
 * trade one account on both shards in one request, cancels and queries
 * of its own orders and of other accounts' orders, creates of accounts
 * (ids drawn from a small range, so several clients race for the same id)
 * and of shares, and malformed requests of every kind the gateway must
 * refuse without changing anything.
 *
 * Every reply is parsed and checked on the spot where the reply alone
 * decides (one child per item, echoes as sent, a refused item is an
 * <error>, an own order is never "does not exist"); what only the final
 * state can decide is appended to this slot's log (stress.h) for the
 * parent's quiescent check.  A create is logged *before* it is sent
 * (R_*_TRY), so a create whose outcome nobody heard (the client or its
 * gateway killed) is known as uncertain.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "shm/shm_atomic.h"
#include "shm/shm_dec.h"
#include "tests/client.h"
#include "tests/stress/stress.h"

#define REPLY_MS 15000
#define RECENT 64
#define MAX_ITEMS 12

enum item_kind { I_ORDER, I_QUERY, I_CANCEL, I_ACCT, I_SHARES, I_BAD };

struct item {
	enum item_kind kind;
	bool own;        /* QUERY/CANCEL of an order this account owns */
	uint64_t serial; /* ACCT/SHARES attempt */
	uint64_t account;
	int sym;
	int side;
	char amount[32], limit[32]; /* ORDER: the text sent */
	uint64_t order;             /* QUERY/CANCEL target */
};

struct req {
	char xml[8192];
	size_t len;
	int n;
	struct item it[MAX_ITEMS];
	bool whole_error; /* the whole request must be one <error> */
	bool fatal;       /* a framing error: the gateway closes */
	uint64_t account; /* of a <transactions> */
};

static struct {
	int slot;
	uint64_t rng;
	struct st_client_sh *me;
	uint64_t serial;
	struct {
		uint64_t id, account;
	} recent[RECENT];
	unsigned nrecent;
} W;

static void logrec(const struct st_rec *r)
{
	uint64_t n = W.me->nlog;
	if (n >= ST_LOG_CAP)
		return; /* full: later replies are checked on the spot only */
	W.me->log[n] = *r;
	/* Publishes the record (pairs with the parent's acquire). */
	store_release(&W.me->nlog, n + 1);
}

static void put(struct req *q, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static void put(struct req *q, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(q->xml + q->len, sizeof(q->xml) - q->len, fmt, ap);
	va_end(ap);
	if (n > 0 && (size_t)n < sizeof(q->xml) - q->len)
		q->len += (size_t)n;
}

static uint64_t pick_account(void)
{
	return 1 + st_below(&W.rng, ST_NACC);
}

static void add_order(struct req *q, uint64_t account, bool sweep)
{
	struct item *it = &q->it[q->n++];
	memset(it, 0, sizeof(*it));
	it->kind = I_ORDER;
	it->account = account;
	it->sym = (int)st_below(&W.rng, ST_NSYMS);
	it->side = (int)st_below(&W.rng, 2);
	int amt = sweep ? 50 + (int)st_below(&W.rng, 250) : 1 + (int)st_below(&W.rng, 20);
	int px = sweep ? (it->side ? 75 : 125) : 90 + (int)st_below(&W.rng, 21);
	snprintf(it->amount, sizeof(it->amount), "%s%d%s", it->side ? "-" : "", amt,
		 st_below(&W.rng, 10) == 0 ? ".5" : "");
	snprintf(it->limit, sizeof(it->limit), "%d%s", px,
		 st_below(&W.rng, 8) == 0 ? ".25" : "");
	put(q, "<order sym=\"%s\" amount=\"%s\" limit=\"%s\"/>", st->syms[it->sym],
	    it->amount, it->limit);
}

/* A recent order id; *account its owner.  0 when there is none. */
static uint64_t pick_recent(uint64_t *account)
{
	if (!W.nrecent)
		return 0;
	unsigned n = W.nrecent < RECENT ? W.nrecent : RECENT;
	unsigned k = (unsigned)st_below(&W.rng, n);
	*account = W.recent[k].account;
	return W.recent[k].id;
}

/* A recent order of `account` (most of the time) or of anybody. */
static uint64_t pick_ref(uint64_t account, uint64_t *owner)
{
	unsigned n = W.nrecent < RECENT ? W.nrecent : RECENT;
	if (n && st_below(&W.rng, 6) != 0) {
		unsigned k0 = (unsigned)st_below(&W.rng, n);
		for (unsigned k = 0; k < n; k++) {
			unsigned j = (k0 + k) % n;
			if (W.recent[j].account == account) {
				*owner = account;
				return W.recent[j].id;
			}
		}
	}
	return pick_recent(owner);
}

static void add_ref(struct req *q, enum item_kind kind, uint64_t account)
{
	uint64_t owner = 0;
	uint64_t id = pick_ref(account, &owner);
	struct item *it = &q->it[q->n++];
	memset(it, 0, sizeof(*it));
	it->kind = kind;
	it->account = account;
	if (!id) {
		/* Nothing placed yet: an id no shard has issued. */
		it->kind = I_BAD;
		put(q, "<%s id=\"18446744073709551615\"/>",
		    kind == I_QUERY ? "query" : "cancel");
		return;
	}
	it->order = id;
	it->own = owner == account;
	put(q, "<%s id=\"%llu\"/>", kind == I_QUERY ? "query" : "cancel",
	    (unsigned long long)id);
}

/* <transactions> of one account: orders on any shard, queries, cancels. */
static void gen_transactions(struct req *q, int nchildren, bool sweep)
{
	/* Queries and cancels of an account's own orders: take the owner
	 * of a recent order as the account, most of the time. */
	uint64_t account = pick_account(), owner;
	if (W.nrecent && st_below(&W.rng, 4) != 0 && pick_recent(&owner))
		account = owner;
	q->account = account;
	put(q, "<transactions id=\"%llu\">", (unsigned long long)account);
	for (int i = 0; i < nchildren && q->n < MAX_ITEMS; i++) {
		unsigned r = (unsigned)st_below(&W.rng, 10);
		if (r < 6 || nchildren == 1)
			add_order(q, account, sweep);
		else if (r < 8)
			add_ref(q, I_QUERY, account);
		else
			add_ref(q, I_CANCEL, account);
	}
	put(q, "</transactions>");
}

static void gen_ref_only(struct req *q, enum item_kind kind)
{
	uint64_t owner;
	uint64_t account = pick_recent(&owner) ? owner : pick_account();
	q->account = account;
	put(q, "<transactions id=\"%llu\">", (unsigned long long)account);
	add_ref(q, kind, account);
	put(q, "</transactions>");
}

static void gen_create(struct req *q)
{
	put(q, "<create>");
	int n = 1 + (int)st_below(&W.rng, 3);
	for (int i = 0; i < n; i++) {
		struct item *it = &q->it[q->n++];
		memset(it, 0, sizeof(*it));
		it->serial = ((uint64_t)W.slot << 48) | ++W.serial;
		if (st_below(&W.rng, 2) == 0) {
			it->kind = I_ACCT;
			it->account = ST_NEW_ACC_LO + st_below(&W.rng, ST_NEW_ACC_N);
			int bal = 1000 + (int)st_below(&W.rng, 100000);
			snprintf(it->amount, sizeof(it->amount), "%d", bal);
			put(q, "<account id=\"%llu\" balance=\"%d\"/>",
			    (unsigned long long)it->account, bal);
		} else {
			it->kind = I_SHARES;
			/* Mostly setup accounts; sometimes a racing new id
			 * that may not exist (then an <error>). */
			it->account =
				st_below(&W.rng, 4)
					? pick_account()
					: ST_NEW_ACC_LO + st_below(&W.rng, ST_NEW_ACC_N);
			it->sym = (int)st_below(&W.rng, ST_NSYMS);
			int sh = 1 + (int)st_below(&W.rng, 500);
			snprintf(it->amount, sizeof(it->amount), "%d", sh);
			put(q,
			    "<symbol sym=\"%s\"><account id=\"%llu\">%d</account></symbol>",
			    st->syms[it->sym], (unsigned long long)it->account, sh);
		}
	}
	put(q, "</create>");
}

static const char *const bad_docs[] = {
	"<transactions id=\"1\"><order sym=\"A\" amount=\"1\" limit=\"1\"></transactions>",
	"<hello/>",
	"<!DOCTYPE x [<!ENTITY a \"b\">]><create/>",
	"not xml at all",
	"<transactions id=\"1\"><order sym=\"A\" amount=\"1\" limit=\"1\"/>",
	"",
};

/* A request the gateway must refuse item by item, or as a whole. */
static void gen_bad(struct req *q)
{
	unsigned r = (unsigned)st_below(&W.rng, 12);
	const char *sym = st->syms[st_below(&W.rng, ST_NSYMS)];
	if (r < 6) {
		q->whole_error = true;
		put(q, "%s", bad_docs[r]);
		return;
	}
	if (r == 6) {
		q->fatal = true; /* a length line that is not a number */
		return;
	}
	static const struct {
		const char *pre, *post; /* around the symbol */
	} bad_items[] = {
		{"<order sym=\"", "\" amount=\"abc\" limit=\"10\"/>"},
		{"<order sym=\"", "\" amount=\"0\" limit=\"10\"/>"},
		{"<order sym=\"", "\" amount=\"5\" limit=\"-3\"/>"},
		{"<order sym=\"", "\" amount=\"1.00001\" limit=\"10\"/>"},
		{"<order sym=\"", "TOOLONGSYMBOLNAME\" amount=\"1\" limit=\"10\"/>"},
		{"<order sym=\"", "\" amount=\"1e5\" limit=\"10\"/>"},
		{"<order sym=\"", "\" amount=\"99999999999999\" limit=\"99999999999\"/>"},
		{"<query id=\"0\"/><!--", "-->"},
		{"<cancel id=\"abc\"/><!--", "-->"},
		{"<bogus sym=\"", "\"/>"},
	};
	/* Valid XML, invalid items; sometimes an account that does not
	 * exist, which spoils every item. */
	bool noacct = r == 7;
	uint64_t account = noacct ? 999999 : pick_account();
	q->account = account;
	put(q, "<transactions id=\"%llu\">", (unsigned long long)account);
	int n = 1 + (int)st_below(&W.rng, 3);
	for (int i = 0; i < n; i++) {
		struct item *it = &q->it[q->n++];
		memset(it, 0, sizeof(*it));
		it->kind = I_BAD;
		if (noacct) {
			put(q, "<order sym=\"%s\" amount=\"1\" limit=\"100\"/>", sym);
			continue;
		}
		unsigned b = (unsigned)st_below(&W.rng,
						sizeof(bad_items) / sizeof(bad_items[0]));
		put(q, "%s%s%s", bad_items[b].pre, sym, bad_items[b].post);
	}
	/* A cancel of somebody else's order. */
	uint64_t owner;
	uint64_t id = pick_recent(&owner);
	if (!noacct && id && owner != account && q->n < MAX_ITEMS) {
		struct item *it = &q->it[q->n++];
		memset(it, 0, sizeof(*it));
		it->kind = I_BAD;
		put(q, "<cancel id=\"%llu\"/>", (unsigned long long)id);
	}
	put(q, "</transactions>");
}

static void gen(struct req *q)
{
	q->len = 0;
	q->n = 0;
	q->whole_error = false;
	q->fatal = false;
	q->account = 0;
	unsigned r = (unsigned)st_below(&W.rng, 100);
	if (r < 35)
		gen_transactions(q, 1, false);
	else if (r < 42)
		gen_transactions(q, 1, true); /* a deep sweep */
	else if (r < 60)
		gen_transactions(q, 2 + (int)st_below(&W.rng, 5),
				 st_below(&W.rng, 5) == 0);
	else if (r < 72)
		gen_ref_only(q, I_CANCEL);
	else if (r < 84)
		gen_ref_only(q, I_QUERY);
	else if (r < 92)
		gen_create(q);
	else
		gen_bad(q);
}

/* ---- replies ---- */

static int64_t dec(const char *s, int digits)
{
	int64_t v = 0;
	if (!s || shm_dec_parse(s, strlen(s), digits, &v) != 0)
		return INT64_MIN;
	return v;
}

static void remember(uint64_t id, uint64_t account)
{
	unsigned k = W.nrecent++ % RECENT;
	W.recent[k].id = id;
	W.recent[k].account = account;
}

/* <status> or <canceled> with its parts -> a log record. */
static void status_rec(const struct xdoc *d, int i, const struct item *it, int type)
{
	struct st_rec r = {
		.type = (uint8_t)type, .id = it->order, .account = it->account};
	int n = xdoc_nchildren(d, i);
	for (int k = 0; k < n; k++) {
		const struct xnode *p = &d->nodes[xdoc_child(d, i, k)];
		int64_t sh = dec(xnode_attr(p, "shares"), SHM_QTY_DIGITS);
		if (sh == INT64_MIN || sh <= 0) {
			st_violation("client %d: order %llu: part <%s> with bad shares",
				     W.slot, (unsigned long long)it->order, p->name);
			return;
		}
		if (!strcmp(p->name, "open")) {
			r.a = sh;
		} else if (!strcmp(p->name, "canceled")) {
			r.b += sh;
		} else if (!strcmp(p->name, "executed")) {
			r.c += sh;
			r.nfills++;
			r.last_qty = sh;
			r.last_price = dec(xnode_attr(p, "price"), SHM_PRICE_DIGITS);
			const char *t = xnode_attr(p, "time");
			r.last_time = t ? strtoull(t, NULL, 10) : 0;
		} else {
			st_violation("client %d: order %llu: unknown part <%s>", W.slot,
				     (unsigned long long)it->order, p->name);
			return;
		}
	}
	if (type == R_CANCELED && r.a != 0)
		st_violation("client %d: order %llu canceled but %lld still open", W.slot,
			     (unsigned long long)it->order, (long long)r.a);
	logrec(&r);
}

static bool is_transient(const char *text)
{
	return strstr(text, "Not executed") || strstr(text, "busy") ||
	       strstr(text, "not executed") || strstr(text, "cannot write");
}

static void check_item(const struct xdoc *d, int i, const struct req *q,
		       const struct item *it, const char *rep)
{
	const struct xnode *x = &d->nodes[i];
	bool err = !strcmp(x->name, "error");
	if (err) {
		W.me->errors++;
		if (getenv("SHMEX_STRESS_ERRORS"))
			fprintf(stderr, "stress error item: %s\n", x->text);
	}
	switch (it->kind) {
	case I_BAD:
		if (!err)
			st_violation("client %d: refused item answered <%s>: %.300s",
				     W.slot, x->name, q->xml);
		return;
	case I_ORDER:
		if (err)
			return; /* funds, shares, busy, restart: no id, no trace */
		if (strcmp(x->name, "opened") != 0) {
			st_violation("client %d: order answered <%s>", W.slot, x->name);
			return;
		}
		const char *am = xnode_attr(x, "amount"), *li = xnode_attr(x, "limit");
		const char *idt = xnode_attr(x, "id");
		if (!am || strcmp(am, it->amount) || !li || strcmp(li, it->limit) ||
		    !idt) {
			st_violation(
				"client %d: <opened> echo differs from %s %s: %.300s",
				W.slot, it->amount, it->limit, rep);
			return;
		}
		struct st_rec r = {.type = R_OPENED,
				   .side = (uint8_t)it->side,
				   .sym = (uint16_t)it->sym};
		r.id = strtoull(idt, NULL, 10);
		r.account = it->account;
		r.a = dec(it->amount, SHM_QTY_DIGITS);
		if (r.a < 0)
			r.a = -r.a;
		r.b = dec(it->limit, SHM_PRICE_DIGITS);
		logrec(&r);
		remember(r.id, it->account);
		return;
	case I_QUERY:
	case I_CANCEL: {
		const char *want = it->kind == I_QUERY ? "status" : "canceled";
		if (err) {
			if (!it->own)
				return; /* another account's order: refused */
			if (strstr(x->text, "does not exist") ||
			    strstr(x->text, "another account"))
				st_violation(
					"client %d: own order %llu of account %llu: %s",
					W.slot, (unsigned long long)it->order,
					(unsigned long long)it->account, x->text);
			return;
		}
		if (!it->own) {
			st_violation(
				"client %d: account %llu was answered <%s> for order %llu "
				"of another account",
				W.slot, (unsigned long long)it->account, x->name,
				(unsigned long long)it->order);
			return;
		}
		if (strcmp(x->name, want) != 0) {
			st_violation("client %d: %s answered <%s>", W.slot, want,
				     x->name);
			return;
		}
		status_rec(d, i, it, it->kind == I_QUERY ? R_STATUS : R_CANCELED);
		return;
	}
	case I_ACCT:
	case I_SHARES: {
		struct st_rec cr = {.id = it->serial,
				    .account = it->account,
				    .sym = (uint16_t)it->sym};
		if (err) {
			cr.type = it->kind == I_ACCT ? R_ACCT_NO : R_SH_NO;
		} else if (!strcmp(x->name, "created")) {
			cr.type = it->kind == I_ACCT ? R_ACCT_OK : R_SH_OK;
			cr.a = dec(it->amount,
				   it->kind == I_ACCT ? SHM_CASH_DIGITS : SHM_QTY_DIGITS);
		} else {
			st_violation("client %d: create answered <%s>", W.slot, x->name);
			return;
		}
		logrec(&cr);
		return;
	}
	}
}

static void check_reply(const struct req *q, const char *rep, size_t len)
{
	struct xdoc d;
	if (xdoc_parse(&d, rep, len) != 0) {
		st_violation("client %d: unparsable reply: %.300s", W.slot, rep);
		return;
	}
	int n = d.n ? xdoc_nchildren(&d, 0) : 0;
	if (q->whole_error) {
		if (n != 1 || strcmp(d.nodes[xdoc_child(&d, 0, 0)].name, "error") != 0)
			st_violation(
				"client %d: malformed request not refused: %.200s -> %.300s",
				W.slot, q->xml, rep);
		xdoc_free(&d);
		return;
	}
	if (n != q->n) {
		/* A transient refusal of the whole request is one error. */
		if (!(n == 1 && !strcmp(d.nodes[xdoc_child(&d, 0, 0)].name, "error") &&
		      is_transient(d.nodes[xdoc_child(&d, 0, 0)].text)))
			st_violation(
				"client %d: %d items, %d reply children: %.300s -> %.300s",
				W.slot, q->n, n, q->xml, rep);
		for (int k = 0; k < q->n; k++)
			if (q->it[k].kind == I_ACCT || q->it[k].kind == I_SHARES) {
				struct st_rec r = {.id = q->it[k].serial};
				r.type = q->it[k].kind == I_ACCT ? R_ACCT_NO : R_SH_NO;
				logrec(&r);
			}
		xdoc_free(&d);
		return;
	}
	for (int k = 0; k < n; k++)
		check_item(&d, xdoc_child(&d, 0, k), q, &q->it[k], rep);
	xdoc_free(&d);
}

static void log_tries(const struct req *q)
{
	for (int k = 0; k < q->n; k++) {
		const struct item *it = &q->it[k];
		if (it->kind != I_ACCT && it->kind != I_SHARES)
			continue;
		struct st_rec r = {.id = it->serial,
				   .account = it->account,
				   .sym = (uint16_t)it->sym};
		r.type = it->kind == I_ACCT ? R_ACCT_TRY : R_SH_TRY;
		r.a = dec(it->amount,
			  it->kind == I_ACCT ? SHM_CASH_DIGITS : SHM_QTY_DIGITS);
		logrec(&r);
	}
}

void st_client_main(int slot, uint64_t seed)
{
	W.slot = slot;
	W.me = &st->c[slot];
	W.rng = seed | 1;
	/* Serials continue across incarnations of the slot. */
	W.serial = (uint64_t)W.me->gen << 32;
	struct client c;
	bool up = false;
	static struct req q;
	while (!load_acquire(&st->stop)) {
		if (load_acquire(&st->pause)) {
			/* Pairs with the parent's acquire: every record
			 * published before is visible to it. */
			store_release(&W.me->paused, 1u);
			usleep(2000);
			continue;
		}
		store_release(&W.me->paused, 0u);
		if (!up) {
			if (client_connect(&c, "127.0.0.1", st->port, 2000) != 0) {
				usleep(20000);
				continue;
			}
			up = true;
		}
		gen(&q);
		log_tries(&q);
		int rc;
		if (q.fatal)
			rc = client_send_raw(&c, "12x\n<create/>", 13, REPLY_MS);
		else
			rc = client_send(&c, q.xml, REPLY_MS);
		const char *rep = NULL;
		size_t len = 0;
		if (rc == 0)
			rc = client_recv(&c, &rep, &len, REPLY_MS);
		if (rc != 0) {
			/* The gateway died or hangs: what was in flight is
			 * uncertain (its creates stay TRY). */
			W.me->lost++;
			client_close(&c);
			up = false;
			continue;
		}
		__atomic_fetch_add(&W.me->requests, 1, __ATOMIC_RELAXED);
		if (q.fatal) {
			if (!strstr(rep, "Invalid request length"))
				st_violation("client %d: bad length line answered %.200s",
					     slot, rep);
			if (client_wait_closed(&c, REPLY_MS) != 0)
				st_violation(
					"client %d: connection not closed after a framing error",
					slot);
			client_close(&c);
			up = false;
			continue;
		}
		check_reply(&q, rep, len);
	}
	if (up)
		client_close(&c);
	_exit(0);
}
