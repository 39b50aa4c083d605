/*
 * gw_xml: expat-based parser of ECE 568 request documents (see gw_xml.h).
 *
 * Shape: expat's streaming (SAX) callbacks drive a small stack of element
 * kinds.  Each element in an item position appends one item to the request
 * as it starts, so items come out in document order whatever their kinds.
 * Values are validated as they are read (fixed point through shm_dec, ids as
 * unsigned decimals, symbols through shm_symbol_valid) and a failure becomes
 * the item's own error: one bad order never spoils its neighbours.  Only
 * faults of the document itself (not well-formed, DTD, limits, root) spoil
 * the whole request.
 *
 * Hard limits, checked before anything is stored for the element that
 * breaks them: elements per document, nesting depth, bytes per name,
 * attribute value and <account> text.  Our own storage is therefore bounded
 * by max_elems items and an arena of copied text no larger than the decoded
 * attribute text.  expat's own memory is proportional to the document,
 * which gw_frame bounds.  Entity expansion attacks cannot start: any DOCTYPE
 * stops the parser (no DTD means no entity can be declared; the five
 * predefined entities and character references expand to at most a few
 * bytes each).
 *
 * Text rules (docs/protocol.md): element and attribute names are
 * case-sensitive; unknown attributes are refused by name (attributes in the
 * xml and xmlns namespaces excepted); values are validated with
 * surrounding XML blanks (space, tab, CR, LF) removed, and echoed exactly as
 * expat decoded them; text outside <symbol><account> is ignored.
 *
 * Invariants: depth <= lim.max_depth; nelems <= lim.max_elems while not
 * failed; nitems <= nelems; every gw_text refers to bytes inside
 * arena[0..arena_len).  Once `failed` is set no handler changes anything.
 */
#include "gateway/gw_xml.h"

#include <errno.h>
#include <expat.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>

#include "shm/shm_dec.h"
#include "shm/shm_error.h"
#include "shm/shm_msg.h"

/* Storage above these sizes is released before the next document, so one
 * huge request does not pin memory for the rest of a connection. */
#define REQ_KEEP_ITEMS 1024
#define REQ_KEEP_ARENA ((size_t)64 << 10)

enum frame_kind {
	F_CREATE,      /* <create> root */
	F_TX,          /* <transactions> root */
	F_ACCOUNT,     /* <create><account/> (leaf item) */
	F_SYMBOL,      /* <create><symbol> */
	F_SYM_ACCOUNT, /* <symbol><account>NUM</account> (leaf item) */
	F_ORDER,       /* leaf items of <transactions> */
	F_QUERY,
	F_CANCEL,
	F_SKIP, /* unknown element or anything inside a leaf */
};

struct gw_xml_parser {
	XML_Parser xp;
	struct gw_xml_limits lim;
	unsigned long salt; /* expat hash salt, random per parser */
	/* per document */
	struct gw_xml_req *req;
	bool failed;
	uint32_t depth;
	uint32_t nelems;
	uint8_t *stack;       /* frame kind per open element */
	uint32_t *stack_item; /* item index of leaf frames */
	/* the open <symbol> */
	struct gw_text sym_t, sym_val;
	struct gw_text sym_attr; /* an unknown attribute of <symbol> */
	int sym_err;
	const char *sym_why;
	uint32_t sym_naccounts;
	/* text of the open <symbol><account> */
	uint32_t text_off, text_len;
};

void gw_xml_limits_default(struct gw_xml_limits *lim)
{
	lim->max_elems = GW_XML_MAX_ELEMS_DEFAULT;
	lim->max_depth = GW_XML_MAX_DEPTH_DEFAULT;
	lim->max_text = GW_XML_MAX_TEXT_DEFAULT;
}

void gw_xml_req_init(struct gw_xml_req *req)
{
	memset(req, 0, sizeof(*req));
}

void gw_xml_req_free(struct gw_xml_req *req)
{
	free(req->items);
	free(req->arena);
	gw_xml_req_init(req);
}

