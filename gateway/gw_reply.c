/*
 * gw_reply: <results> documents for ECE 568 replies (see gw_reply.h).
 *
 * Shape: an append-only byte buffer with a sticky error, so a caller builds
 * a reply of many children without checking each step and learns about a
 * failure once, at gw_reply_finish.  The first GW_REPLY_LINE_RESERVE bytes
 * of the buffer are kept free: when replies are framed, the length line is
 * written right before the document once its size is known, without moving
 * the document.  "<results>" is written lazily with the first child so an
 * empty reply can be "<results/>".
 *
 * Invariants: RESERVE <= len <= cap; while nest is 1, len - RESERVE <= max
 * unless err is set; nest is 0 or 1 (inside <status> or <canceled id>).
 *
 * Limits: the fill listing of one group may bring the buffered reply to at
 * most `max` bytes (default 64 MiB; a query of an order with many fills is
 * the largest child); beyond it the group fails with SHMEX_ETOOBIG, and
 * the caller rolls it back to its mark and answers that item with an error
 * child.  Children outside groups are bounded by the request they echo and
 * are not limited here.
 */
#include "gateway/gw_reply.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shm/shm_dec.h"
#include "shm/shm_error.h"

#define RESERVE GW_REPLY_LINE_RESERVE
#define GW_REPLY_ATTR_NAME_MAX 64

static const char xml_decl[] = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n";

void gw_reply_init(struct gw_reply *r, size_t max, bool framed)
{
	memset(r, 0, sizeof(*r));
	r->max = max ? max : GW_REPLY_MAX_DEFAULT;
	r->framed = framed;
	r->len = RESERVE;
}

void gw_reply_free(struct gw_reply *r)
{
	free(r->buf);
	r->buf = NULL;
	r->cap = 0;
	r->len = RESERVE;
}

static void put(struct gw_reply *r, const char *s, size_t n)
{
	if (r->err)
		return;
	if (r->nest && r->len - RESERVE + n > r->max) {
		r->err = SHMEX_ETOOBIG;
		return;
	}
	if (r->len + n > r->cap) {
		size_t cap = r->cap ? r->cap : 1024;
		while (cap < r->len + n)
			cap *= 2;
		char *nb = realloc(r->buf, cap);
		if (nb == NULL) {
			r->err = -ENOMEM;
			return;
		}
		r->buf = nb;
		r->cap = cap;
	}
	memcpy(r->buf + r->len, s, n);
	r->len += n;
}

static void puts_(struct gw_reply *r, const char *s)
{
	put(r, s, strlen(s));
}

/* The replacement of one byte, or NULL when it is written as is.  In
 * attributes tab, LF and CR become character references so that a client's
 * attribute normalisation cannot change them.  Other control bytes cannot
 * be written in XML 1.0 at all and become '?'. */
static const char *esc_of(unsigned char c, bool attr)
{
	switch (c) {
	case '&':
		return "&amp;";
	case '<':
		return "&lt;";
	case '>':
		return "&gt;";
	case '"':
		return "&quot;";
	case '\'':
		return "&apos;";
	case '\t':
		return attr ? "&#9;" : NULL;
	case '\n':
		return attr ? "&#10;" : NULL;
	case '\r':
		return "&#13;";
	default:
		return c < 0x20 ? "?" : NULL;
	}
}

static void put_esc(struct gw_reply *r, const char *s, size_t n, bool attr)
{
	size_t start = 0;
	for (size_t i = 0; i < n; i++) {
		const char *rep = esc_of((unsigned char)s[i], attr);
		if (rep == NULL)
			continue;
		put(r, s + start, i - start);
		puts_(r, rep);
		start = i + 1;
	}
	put(r, s + start, n - start);
}

static void put_attr(struct gw_reply *r, const char *name, struct gw_str v)
{
	if (v.p == NULL)
		return;
	put(r, " ", 1);
	puts_(r, name);
	put(r, "=\"", 2);
	put_esc(r, v.p, v.len, true);
	put(r, "\"", 1);
}

static void put_attr_dec(struct gw_reply *r, const char *name, int64_t v, int digits)
{
	char num[32];
	int n = shm_dec_format(num, sizeof(num), v, digits);
	if (n < 0) {
		if (!r->err)
			r->err = SHMEX_EINTERNAL;
		return;
	}
	struct gw_str s = {num, (size_t)n};
	put_attr(r, name, s);
}

static void put_attr_u64(struct gw_reply *r, const char *name, uint64_t v)
{
	char num[24];
	int n = snprintf(num, sizeof(num), "%" PRIu64, v);
	struct gw_str s = {num, (size_t)n};
	put_attr(r, name, s);
}

