/*
 * The XML protocol against a reference model: random valid and invalid
 * requests, sent one at a time over TCP to a real exchange (2 shards, a
 * small done window so finished orders leave the book), each reply
 * compared item by item with what a plain model of the protocol says
 * (docs/protocol.md): accounts and share grants, orders that reserve cash
 * or shares and match by price then time at the resting order's price,
 * queries, cancels, and the errors of each; at the end every balance,
 * reservation and position in shared memory is compared with the model.
 *
 * The model knows nothing of shmex's code: it scans every resting order
 * for each match.  Order ids are the exchange's to choose, so an expected
 * <opened> takes its id from the reply.  Times are compared as "T" (within
 * a day of now).  Each <transactions> request touches one shard's symbols
 * only: items of one request run on their shards in parallel, so across
 * shards inside one request the model could not know their order.
 *
 * SHMEX_MODEL_REQUESTS sets the number of requests (default 5000; `make
 * check` runs the default, a long run e.g. 150000), SHMEX_MODEL_SEED the
 * seed (printed).
 */
#include "tests/shmex_test.h"

#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>

#include "shm/shm_accounts.h"
#include "shm/shm_dec.h"
#include "shm/shm_msg.h"
#include "shm/shm_positions.h"
#include "shm/shm_shard.h"
#include "tests/client.h"

#define T_MS 15000
#define NACC 6 /* accounts 1..NACC may exist; NACC + 1 never does */
#define NSYM 4 /* symbols, two per shard */
#define MAXORD 200000
#define MAXFILL 64

/* ---- the model ---- */

struct mfill {
	int64_t qty, price;
};

struct morder {
	uint64_t id;
	int acct, sym;
	bool buy;
	int64_t amount, limit; /* amount > 0 (QTY), limit (PRICE) */
	int64_t open, cancelled;
	uint32_t nfills;
	struct mfill fills[MAXFILL]; /* the first MAXFILL (enough here) */
	uint64_t seq;                /* arrival, for time priority */
};

static struct {
	bool exists[NACC + 2];
	int64_t balance[NACC + 2], reserved[NACC + 2]; /* CASH */
	bool sym_exists[NSYM];
	int64_t shares[NACC + 2][NSYM]; /* QTY */
	struct morder *ord;
	size_t nord;
	uint64_t seq;
} M;

static const char *sym_name[NSYM];
static uint32_t sym_shard[NSYM];

/* Order ids -> index + 1 (open addressing), and the resting orders of
 * each symbol (indexes, arrival order; finished ones dropped as found). */
#define IDMAP (1u << 19)
static uint32_t idmap[IDMAP];
static uint32_t *rest[NSYM];
static size_t nrest[NSYM], caprest[NSYM];

static uint32_t *id_slot(uint64_t id)
{
	uint32_t h = (uint32_t)((id * 0x9e3779b97f4a7c15ull) >> 45) & (IDMAP - 1);
	while (idmap[h] && M.ord[idmap[h] - 1].id != id)
		h = (h + 1) & (IDMAP - 1);
	return &idmap[h];
}

static struct morder *find(uint64_t id)
{
	uint32_t *x = id_slot(id);
	return *x ? &M.ord[*x - 1] : NULL;
}

static void rest_add(int sym, uint32_t i)
{
	if (nrest[sym] == caprest[sym]) {
		caprest[sym] = caprest[sym] ? 2 * caprest[sym] : 256;
		rest[sym] = realloc(rest[sym], caprest[sym] * sizeof(*rest[sym]));
		ck_assert_ptr_nonnull(rest[sym]);
	}
	rest[sym][nrest[sym]++] = i;
}

static int64_t cash(int64_t qty, int64_t price)
{
	int64_t c;
	ck_assert_int_eq(shm_dec_cash(qty, price, &c), 0);
	return c;
}

/* Matches incoming order o against the resting orders of its symbol,
 * then rests what is left. */