int gw_xml_parser_create(struct gw_xml_parser **out, const struct gw_xml_limits *lim)
{
	struct gw_xml_limits l;
	if (lim)
		l = *lim;
	else
		gw_xml_limits_default(&l);
	if (l.max_elems < 1 || l.max_depth < 2 || l.max_depth > GW_XML_MAX_DEPTH_LIMIT ||
	    l.max_text < 1 || l.max_text > (1u << 20))
		return -EINVAL;

	struct gw_xml_parser *p = calloc(1, sizeof(*p));
	if (p == NULL)
		return -ENOMEM;
	p->lim = l;
	p->stack = calloc(l.max_depth, sizeof(*p->stack));
	if (p->stack == NULL)
		goto out_free_parser;
	p->stack_item = calloc(l.max_depth, sizeof(*p->stack_item));
	if (p->stack_item == NULL)
		goto out_free_stack;
	/* expat draws a fresh hash salt with a getrandom() system call for
	 * every document; drawing one per parser keeps hash flooding out
	 * (the salt never leaves the process) without a system call per
	 * request. */
	if (getrandom(&p->salt, sizeof(p->salt), 0) != (ssize_t)sizeof(p->salt))
		p->salt = (unsigned long)(uintptr_t)p ^ 0x9e3779b97f4a7c15ul;
	p->xp = XML_ParserCreate(NULL);
	if (p->xp == NULL)
		goto out_free_stack_item;
	*out = p;
	return 0;

out_free_stack_item:
	free(p->stack_item);
out_free_stack:
	free(p->stack);
out_free_parser:
	free(p);
	return -ENOMEM;
}

void gw_xml_parser_destroy(struct gw_xml_parser *p)
{
	if (p == NULL)
		return;
	XML_ParserFree(p->xp);
	free(p->stack_item);
	free(p->stack);
	free(p);
}

/* ---- failure and storage ------------------------------------------------ */