/* Opens a child line: "<results>" if needed and the indentation. */
static void child(struct gw_reply *r, const char *tag)
{
	if (!r->open) {
		puts_(r, "<results>\n");
		r->open = true;
	}
	puts_(r, r->nest ? "    <" : "  <");
	puts_(r, tag);
}

void gw_reply_begin(struct gw_reply *r)
{
	if (r->cap > GW_REPLY_KEEP_BUF) {
		free(r->buf);
		r->buf = NULL;
		r->cap = 0;
	}
	r->len = RESERVE;
	r->open = false;
	r->nest = 0;
	r->err = 0;
	r->taken = 0;
	r->mark_len = r->len;
	r->mark_open = false;
	puts_(r, xml_decl);
}

void gw_reply_mark(struct gw_reply *r)
{
	r->mark_len = r->len;
	r->mark_open = r->open;
}

void gw_reply_rollback(struct gw_reply *r)
{
	if (r->err && r->err != SHMEX_ETOOBIG)
		return;
	r->err = 0;
	r->len = r->mark_len;
	r->open = r->mark_open;
	r->nest = 0;
}

bool gw_reply_too_big(const struct gw_reply *r)
{
	return r->err == SHMEX_ETOOBIG;
}

size_t gw_reply_buffered(const struct gw_reply *r)
{
	return r->len - RESERVE;
}

int gw_reply_take(struct gw_reply *r, const char **out, size_t *len)
{
	if (r->err)
		return r->err;
	if (r->framed || r->nest)
		return SHMEX_EINTERNAL;
	*out = r->buf ? r->buf + RESERVE : "";
	*len = r->len - RESERVE;
	r->taken += r->len - RESERVE;
	r->len = RESERVE;
	r->mark_len = RESERVE;
	return 0;
}

size_t gw_reply_taken(const struct gw_reply *r)
{
	return r->taken;
}

int gw_reply_finish(struct gw_reply *r, const char **out, size_t *len)
{
	if (r->nest && !r->err)
		r->err = SHMEX_EINTERNAL;
	if (r->open)
		puts_(r, "</results>\n");
	else
		puts_(r, "<results/>\n");
	if (r->err)
		return r->err;

	size_t start = RESERVE;
	if (r->framed) {
		char line[RESERVE];
		int n = snprintf(line, sizeof(line), "%zu\n", r->len - RESERVE);
		start = RESERVE - (size_t)n;
		memcpy(r->buf + start, line, (size_t)n);
	}
	*out = r->buf + start;
	*len = r->len - start;
	return 0;
}

/*
 * What a client reads for each code: the protocol's wire text, chosen here
 * and not in shm/'s operator table, so that a message written for an
 * operator ("ring indexes are corrupted") never reaches a client and the
 * wire text of a code can be kept stable for the clients that match it.
 * Codes without a client meaning read "Internal error".
 */