static void match(struct morder *o)
{
	while (o->open > 0) {
		struct morder *best = NULL;
		size_t keep = 0;
		for (size_t k = 0; k < nrest[o->sym]; k++) {
			struct morder *r = &M.ord[rest[o->sym][k]];
			if (r->open == 0)
				continue; /* filled or cancelled: dropped */
			rest[o->sym][keep++] = rest[o->sym][k];
			if (r->buy == o->buy)
				continue;
			if (o->buy ? r->limit > o->limit : r->limit < o->limit)
				continue;
			if (!best ||
			    (o->buy ? r->limit < best->limit : r->limit > best->limit) ||
			    (r->limit == best->limit && r->seq < best->seq))
				best = r;
		}
		nrest[o->sym] = keep;
		if (!best)
			break;
		int64_t q = o->open < best->open ? o->open : best->open;
		int64_t px = best->limit;
		struct morder *b = o->buy ? o : best, *s = o->buy ? best : o;
		M.reserved[b->acct] -= cash(q, b->limit);
		M.balance[b->acct] += cash(q, b->limit) - cash(q, px);
		M.balance[s->acct] += cash(q, px);
		M.shares[b->acct][o->sym] += q;
		struct morder *both[2] = {o, best};
		for (int k = 0; k < 2; k++) {
			struct morder *x = both[k];
			x->open -= q;
			if (x->nfills < MAXFILL)
				x->fills[x->nfills] = (struct mfill){q, px};
			x->nfills++;
		}
	}
	if (o->open > 0)
		rest_add(o->sym, (uint32_t)(o - M.ord));
}

/* ---- text ---- */

static char *fmt(int64_t v, int digits)
{
	static char bufs[8][32];
	static int k;
	char *b = bufs[k++ & 7];
	ck_assert_int_gt(shm_dec_format(b, 32, v, digits), 0);
	return b;
}

/* Appends printf text to a growing string. */
struct str {
	char *s;
	size_t n, cap;
};

static void add(struct str *s, const char *f, ...) __attribute__((format(printf, 2, 3)));
static void add(struct str *s, const char *f, ...)
{
	va_list ap;
	for (;;) {
		va_start(ap, f);
		int n = vsnprintf(s->s + s->n, s->cap - s->n, f, ap);
		va_end(ap);
		if ((size_t)n < s->cap - s->n) {
			s->n += (size_t)n;
			return;
		}
		s->cap = 2 * s->cap + (size_t)n + 64;
		s->s = realloc(s->s, s->cap);
		ck_assert_ptr_nonnull(s->s);
	}
}

/* The canonical text (client.h) of an order's status or cancel reply. */
static void status_text(struct str *e, const char *tag, const struct morder *o)
{
	add(e, "%s[id=%" PRIu64 "](", tag, o->id);
	const char *sep = "";
	if (o->open > 0) {
		add(e, "open[shares=%s]", fmt(o->open, SHM_QTY_DIGITS));
		sep = " ";
	}
	if (o->cancelled > 0) {
		add(e, "%scanceled[shares=%s time=T]", sep,
		    fmt(o->cancelled, SHM_QTY_DIGITS));
		sep = " ";
	}
	for (uint32_t i = 0; i < o->nfills && i < MAXFILL; i++) {
		add(e, "%sexecuted[price=%s shares=%s time=T]", sep,
		    fmt(o->fills[i].price, SHM_PRICE_DIGITS),
		    fmt(o->fills[i].qty, SHM_QTY_DIGITS));
		sep = " ";
	}
	add(e, ")");
}

/* ---- random requests ---- */

static uint64_t rng;

static uint64_t below(uint64_t n)
{
	rng = rng * 6364136223846793005ull + 1442695040888963407ull;
	return (rng >> 33) % n;
}

/* A random amount or price as text (into s, 32 bytes) and its value (0
 * when the text is invalid). */