static void xml_fail(struct gw_xml_parser *p, int err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void xml_fail(struct gw_xml_parser *p, int err, const char *fmt, ...)
{
	if (p->failed)
		return;
	p->failed = true;
	p->req->err = err;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(p->req->detail, sizeof(p->req->detail), fmt, ap);
	va_end(ap);
	XML_StopParser(p->xp, XML_FALSE);
}

/* Reserves n more arena bytes; false (and failed) when impossible. */
static bool arena_reserve(struct gw_xml_parser *p, size_t n)
{
	struct gw_xml_req *req = p->req;
	if (req->arena_len + n <= req->arena_cap)
		return true;
	if (req->arena_len + n >= UINT32_MAX) {
		xml_fail(p, SHMEX_ETOOBIG, "request text too large");
		return false;
	}
	size_t cap = req->arena_cap ? req->arena_cap : 1024;
	while (cap < req->arena_len + n)
		cap *= 2;
	char *na = realloc(req->arena, cap);
	if (na == NULL) {
		xml_fail(p, -ENOMEM, "out of memory");
		return false;
	}
	req->arena = na;
	req->arena_cap = cap;
	return true;
}

/* Copies s (len bytes) into the arena; false when it failed. */
static bool arena_put(struct gw_xml_parser *p, const char *s, size_t len,
		      struct gw_text *out)
{
	if (!arena_reserve(p, len))
		return false;
	struct gw_xml_req *req = p->req;
	memcpy(req->arena + req->arena_len, s, len);
	out->off = (uint32_t)req->arena_len;
	out->len = (uint32_t)len;
	req->arena_len += len;
	return true;
}

static const struct gw_text text_absent = {GW_TEXT_ABSENT, 0};

/* Appends an item of the given kind; returns its index or -1 (failed). */
static long item_new(struct gw_xml_parser *p, enum gw_item_kind kind)
{
	struct gw_xml_req *req = p->req;
	if (req->nitems == req->items_cap) {
		/* nitems <= nelems <= max_elems, so this stays bounded. */
		uint32_t cap = req->items_cap ? req->items_cap * 2 : 16;
		if (cap > p->lim.max_elems)
			cap = p->lim.max_elems;
		if (cap <= req->nitems) {
			xml_fail(p, SHMEX_EINTERNAL, "item table overflow");
			return -1;
		}
		struct gw_item *ni = realloc(req->items, cap * sizeof(*ni));
		if (ni == NULL) {
			xml_fail(p, -ENOMEM, "out of memory");
			return -1;
		}
		req->items = ni;
		req->items_cap = cap;
	}
	struct gw_item *it = &req->items[req->nitems];
	memset(it, 0, sizeof(*it));
	it->kind = (uint8_t)kind;
	it->id = it->sym = it->amount = it->limit_t = it->balance_t = text_absent;
	it->name = it->sym_val = text_absent;
	return (long)req->nitems++;
}

static void item_error(struct gw_item *it, int err, const char *why)
{
	if (it->err == 0) {
		it->err = err;
		it->why = why;
	}
}

/* ---- value validation --------------------------------------------------- */

static bool xml_blank(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static void trim(const char **s, size_t *len)
{
	while (*len > 0 && xml_blank((*s)[0])) {
		(*s)++;
		(*len)--;
	}
	while (*len > 0 && xml_blank((*s)[*len - 1]))
		(*len)--;
}

/* An unsigned decimal of 1..maxdigits digits (leading zeros count).
 * 0 or -EINVAL/-ERANGE/-E2BIG with a reason in *why. */
static int parse_uint(const char *s, size_t len, unsigned maxdigits, uint64_t *out,
		      const char **why)
{
	trim(&s, &len);
	if (len == 0) {
		*why = "empty";
		return -EINVAL;
	}
	uint64_t v = 0;
	for (size_t i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9') {
			*why = "not a decimal number";
			return -EINVAL;
		}
	}
	if (len > maxdigits) {
		*why = "too many digits";
		return -E2BIG;
	}
	for (size_t i = 0; i < len; i++) {
		if (__builtin_mul_overflow(v, 10u, &v) ||
		    __builtin_add_overflow(v, (uint64_t)(s[i] - '0'), &v)) {
			*why = "out of range";
			return -ERANGE;
		}
	}
	*out = v;
	return 0;
}

/* A decimal at the given scale, with the reason of a failure in *why. */
static int parse_dec(const char *s, size_t len, int digits, int64_t *out,
		     const char **why)
{
	trim(&s, &len);
	if (len == 0) {
		*why = "empty";
		return -EINVAL;
	}
	int rc = shm_dec_parse(s, len, digits, out);
	if (rc == 0)
		return 0;
	if (rc == SHMEX_EOVERFLOW) {
		*why = "out of range";
		return rc;
	}
	/* -EINVAL: syntax, or a digit the scale cannot hold?  At the widest
	 * scale a number with too many digits parses (or overflows). */
	int64_t tmp;
	int wide = shm_dec_parse(s, len, 18, &tmp);
	if (wide == 0 || wide == SHMEX_EOVERFLOW)
		*why = digits == SHM_CASH_DIGITS ? "more than 8 fractional digits"
						 : "more than 4 fractional digits";
	else
		*why = "not a decimal number";
	return rc;
}

/* A balance: parse_dec's reasons, 128-bit, at most SHM_CASH_INPUT_MAX
 * ("out of range" above it, never "Numeric overflow"). */
static int parse_cash(const char *s, size_t len, shm_cash_t *out, const char **why)
{
	trim(&s, &len);
	if (len == 0) {
		*why = "empty";
		return -EINVAL;
	}
	int rc = shm_dec_parse_cash(s, len, out);
	if (rc == 0)
		return 0;
	if (rc == SHMEX_ECASHRANGE) {
		*why = "out of range (at most 1000000000000000000)";
		return rc;
	}
	int64_t tmp;
	int wide = shm_dec_parse(s, len, 18, &tmp);
	*why = wide == 0 || wide == SHMEX_EOVERFLOW ? "more than 8 fractional digits"
						    : "not a decimal number";
	return rc;
}

static const char *attr_get(const XML_Char **atts, const char *name)
{
	for (size_t i = 0; atts[i] != NULL; i += 2)
		if (strcmp(atts[i], name) == 0)
			return atts[i + 1];
	return NULL;
}

/* The first attribute not in allowed[] (NULL-terminated), or NULL.  The
 * attributes XML itself defines (xml:*, xmlns, xmlns:*) are not ours to
 * refuse. */
static const char *attr_unknown(const XML_Char **atts, const char *const *allowed)
{
	for (size_t i = 0; atts[i] != NULL; i += 2) {
		const char *n = atts[i];
		if (!strncmp(n, "xml:", 4) || !strncmp(n, "xmlns", 5))
			continue;
		bool ok = false;
		for (size_t k = 0; allowed[k] && !ok; k++)
			ok = strcmp(n, allowed[k]) == 0;
		if (!ok)
			return n;
	}
	return NULL;
}

/* Gives item it the error "Unknown attribute: NAME" when atts has one not
 * in allowed[]; takes precedence over any other error of the item. */
static void item_check_attrs(struct gw_xml_parser *p, struct gw_item *it,
			     const XML_Char **atts, const char *const *allowed)
{
	const char *bad = attr_unknown(atts, allowed);
	if (!bad)
		return;
	struct gw_text t;
	if (!arena_put(p, bad, strlen(bad), &t))
		return;
	it->name = t;
	it->err = SHMEX_EUNKNOWNATTR;
	it->why = NULL;
}

/* Copies an attribute's text into the arena (absent stays absent). */
static bool attr_keep(struct gw_xml_parser *p, const char *v, struct gw_text *out)
{
	if (v == NULL) {
		*out = text_absent;
		return true;
	}
	return arena_put(p, v, strlen(v), out);
}

static void check_account(struct gw_item *it, const char *v)
{
	const char *why = NULL;
	if (v == NULL) {
		item_error(it, SHMEX_EBADACCOUNT, "missing id");
		return;
	}
	if (parse_uint(v, strlen(v), GW_XML_ACCOUNT_DIGITS, &it->account, &why) != 0)
		item_error(it, SHMEX_EBADACCOUNT, why);
}

/* ---- elements ----------------------------------------------------------- */

static void start_root(struct gw_xml_parser *p, const char *name, const XML_Char **atts,
		       uint8_t *kind)
{
	struct gw_xml_req *req = p->req;
	static const char *const no_attrs[] = {NULL};
	static const char *const tx_attrs[] = {"id", "account", NULL};
	bool create = strcmp(name, "create") == 0;
	if (!create && strcmp(name, "transactions") != 0) {
		xml_fail(p, SHMEX_EBADREQUEST,
			 "root element must be <create> or <transactions>");
		return;
	}
	const char *bad = attr_unknown(atts, create ? no_attrs : tx_attrs);
	if (bad) {
		xml_fail(p, SHMEX_EUNKNOWNATTR, "%.64s of <%s>", bad, name);
		return;
	}
	if (create) {
		req->root = GW_ROOT_CREATE;
		*kind = F_CREATE;
		return;
	}
	req->root = GW_ROOT_TRANSACTIONS;
	*kind = F_TX;

	const char *id = attr_get(atts, "id");
	const char *alias = attr_get(atts, "account");
	const char *v = id ? id : alias;
	const char *why = NULL;
	if (!attr_keep(p, v, &req->account_t))
		return;
	if (v == NULL) {
		req->account_err = SHMEX_EBADACCOUNT;
		req->account_why = "missing id";
		return;
	}
	if (parse_uint(v, strlen(v), GW_XML_ACCOUNT_DIGITS, &req->account, &why) != 0) {
		req->account_err = SHMEX_EBADACCOUNT;
		req->account_why = why;
		return;
	}
	uint64_t other;
	if (id && alias &&
	    (parse_uint(alias, strlen(alias), GW_XML_ACCOUNT_DIGITS, &other, &why) != 0 ||
	     other != req->account)) {
		req->account_err = SHMEX_EBADACCOUNT;
		req->account_why = "id and account differ";
	}
}

static long start_unknown(struct gw_xml_parser *p, const char *name)
{
	long idx = item_new(p, GW_ITEM_UNKNOWN);
	if (idx < 0)
		return -1;
	struct gw_item *it = &p->req->items[idx];
	it->err = SHMEX_EUNKNOWNELEM;
	struct gw_text t;
	if (!arena_put(p, name, strlen(name), &t))
		return -1;
	p->req->items[idx].name = t;
	return idx;
}

static void start_create_account(struct gw_xml_parser *p, const XML_Char **atts, long idx)
{
	struct gw_xml_req *req = p->req;
	const char *id = attr_get(atts, "id");
	const char *bal = attr_get(atts, "balance");
	struct gw_text t_id, t_bal;
	if (!attr_keep(p, id, &t_id) || !attr_keep(p, bal, &t_bal))
		return;
	struct gw_item *it = &req->items[idx];
	it->id = t_id;
	it->balance_t = t_bal;
	static const char *const allowed[] = {"id", "balance", NULL};
	item_check_attrs(p, it, atts, allowed);
	check_account(it, id);
	const char *why = NULL;
	if (bal == NULL)
		item_error(it, SHMEX_EBADBALANCE, "missing balance");
	else if (parse_cash(bal, strlen(bal), &it->balance, &why) != 0)
		item_error(it, SHMEX_EBADBALANCE, why);
	else if (it->balance < 0)
		item_error(it, SHMEX_EBADBALANCE, "negative");
}

static void start_symbol(struct gw_xml_parser *p, const XML_Char **atts)
{
	const char *sym = attr_get(atts, "sym");
	p->sym_naccounts = 0;
	p->sym_err = 0;
	p->sym_why = NULL;
	p->sym_val = text_absent;
	p->sym_attr = text_absent;
	if (!attr_keep(p, sym, &p->sym_t))
		return;
	static const char *const allowed[] = {"sym", NULL};
	const char *bad = attr_unknown(atts, allowed);
	if (bad) {
		if (arena_put(p, bad, strlen(bad), &p->sym_attr))
			p->sym_err = SHMEX_EUNKNOWNATTR;
		return;
	}
	if (sym == NULL) {
		p->sym_err = SHMEX_EBADSYMBOL;
		p->sym_why = "missing sym";
		return;
	}
	const char *s = sym;
	size_t len = strlen(sym);
	trim(&s, &len);
	if (!shm_symbol_valid(s, len)) {
		p->sym_err = SHMEX_EBADSYMBOL;
		p->sym_why = len > SHM_SYMBOL_MAX ? "longer than 15 characters"
						  : "not 1-15 letters or digits";
		return;
	}
	p->sym_val.off = p->sym_t.off + (uint32_t)(s - sym);
	p->sym_val.len = (uint32_t)len;
}

static void start_sym_account(struct gw_xml_parser *p, const XML_Char **atts, long idx)
{
	struct gw_xml_req *req = p->req;
	const char *id = attr_get(atts, "id");
	struct gw_text t_id;
	if (!attr_keep(p, id, &t_id))
		return;
	struct gw_item *it = &req->items[idx];
	it->id = t_id;
	it->sym = p->sym_t;
	it->sym_val = p->sym_val;
	p->sym_naccounts++;
	static const char *const allowed[] = {"id", NULL};
	item_check_attrs(p, it, atts, allowed);
	if (p->sym_err == SHMEX_EUNKNOWNATTR && !it->err)
		it->name = p->sym_attr;
	if (p->sym_err)
		item_error(it, p->sym_err, p->sym_why);
	check_account(it, id);
	p->text_off = (uint32_t)req->arena_len;
	p->text_len = 0;
}

static void end_sym_account(struct gw_xml_parser *p, uint32_t idx)
{
	struct gw_item *it = &p->req->items[idx];
	const char *why = NULL;
	const char *s = p->req->arena + p->text_off;
	if (it->err)
		return;
	if (parse_dec(s, p->text_len, SHM_QTY_DIGITS, &it->qty, &why) != 0)
		item_error(it, SHMEX_EBADAMOUNT,
			   strcmp(why, "empty") == 0 ? "missing shares" : why);
	else if (it->qty <= 0)
		item_error(it, SHMEX_EBADAMOUNT, "shares must be positive");
}

static void start_order(struct gw_xml_parser *p, const XML_Char **atts, long idx)
{
	struct gw_xml_req *req = p->req;
	const char *sym = attr_get(atts, "sym");
	const char *amt = attr_get(atts, "amount");
	const char *lim = attr_get(atts, "limit");
	struct gw_text t_sym, t_amt, t_lim;
	if (!attr_keep(p, sym, &t_sym) || !attr_keep(p, amt, &t_amt) ||
	    !attr_keep(p, lim, &t_lim))
		return;
	struct gw_item *it = &req->items[idx];
	it->sym = t_sym;
	it->amount = t_amt;
	it->limit_t = t_lim;
	static const char *const allowed[] = {"sym",  "amount",   "limit", "tif",
					      "type", "postonly", NULL};
	item_check_attrs(p, it, atts, allowed);

	/* Extensions (docs/protocol.md): tif="GTC|IOC|FOK" (GTC when absent,
	 * so course clients are unchanged), type="limit" and
	 * postonly="yes|no" (no when absent). */
	const char *po = attr_get(atts, "postonly");
	it->post_only = po && !strcasecmp(po, "yes");
	if (po && !it->post_only && strcasecmp(po, "no"))
		item_error(it, SHMEX_EBADREQUEST, "postonly is not yes or no");
	const char *tif = attr_get(atts, "tif");
	const char *type = attr_get(atts, "type");
	it->tif = SHM_TIF_GTC;
	if (tif && !strcasecmp(tif, "IOC"))
		it->tif = SHM_TIF_IOC;
	else if (tif && !strcasecmp(tif, "FOK"))
		it->tif = SHM_TIF_FOK;
	else if (tif && strcasecmp(tif, "GTC"))
		item_error(it, SHMEX_EBADTIF, "not GTC, IOC or FOK");
	if (type && !strcasecmp(type, "market"))
		item_error(it, SHMEX_EBADTYPE,
			   "market orders are not supported; send a limit with "
			   "tif=\"IOC\"");
	else if (type && strcasecmp(type, "limit"))
		item_error(it, SHMEX_EBADTYPE, "not limit");

	const char *why = NULL;
	if (sym == NULL) {
		item_error(it, SHMEX_EBADSYMBOL, "missing sym");
	} else {
		const char *s = sym;
		size_t len = strlen(sym);
		trim(&s, &len);
		if (!shm_symbol_valid(s, len)) {
			item_error(it, SHMEX_EBADSYMBOL,
				   len > SHM_SYMBOL_MAX ? "longer than 15 characters"
							: "not 1-15 letters or digits");
		} else {
			it->sym_val.off = t_sym.off + (uint32_t)(s - sym);
			it->sym_val.len = (uint32_t)len;
		}
	}

	int64_t amount = 0;
	if (amt == NULL)
		item_error(it, SHMEX_EBADAMOUNT, "missing amount");
	else if (parse_dec(amt, strlen(amt), SHM_QTY_DIGITS, &amount, &why))
		item_error(it, SHMEX_EBADAMOUNT, why);
	else if (amount == 0)
		item_error(it, SHMEX_EBADAMOUNT, "zero amount");
	else if (amount == INT64_MIN)
		item_error(it, SHMEX_EBADAMOUNT, "out of range");

	if (lim == NULL)
		item_error(it, SHMEX_EBADPRICE, "missing limit");
	else if (parse_dec(lim, strlen(lim), SHM_PRICE_DIGITS, &it->limit, &why))
		item_error(it, SHMEX_EBADPRICE, why);
	else if (it->limit <= 0)
		item_error(it, SHMEX_EBADPRICE, "limit must be positive");

	if (it->err)
		return;
	it->side = amount < 0 ? SHM_SIDE_SELL : SHM_SIDE_BUY;
	it->qty = amount < 0 ? -amount : amount;
	int64_t cash;
	if (shm_dec_cash(it->qty, it->limit, &cash) != 0)
		item_error(it, SHMEX_EOVERFLOW, "amount x limit out of range");
}

static void start_order_ref(struct gw_xml_parser *p, const XML_Char **atts, long idx)
{
	const char *id = attr_get(atts, "id");
	struct gw_text t_id;
	if (!attr_keep(p, id, &t_id))
		return;
	struct gw_item *it = &p->req->items[idx];
	it->id = t_id;
	static const char *const allowed[] = {"id", NULL};
	item_check_attrs(p, it, atts, allowed);
	const char *why = NULL;
	if (id == NULL)
		item_error(it, SHMEX_EBADORDERID, "missing id");
	else if (parse_uint(id, strlen(id), GW_XML_ORDER_DIGITS, &it->order_id, &why) !=
		 0)
		item_error(it, SHMEX_EBADORDERID, why);
	else if (it->order_id == 0)
		item_error(it, SHMEX_EBADORDERID, "zero");
}

static bool is_leaf(uint8_t kind)
{
	return kind == F_ACCOUNT || kind == F_SYM_ACCOUNT || kind == F_ORDER ||
	       kind == F_QUERY || kind == F_CANCEL;
}

static void XMLCALL on_start(void *ud, const XML_Char *name, const XML_Char **atts)
{
	struct gw_xml_parser *p = ud;
	if (p->failed)
		return;
	if (++p->nelems > p->lim.max_elems) {
		xml_fail(p, SHMEX_ETOOMANY, "more than %u elements", p->lim.max_elems);
		return;
	}
	if (p->depth >= p->lim.max_depth) {
		xml_fail(p, SHMEX_ETOODEEP, "nested deeper than %u levels",
			 p->lim.max_depth);
		return;
	}
	if (strlen(name) > p->lim.max_text) {
		xml_fail(p, SHMEX_ETOOLONG, "element name longer than %u bytes",
			 p->lim.max_text);
		return;
	}
	for (size_t i = 0; atts[i] != NULL; i += 2) {
		if (strlen(atts[i]) > p->lim.max_text ||
		    strlen(atts[i + 1]) > p->lim.max_text) {
			xml_fail(p, SHMEX_ETOOLONG,
				 "attribute of <%.40s> longer than %u bytes", name,
				 p->lim.max_text);
			return;
		}
	}

	uint8_t kind = F_SKIP;
	long idx = -1;
	if (p->depth == 0) {
		start_root(p, name, atts, &kind);
		goto push;
	}
	uint8_t parent = p->stack[p->depth - 1];
	switch (parent) {
	case F_CREATE:
		if (strcmp(name, "account") == 0) {
			kind = F_ACCOUNT;
			idx = item_new(p, GW_ITEM_ACCOUNT);
			if (idx >= 0)
				start_create_account(p, atts, idx);
		} else if (strcmp(name, "symbol") == 0) {
			kind = F_SYMBOL;
			start_symbol(p, atts);
		} else {
			idx = start_unknown(p, name);
		}
		break;
	case F_SYMBOL:
		if (strcmp(name, "account") == 0) {
			kind = F_SYM_ACCOUNT;
			idx = item_new(p, GW_ITEM_SYMBOL);
			if (idx >= 0)
				start_sym_account(p, atts, idx);
		} else {
			idx = start_unknown(p, name);
		}
		break;
	case F_TX:
		if (strcmp(name, "order") == 0) {
			kind = F_ORDER;
			idx = item_new(p, GW_ITEM_ORDER);
			if (idx >= 0)
				start_order(p, atts, idx);
		} else if (strcmp(name, "query") == 0 || strcmp(name, "cancel") == 0) {
			kind = name[0] == 'q' ? F_QUERY : F_CANCEL;
			idx = item_new(p,
				       name[0] == 'q' ? GW_ITEM_QUERY : GW_ITEM_CANCEL);
			if (idx >= 0)
				start_order_ref(p, atts, idx);
		} else {
			idx = start_unknown(p, name);
		}
		break;
	default:
		if (is_leaf(parent))
			item_error(&p->req->items[p->stack_item[p->depth - 1]],
				   SHMEX_EBADREQUEST, "unexpected child element");
		break;
	}

push:
	if (p->failed)
		return;
	p->stack[p->depth] = kind;
	p->stack_item[p->depth] = idx >= 0 ? (uint32_t)idx : 0;
	p->depth++;
}

static void XMLCALL on_end(void *ud, const XML_Char *name)
{
	struct gw_xml_parser *p = ud;
	(void)name;
	if (p->failed || p->depth == 0)
		return;
	p->depth--;
	uint8_t kind = p->stack[p->depth];
	if (kind == F_SYM_ACCOUNT) {
		end_sym_account(p, p->stack_item[p->depth]);
	} else if (kind == F_SYMBOL && p->sym_naccounts == 0) {
		long idx = item_new(p, GW_ITEM_SYMBOL);
		if (idx < 0)
			return;
		struct gw_item *it = &p->req->items[idx];
		it->sym = p->sym_t;
		it->sym_val = p->sym_val;
		if (p->sym_err == SHMEX_EUNKNOWNATTR)
			it->name = p->sym_attr;
		item_error(it, p->sym_err ? p->sym_err : SHMEX_EBADREQUEST,
			   p->sym_err ? p->sym_why : "symbol without account");
	}
}

static void XMLCALL on_text(void *ud, const XML_Char *s, int len)
{
	struct gw_xml_parser *p = ud;
	if (p->failed || p->depth == 0 || len <= 0)
		return;
	if (p->stack[p->depth - 1] != F_SYM_ACCOUNT)
		return; /* stray text is ignored */
	if ((size_t)p->text_len + (size_t)len > p->lim.max_text) {
		xml_fail(p, SHMEX_ETOOLONG, "<account> text longer than %u bytes",
			 p->lim.max_text);
		return;
	}
	/* Only this element's text is appended while it is open (its
	 * children are skipped), so the text stays contiguous. */
	struct gw_text t;
	if (!arena_put(p, s, (size_t)len, &t))
		return;
	p->text_len += (uint32_t)len;
}

static void XMLCALL on_doctype(void *ud, const XML_Char *name, const XML_Char *sysid,
			       const XML_Char *pubid, int has_internal_subset)
{
	struct gw_xml_parser *p = ud;
	xml_fail(p, SHMEX_ENODTD, "DOCTYPE is not allowed");
}

static void XMLCALL on_entity_decl(void *ud, const XML_Char *name,
				   int is_parameter_entity, const XML_Char *value,
				   int value_length, const XML_Char *base,
				   const XML_Char *sysid, const XML_Char *pubid,
				   const XML_Char *notation)
{
	struct gw_xml_parser *p = ud;
	xml_fail(p, SHMEX_ENODTD, "entity declarations are not allowed");
}

/* ---- document ----------------------------------------------------------- */

static void req_reset(struct gw_xml_req *req)
{
	if (req->items_cap > REQ_KEEP_ITEMS) {
		free(req->items);
		req->items = NULL;
		req->items_cap = 0;
	}
	if (req->arena_cap > REQ_KEEP_ARENA) {
		free(req->arena);
		req->arena = NULL;
		req->arena_cap = 0;
	}
	req->root = GW_ROOT_NONE;
	req->err = 0;
	req->detail[0] = '\0';
	req->account = 0;
	req->account_err = 0;
	req->account_why = NULL;
	req->account_t = text_absent;
	req->nitems = 0;
	req->arena_len = 0;
}

int gw_xml_parse(struct gw_xml_parser *p, const char *doc, size_t len,
		 struct gw_xml_req *req)
{
	req_reset(req);
	p->req = req;
	p->failed = false;
	p->depth = 0;
	p->nelems = 0;
	p->sym_naccounts = 0;

	if (len > INT_MAX) {
		req->err = SHMEX_ETOOBIG;
		snprintf(req->detail, sizeof(req->detail),
			 "document larger than %d bytes", INT_MAX);
		return req->err;
	}
	if (XML_ParserReset(p->xp, NULL) != XML_TRUE) {
		req->err = SHMEX_EINTERNAL;
		snprintf(req->detail, sizeof(req->detail), "parser reset failed");
		return req->err;
	}
	XML_SetHashSalt(p->xp, p->salt);
	XML_SetUserData(p->xp, p);
	XML_SetElementHandler(p->xp, on_start, on_end);
	XML_SetCharacterDataHandler(p->xp, on_text);
	XML_SetStartDoctypeDeclHandler(p->xp, on_doctype);
	XML_SetEntityDeclHandler(p->xp, on_entity_decl);
	XML_SetParamEntityParsing(p->xp, XML_PARAM_ENTITY_PARSING_NEVER);

	enum XML_Status st = XML_Parse(p->xp, doc, (int)len, XML_TRUE);
	if (!p->failed && st != XML_STATUS_OK) {
		enum XML_Error code = XML_GetErrorCode(p->xp);
		p->failed = true;
		req->err = SHMEX_EBADXML;
		snprintf(req->detail, sizeof(req->detail), "%s at line %lu, column %lu",
			 XML_ErrorString(code),
			 (unsigned long)XML_GetCurrentLineNumber(p->xp),
			 (unsigned long)XML_GetCurrentColumnNumber(p->xp) + 1);
	}
	p->req = NULL;
	if (p->failed) {
		req->root = GW_ROOT_NONE;
		req->nitems = 0;
		if (req->err == 0)
			req->err = SHMEX_EINTERNAL;
		return req->err;
	}

	/* An invalid <transactions> account spoils every operation (the
	 * handout: each child gets its own error).  Unknown elements keep
	 * their own reason. */
	if (req->root == GW_ROOT_TRANSACTIONS && req->account_err) {
		for (uint32_t i = 0; i < req->nitems; i++) {
			struct gw_item *it = &req->items[i];
			if (it->kind == GW_ITEM_UNKNOWN)
				continue;
			it->err = req->account_err;
			it->why = req->account_why;
		}
	}
	return 0;
}