static const struct {
	int code;
	const char *text;
} wire_text[] = {
	{SHMEX_EBUSY, "Exchange busy, try again"},
	{SHMEX_ENOREADERSLOT, "Too many concurrent readers of the book, try again"},
	{SHMEX_ENOACCOUNT, "Account does not exist"},
	{SHMEX_EACCOUNTEXISTS, "Account already exists"},
	{SHMEX_EACCOUNTSFULL, "Account table full"},
	{SHMEX_EBADACCOUNT, "Invalid account id"},
	{SHMEX_ENOSYMBOL, "Symbol does not exist"},
	{SHMEX_EBADSYMBOL, "Invalid symbol"},
	{SHMEX_ESYMBOLSFULL, "Symbol table full"},
	{SHMEX_EBADAMOUNT, "Invalid amount"},
	{SHMEX_EBADPRICE, "Invalid limit price"},
	{SHMEX_EBADBALANCE, "Invalid balance"},
	{SHMEX_EOVERFLOW, "Numeric overflow"},
	{SHMEX_ESHARESRANGE, "Shares out of range: a symbol holds at most "
			     "100000000000000000000000000 shares in all"},
	{SHMEX_ENOFUNDS, "Insufficient funds"},
	{SHMEX_ENOSHARES, "Insufficient shares"},
	{SHMEX_EBOOKFULL, "Book full"},
	{SHMEX_ENOORDER, "Order does not exist"},
	{SHMEX_ENOTOWNER, "Order belongs to another account"},
	{SHMEX_ENOTOPEN, "Order has nothing open"},
	{SHMEX_EBADTIF, "Invalid time in force"},
	{SHMEX_EWOULDCROSS, "Post-only order would cross the book"},
	{SHMEX_EUNKNOWNATTR, "Unknown attribute"},
	{SHMEX_EBADTYPE, "Invalid order type"},
	{SHMEX_EBADREQUEST, "Malformed request"},
	{SHMEX_ETOOBIG, "Request too large"},
	{SHMEX_EUNKNOWNELEM, "Unknown element"},
	{SHMEX_EBADLENGTH, "Invalid request length line"},
	{SHMEX_ELENGTHDIGITS, "Request length has too many digits"},
	{SHMEX_EBADXML, "Malformed XML"},
	{SHMEX_ENODTD, "DTDs and entity declarations are not allowed"},
	{SHMEX_ETOODEEP, "Request nested too deeply"},
	{SHMEX_ETOOMANY, "Too many elements in request"},
	{SHMEX_ETOOLONG, "Attribute or text too long"},
	{SHMEX_EBADORDERID, "Invalid order id"},
	{SHMEX_EPOSITIONSFULL, "Position table full"},
	{SHMEX_ETIMEDOUT, "Timed out"},
	{SHMEX_EJOURNAL, "Not executed: the exchange cannot write its journal"},
	{SHMEX_ENOTEXEC, "Not executed: the matcher restarted; send it again"},
	{SHMEX_ENOTEXECRING, "Not executed: the exchange repaired a damaged internal "
			     "ring; send it again"},
	{SHMEX_EREPLYBIG, "Reply too large: this order's fills do not fit in a reply"},
	{SHMEX_EUNKNOWN, "Outcome unknown: the exchange did not answer in time; "
			 "check before sending it again"},
	{SHMEX_ESTOPPING, "Not executed: the exchange is stopping"},
	{SHMEX_ESHORTBODY, "Request ended before the length its length line announced"},
	{SHMEX_ESKIPPED, "Not executed: an earlier item of this request has no answer"},
	{SHMEX_ECONNSFULL, "Too many connections to this gateway, try again later"},
	{SHMEX_EPEERFULL, "Too many connections from your address; close one and "
			  "try again"},
};

const char *gw_reply_text(int err)
{
	for (size_t i = 0; i < sizeof(wire_text) / sizeof(wire_text[0]); i++)
		if (wire_text[i].code == err)
			return wire_text[i].text;
	return "Internal error";
}

static void reply_error(struct gw_reply *r, const char *const *names,
			const struct gw_str *values, size_t n, int err,
			const char *detail, struct gw_str elem)
{
	child(r, "error");
	for (size_t i = 0; i < n; i++)
		put_attr(r, names[i], values[i]);
	put(r, ">", 1);
	const char *msg = gw_reply_text(err);
	put_esc(r, msg, strlen(msg), false);
	if (detail) {
		puts_(r, ": ");
		put_esc(r, detail, strlen(detail), false);
	}
	if (elem.p) {
		puts_(r, ": &lt;");
		put_esc(r, elem.p, elem.len, false);
		puts_(r, "&gt;");
	}
	puts_(r, "</error>\n");
}

void gw_reply_error(struct gw_reply *r, const char *const *names,
		    const struct gw_str *values, size_t n, int err, const char *detail)
{
	struct gw_str none = {NULL, 0};
	reply_error(r, names, values, n, err, detail, none);
}

void gw_reply_error_doc(struct gw_reply *r, int err, const char *detail, const char **out,
			size_t *len)
{
	gw_reply_begin(r);
	gw_reply_error(r, NULL, NULL, 0, err, detail);
	if (gw_reply_finish(r, out, len) == 0)
		return;
	/* Even the short document failed (out of memory): a constant one. */
	static const char plain[] =
		"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
		"<results>\n  <error>Internal error</error>\n</results>\n";
	static const char framed[] =
		"92\n<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
		"<results>\n  <error>Internal error</error>\n</results>\n";
	_Static_assert(sizeof(plain) - 1 == 92, "framed fallback length");
	*out = r->framed ? framed : plain;
	*len = r->framed ? sizeof(framed) - 1 : sizeof(plain) - 1;
}

void gw_reply_created(struct gw_reply *r, struct gw_str id)
{
	child(r, "created");
	put_attr(r, "id", id);
	puts_(r, "/>\n");
}

void gw_reply_created_sym(struct gw_reply *r, struct gw_str sym, struct gw_str id)
{
	child(r, "created");
	put_attr(r, "sym", sym);
	put_attr(r, "id", id);
	puts_(r, "/>\n");
}

void gw_reply_opened(struct gw_reply *r, struct gw_str sym, struct gw_str amount,
		     struct gw_str limit, uint64_t order_id)
{
	child(r, "opened");
	put_attr(r, "sym", sym);
	put_attr(r, "amount", amount);
	put_attr(r, "limit", limit);
	put_attr_u64(r, "id", order_id);
	puts_(r, "/>\n");
}