static const char *number(char *s, int64_t *v, int digits, bool allow_bad)
{
	unsigned r = (unsigned)below(100);
	int64_t one = digits == SHM_QTY_DIGITS ? SHM_QTY_ONE : SHM_PRICE_ONE;
	if (allow_bad && r < 3) {
		*v = 0;
		snprintf(s, 32, "%s", r == 0 ? "0" : r == 1 ? "1.00001" : "x1");
		return s;
	}
	int64_t whole = 1 + (int64_t)below(r < 80 ? 12 : 40);
	if (r >= 90) {
		snprintf(s, 32, "%" PRId64 ".5", whole);
		*v = whole * one + one / 2;
	} else {
		snprintf(s, 32, "%" PRId64, whole);
		*v = whole * one;
	}
	return s;
}

/* Builds one <create>: request text in *q, the expected reply in *e. */
static void gen_create(struct str *q, struct str *e)
{
	add(q, "<create>");
	add(e, "results(");
	int n = 1 + (int)below(4);
	for (int i = 0; i < n; i++) {
		if (i)
			add(e, " ");
		if (below(2) == 0) {
			/* Account NACC + 1 is never created. */
			int a = 1 + (int)below(NACC);
			int64_t bal = (int64_t)below(5) * 500 * SHM_CASH_ONE;
			bool neg = below(20) == 0;
			add(q, "<account id=\"%d\" balance=\"%s%s\"/>", a, neg ? "-" : "",
			    fmt(bal + (neg ? SHM_CASH_ONE : 0), SHM_CASH_DIGITS));
			if (neg) {
				add(e, "error[id=%d]\"Invalid balance: negative\"", a);
			} else if (M.exists[a]) {
				add(e, "error[id=%d]\"Account already exists\"", a);
			} else {
				M.exists[a] = true;
				M.balance[a] = bal;
				add(e, "created[id=%d]", a);
			}
		} else {
			int a = 1 + (int)below(NACC + 1);
			int s = (int)below(NSYM);
			int64_t sh = (1 + (int64_t)below(50)) * SHM_QTY_ONE;
			bool bad = below(25) == 0;
			add(q,
			    "<symbol sym=\"%s\"><account id=\"%d\">%s%s</account></symbol>",
			    sym_name[s], a, bad ? "-" : "", fmt(sh, SHM_QTY_DIGITS));
			if (bad) {
				add(e,
				    "error[id=%d sym=%s]\"Invalid amount: shares must be "
				    "positive\"",
				    a, sym_name[s]);
			} else if (!M.exists[a]) {
				add(e, "error[id=%d sym=%s]\"Account does not exist\"", a,
				    sym_name[s]);
			} else {
				M.sym_exists[s] = true;
				M.shares[a][s] += sh;
				add(e, "created[id=%d sym=%s]", a, sym_name[s]);
			}
		}
	}
	add(q, "</create>");
	add(e, ")");
}

/* One random id of an order the model knows (or one never issued). */
static uint64_t some_order(uint32_t shard)
{
	for (int t = 0; t < 8 && M.nord; t++) {
		struct morder *o = &M.ord[M.nord - 1 - below(M.nord < 64 ? M.nord : 64)];
		if (below(4) == 0)
			o = &M.ord[below(M.nord)];
		if (sym_shard[o->sym] == shard)
			return o->id;
	}
	return 999999990 + shard + 1; /* 2 shards: this parity is the shard's */
}

/* The items of one <transactions> of account a on one shard. */
struct item {
	int kind; /* 0 order, 1 query, 2 cancel, 3 bad */
	int sym;
	bool buy, valid;
	int64_t amount, limit;
	char am[32], li[32];
	uint64_t id;
};

static void one_request(struct client *c, int n_req)
{
	struct str q = {0}, e = {0};
	char *got = NULL;
	if (below(6) == 0) {
		gen_create(&q, &e);
		const char *rep;
		size_t len;
		ck_assert_int_eq(client_request(c, q.s, &rep, &len, T_MS), 0);
		got = malloc(len * 2 + 64);
		ck_assert_int_eq(xml_canon(rep, len, got, len * 2 + 64, CANON_TIME), 0);
		ck_assert_msg(!strcmp(got, e.s), "request %d: %s\n got  %s\n want %s",
			      n_req, q.s, got, e.s);
		free(got);
		free(q.s);
		free(e.s);
		return;
	}
	int a = 1 + (int)below(NACC + 1);
	uint32_t shard = (uint32_t)below(2);
	struct item it[4];
	int n = 1 + (int)below(4);
	add(&q, "<transactions id=\"%d\">", a);
	for (int i = 0; i < n; i++) {
		struct item *x = &it[i];
		memset(x, 0, sizeof(*x));
		unsigned r = (unsigned)below(100);
		x->kind = r < 60 ? 0 : r < 78 ? 1 : r < 95 ? 2 : 3;
		if (x->kind == 0) {
			x->sym = (int)(2 * below(2) + shard);
			x->buy = below(2) == 0;
			number(x->am, &x->amount, SHM_QTY_DIGITS, true);
			number(x->li, &x->limit, SHM_PRICE_DIGITS, true);
			add(&q, "<order sym=\"%s\" amount=\"%s%s\" limit=\"%s\"/>",
			    sym_name[x->sym], x->buy ? "" : "-", x->am, x->li);
		} else if (x->kind == 3) {
			add(&q, "<query/>");
		} else {
			x->id = some_order(shard);
			add(&q, "<%s id=\"%" PRIu64 "\"/>",
			    x->kind == 1 ? "query" : "cancel", x->id);
		}
	}
	add(&q, "</transactions>");
	const char *rep;
	size_t len;
	ck_assert_int_eq(client_request(c, q.s, &rep, &len, T_MS), 0);
	struct xdoc d;
	ck_assert_int_eq(xdoc_parse(&d, rep, len), 0);
	/* Item by item, in order (one shard: the model's order is theirs). */
	add(&e, "results(");
	for (int i = 0; i < n; i++) {
		struct item *x = &it[i];
		if (i)
			add(&e, " ");
		char amtxt[48];
		if (x->kind == 0)
			snprintf(amtxt, sizeof(amtxt), "%s%s", x->buy ? "" : "-", x->am);
		if (x->kind == 3) {
			add(&e, "error\"Invalid order id: missing id\"");
			continue;
		}
		if (!M.exists[a] && x->kind != 0) {
			add(&e, "error[id=%" PRIu64 "]\"Account does not exist\"", x->id);
			continue;
		}
		if (x->kind == 0) {
			const char *why = NULL;
			if (!strcmp(x->am, "0"))
				why = "Invalid amount: zero amount";
			else if (!strcmp(x->am, "1.00001"))
				why = "Invalid amount: more than 4 fractional digits";
			else if (!strcmp(x->am, "x1"))
				why = "Invalid amount: not a decimal number";
			else if (!strcmp(x->li, "0"))
				why = "Invalid limit price: limit must be positive";
			else if (!strcmp(x->li, "1.00001"))
				why = "Invalid limit price: more than 4 fractional digits";
			else if (!strcmp(x->li, "x1"))
				why = "Invalid limit price: not a decimal number";
			else if (!M.exists[a])
				why = "Account does not exist";
			else if (!M.sym_exists[x->sym])
				why = "Symbol does not exist";
			else if (x->buy && M.balance[a] < cash(x->amount, x->limit))
				why = "Insufficient funds";
			else if (!x->buy && M.shares[a][x->sym] < x->amount)
				why = "Insufficient shares";
			if (why) {
				add(&e, "error[amount=%s limit=%s sym=%s]\"%s\"", amtxt,
				    x->li, sym_name[x->sym], why);
				continue;
			}
			int k = xdoc_child(&d, 0, i);
			ck_assert_msg(k > 0 && !strcmp(d.nodes[k].name, "opened"),
				      "request %d item %d: %s\n got %.*s", n_req, i, q.s,
				      (int)len, rep);
			ck_assert(M.nord < MAXORD);
			struct morder *o = &M.ord[M.nord++];
			memset(o, 0, sizeof(*o));
			o->id = strtoull(xnode_attr(&d.nodes[k], "id"), NULL, 10);
			o->acct = a;
			o->sym = x->sym;
			o->buy = x->buy;
			o->amount = o->open = x->amount;
			o->limit = x->limit;
			o->seq = ++M.seq;
			uint32_t *slot = id_slot(o->id);
			ck_assert_msg(*slot == 0, "id %" PRIu64 " given twice", o->id);
			*slot = (uint32_t)M.nord;
			if (o->buy) {
				M.balance[a] -= cash(o->amount, o->limit);
				M.reserved[a] += cash(o->amount, o->limit);
			} else {
				M.shares[a][o->sym] -= o->amount;
			}
			match(o);
			add(&e, "opened[amount=%s id=%" PRIu64 " limit=%s sym=%s]", amtxt,
			    o->id, x->li, sym_name[x->sym]);
			continue;
		}
		struct morder *o = find(x->id);
		if (!o) {
			add(&e, "error[id=%" PRIu64 "]\"Order does not exist\"", x->id);
		} else if (o->acct != a) {
			add(&e,
			    "error[id=%" PRIu64 "]\"Order belongs to another account\"",
			    x->id);
		} else if (x->kind == 1) {
			status_text(&e, "status", o);
		} else if (o->open == 0) {
			add(&e, "error[id=%" PRIu64 "]\"Order has nothing open\"", x->id);
		} else {
			o->cancelled = o->open;
			if (o->buy) {
				M.reserved[a] -= cash(o->open, o->limit);
				M.balance[a] += cash(o->open, o->limit);
			} else {
				M.shares[a][o->sym] += o->open;
			}
			o->open = 0;
			status_text(&e, "canceled", o);
		}
	}
	add(&e, ")");
	got = malloc(len * 2 + 64);
	ck_assert_int_eq(xdoc_canon(&d, got, len * 2 + 64, CANON_TIME), 0);
	ck_assert_msg(!strcmp(got, e.s), "request %d: %s\n got  %s\n want %s", n_req, q.s,
		      got, e.s);
	xdoc_free(&d);
	free(got);
	free(q.s);
	free(e.s);
}