static void group_begin(struct gw_reply *r, const char *tag, struct gw_str id)
{
	if (r->nest && !r->err)
		r->err = SHMEX_EINTERNAL;
	child(r, tag);
	put_attr(r, "id", id);
	puts_(r, ">\n");
	r->nest = 1;
}

static void group_end(struct gw_reply *r, const char *tag)
{
	if (!r->nest && !r->err)
		r->err = SHMEX_EINTERNAL;
	r->nest = 0;
	puts_(r, "  </");
	puts_(r, tag);
	puts_(r, ">\n");
}

void gw_reply_status_begin(struct gw_reply *r, struct gw_str id)
{
	group_begin(r, "status", id);
}

void gw_reply_status_end(struct gw_reply *r)
{
	group_end(r, "status");
}

void gw_reply_cancel_begin(struct gw_reply *r, struct gw_str id)
{
	group_begin(r, "canceled", id);
}

void gw_reply_cancel_end(struct gw_reply *r)
{
	group_end(r, "canceled");
}

void gw_reply_open(struct gw_reply *r, int64_t shares)
{
	child(r, "open");
	put_attr_dec(r, "shares", shares, SHM_QTY_DIGITS);
	puts_(r, "/>\n");
}

void gw_reply_canceled_part(struct gw_reply *r, int64_t shares, uint64_t time)
{
	child(r, "canceled");
	put_attr_dec(r, "shares", shares, SHM_QTY_DIGITS);
	put_attr_u64(r, "time", time);
	puts_(r, "/>\n");
}

void gw_reply_executed(struct gw_reply *r, int64_t shares, int64_t price, uint64_t time)
{
	child(r, "executed");
	put_attr_dec(r, "shares", shares, SHM_QTY_DIGITS);
	put_attr_dec(r, "price", price, SHM_PRICE_DIGITS);
	put_attr_u64(r, "time", time);
	puts_(r, "/>\n");
}

void gw_reply_item_error(struct gw_reply *r, const struct gw_xml_req *req,
			 const struct gw_item *it, int err, const char *why)
{
	static const char *const n_id[] = {"id"};
	static const char *const n_sym_id[] = {"sym", "id"};
	static const char *const n_order[] = {"sym", "amount", "limit"};
	struct gw_str v[3];
	struct gw_str none = {NULL, 0};

	if (err == 0) {
		err = it->err;
		why = it->why;
	}
	if (err == 0)
		err = SHMEX_EINTERNAL;
	/* An unknown attribute is named (it->name holds it for these). */
	char attr[GW_REPLY_ATTR_NAME_MAX + 3];
	struct gw_str an = gw_xml_text(req, it->name);
	if (err == SHMEX_EUNKNOWNATTR && it->kind != GW_ITEM_UNKNOWN && an.p && !why) {
		snprintf(attr, sizeof(attr), "%.*s",
			 (int)(an.len < GW_REPLY_ATTR_NAME_MAX ? an.len
							       : GW_REPLY_ATTR_NAME_MAX),
			 an.p);
		why = attr;
	}
	switch (it->kind) {
	case GW_ITEM_ACCOUNT:
	case GW_ITEM_QUERY:
	case GW_ITEM_CANCEL:
		v[0] = gw_xml_text(req, it->id);
		reply_error(r, n_id, v, 1, err, why, none);
		break;
	case GW_ITEM_SYMBOL:
		v[0] = gw_xml_text(req, it->sym);
		v[1] = gw_xml_text(req, it->id);
		reply_error(r, n_sym_id, v, 2, err, why, none);
		break;
	case GW_ITEM_ORDER:
		v[0] = gw_xml_text(req, it->sym);
		v[1] = gw_xml_text(req, it->amount);
		v[2] = gw_xml_text(req, it->limit_t);
		reply_error(r, n_order, v, 3, err, why, none);
		break;
	default:
		reply_error(r, NULL, NULL, 0, err, why, gw_xml_text(req, it->name));
		break;
	}
}

void gw_reply_item_created(struct gw_reply *r, const struct gw_xml_req *req,
			   const struct gw_item *it)
{
	if (it->kind == GW_ITEM_SYMBOL)
		gw_reply_created_sym(r, gw_xml_text(req, it->sym),
				     gw_xml_text(req, it->id));
	else
		gw_reply_created(r, gw_xml_text(req, it->id));
}

void gw_reply_item_opened(struct gw_reply *r, const struct gw_xml_req *req,
			  const struct gw_item *it, uint64_t order_id)
{
	gw_reply_opened(r, gw_xml_text(req, it->sym), gw_xml_text(req, it->amount),
			gw_xml_text(req, it->limit_t), order_id);
}