/* Every balance, reservation and position as the exchange holds them. */
static void final_state(const char *inst)
{
	struct shm_accounts ac;
	ck_assert_int_eq(shm_accounts_attach(&ac, inst, SHM_RDONLY), 0);
	for (int a = 1; a <= NACC + 1; a++) {
		struct shm_account_view v;
		int rc = shm_accounts_read(&ac, (uint64_t)a, &v);
		ck_assert_int_eq(rc == 0, M.exists[a]);
		if (rc)
			continue;
		ck_assert_msg(v.balance == M.balance[a] && v.reserved == M.reserved[a],
			      "account %d: balance %s reserved %s, model %s %s", a,
			      fmt(v.balance, 8), fmt(v.reserved, 8), fmt(M.balance[a], 8),
			      fmt(M.reserved[a], 8));
	}
	shm_accounts_detach(&ac);
	for (int s = 0; s < NSYM; s++) {
		struct shm_positions p;
		ck_assert_int_eq(shm_positions_attach(&p, inst, sym_shard[s], SHM_RDONLY),
				 0);
		char name[16];
		ck_assert(shm_symbol_pack(name, sym_name[s], strlen(sym_name[s])));
		for (int a = 1; a <= NACC; a++) {
			struct shm_position_view v;
			int rc = shm_positions_read(&p, (uint64_t)a, name, &v);
			shm_shares_t have = rc == 0 ? v.amount : 0,
				     held = rc == 0 ? v.reserved : 0;
			int64_t open_sells = 0;
			for (size_t i = 0; i < M.nord; i++)
				if (M.ord[i].acct == a && M.ord[i].sym == s &&
				    !M.ord[i].buy)
					open_sells += M.ord[i].open;
			ck_assert_msg(have == M.shares[a][s] && held == open_sells,
				      "account %d %s: %s shares (%s held), model %s (%s)",
				      a, sym_name[s], fmt((int64_t)have, 4),
				      fmt((int64_t)held, 4), fmt(M.shares[a][s], 4),
				      fmt(open_sells, 4));
		}
		shm_positions_detach(&p);
	}
}

START_TEST(random_traffic_matches_the_model)
{
	char inst[64];
	test_instance(inst, sizeof(inst));
	test_note_instance("model", inst);
	const char *root = getenv("SHMEX_TEST_DATA");
	char dd[PATH_MAX + 16];
	snprintf(dd, sizeof(dd), "--data-dir=%s/%s", root && *root ? root : "/tmp", inst);
	/* Room for every order that may rest (many never cross): a full book
	 * would be an answer the model does not make. */
	const char *ns = getenv("SHMEX_MODEL_REQUESTS"), *ss = getenv("SHMEX_MODEL_SEED");
	int nreq = ns ? atoi(ns) : 5000;
	char orders[32], fills[32];
	snprintf(orders, sizeof(orders), "--orders=%d", 4096 + 4 * nreq);
	snprintf(fills, sizeof(fills), "--fills=%d", 16384 + 2 * nreq);
	const char *extra[] = {dd,         "--shards",   "2",    orders,
			       "--levels", "1024",       fills,  "--done-window",
			       "16",       "--accounts", "1024", "--quiet",
			       NULL};
	struct exchange ex;
	ck_assert_int_eq(exchange_start(&ex, test_bin("shmex"), inst, extra, 30000), 0);
	/* Two symbols of each shard. */
	static char names[NSYM][16];
	int found[2] = {0, 0};
	for (int i = 0, k = 0; k < NSYM; i++) {
		char s[16];
		snprintf(s, sizeof(s), "M%d", i);
		uint32_t sh = shm_shard_of_symbol(s, strlen(s), 2);
		if (found[sh] == NSYM / 2)
			continue;
		int slot = 2 * found[sh]++ + (int)sh;
		snprintf(names[slot], sizeof(names[slot]), "%s", s);
		sym_name[slot] = names[slot];
		sym_shard[slot] = sh;
		k++;
	}
	M.ord = calloc(MAXORD, sizeof(*M.ord));
	ck_assert_ptr_nonnull(M.ord);
	rng = ss ? strtoull(ss, NULL, 10) : (uint64_t)time(NULL);
	printf("protocol model: %d requests, SHMEX_MODEL_SEED=%" PRIu64 "\n", nreq, rng);
	fflush(stdout);
	struct client c;
	ck_assert_int_eq(client_connect(&c, "127.0.0.1", ex.port, T_MS), 0);
	for (int i = 0; i < nreq; i++) {
		one_request(&c, i);
		if (nreq >= 20000 && i % 10000 == 0)
			fprintf(stderr, "protocol model: %d requests, %zu orders\n", i,
				M.nord);
	}
	client_close(&c);
	final_state(inst);
	printf("protocol model: %d requests, %zu orders agreed\n", nreq, M.nord);
	int st = exchange_stop(&ex, 30000);
	ck_assert(st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0);
	free(M.ord);
}
END_TEST

static void cleanup(void)
{
	test_cleanup_noted("model");
}

static Suite *model_suite(void)
{
	Suite *s = suite_create("protocol_model");
	TCase *tc = tcase_create("model");
	tcase_add_unchecked_fixture(tc, NULL, cleanup);
	tcase_set_timeout(tc, 600);
	tcase_add_test(tc, random_traffic_matches_the_model);
	suite_add_tcase(s, tc);
	return s;
}

SHMEX_TEST_MAIN(model_suite)
