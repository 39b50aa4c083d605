/*
 * gw_reply: writes the <results> reply document of one request into a
 * bounded, growable buffer, optionally preceded by the same length line that
 * frames requests.  Pure: no I/O.
 *
 * Usage: gw_reply_begin, then one call per reply child in request order,
 * then gw_reply_finish to get the bytes to send.  The writers do not return
 * errors one by one: the first failure is remembered and returned by
 * gw_reply_finish, and everything after it is ignored (the pattern of
 * stdio's ferror).
 *
 * Size.  Only the listing inside a <status> or <canceled id> group (one
 * child per fill) can grow without a bound the request sets, so only it
 * is limited: a group whose bytes would bring the buffered reply above
 * `max` fails with SHMEX_ETOOBIG.  The caller marks the reply before the
 * group (gw_reply_mark) and, on that failure, rolls the group back
 * (gw_reply_rollback) and writes a short <error> child in its place, so
 * that every item still gets its own answer.  Every other child is bounded
 * by the request it echoes.  A caller that streams (unframed replies)
 * takes the bytes written so far with gw_reply_take and sends them before
 * the document is finished; the buffer then holds only what came after.
 *
 * Echoed values are escaped (& < > " ' and tab/CR/LF in attributes);
 * computed numbers are printed with shm_dec_format (shortest exact).
 * Output is UTF-8 with an XML declaration and one child per line.
 *
 * Concurrency: a reply belongs to one thread.
 */
#ifndef SHMEX_GW_REPLY_H
#define SHMEX_GW_REPLY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gateway/gw_xml.h"

#define GW_REPLY_MAX_DEFAULT ((size_t)64 << 20) /* 64 MiB */
#define GW_REPLY_KEEP_BUF ((size_t)64 << 10)
#define GW_REPLY_LINE_RESERVE 24 /* room for the optional length line */

struct gw_reply {
	char *buf;  /* [0, LINE_RESERVE) is room for the length line */
	size_t len; /* end of the document inside buf */
	size_t cap;
	size_t max;      /* largest document (without the length line) */
	bool framed;     /* prefix "<length>\n" */
	bool open;       /* "<results>" written (at least one child) */
	uint8_t nest;    /* 1 inside <status>/<canceled id> */
	int err;         /* first failure, sticky until gw_reply_begin */
	size_t mark_len; /* gw_reply_mark: where to roll back to */
	bool mark_open;
	size_t taken; /* bytes handed out by gw_reply_take so far */
};

/* max (the largest buffered reply a group may grow to) 0 means
 * GW_REPLY_MAX_DEFAULT.  Allocates nothing. */
void gw_reply_init(struct gw_reply *r, size_t max, bool framed);
void gw_reply_free(struct gw_reply *r);

/* Starts a new document (forgets the previous one). */
void gw_reply_begin(struct gw_reply *r);

/*
 * Ends the document and returns the bytes to send (length line included
 * when framed), valid until the next call on r.  With no children the
 * document is <results/>.  Returns 0, SHMEX_ETOOBIG (document above max),
 * -ENOMEM, or SHMEX_EINTERNAL (a <status>/<canceled> left open).
 */
int gw_reply_finish(struct gw_reply *r, const char **out, size_t *len)
	__attribute__((warn_unused_result));

/* Remembers the current end (between children, outside a group). */
void gw_reply_mark(struct gw_reply *r);
/* Forgets everything written since gw_reply_mark and clears a
 * SHMEX_ETOOBIG failure (any other failure stays). */
void gw_reply_rollback(struct gw_reply *r);
/* True when a group failed because of max (roll it back). */
bool gw_reply_too_big(const struct gw_reply *r);
/* Bytes buffered now (since begin or the last take). */
size_t gw_reply_buffered(const struct gw_reply *r);
/* Streaming, unframed only, between children and without a failure: hands
 * out the bytes written so far (valid until the next call on r) and
 * empties the buffer; gw_reply_finish then returns only the rest.  Returns
 * 0, or the sticky failure (nothing is handed out then). */
int gw_reply_take(struct gw_reply *r, const char **out, size_t *len)
	__attribute__((warn_unused_result));
/* Bytes handed out by gw_reply_take since gw_reply_begin. */
size_t gw_reply_taken(const struct gw_reply *r);

/* A whole reply that is one error, for whole-request failures and for a
 * failed gw_reply_finish: <results><error>reason</error></results>,
 * reason = gw_reply_text(err) [": " detail].  Uses a small fixed document
 * if even that cannot be built, so it always yields bytes to send. */
/* The wire text a client reads for a shmex error code ("Insufficient
 * funds"); "Internal error" for codes that mean nothing to a client. */
const char *gw_reply_text(int err);

void gw_reply_error_doc(struct gw_reply *r, int err, const char *detail, const char **out,
			size_t *len);

/* ---- children, from raw values -------------------------------------- */

/* <created id="ID"/> */
void gw_reply_created(struct gw_reply *r, struct gw_str id);
/* <created sym="SYM" id="ID"/> */
void gw_reply_created_sym(struct gw_reply *r, struct gw_str sym, struct gw_str id);
/* <opened sym="SYM" amount="AMT" limit="LMT" id="ORDER_ID"/> */
void gw_reply_opened(struct gw_reply *r, struct gw_str sym, struct gw_str amount,
		     struct gw_str limit, uint64_t order_id);
/* <error NAME="VALUE"...>REASON</error>: names[i]/values[i] for i < n, an
 * absent value (p == NULL) is left out; reason = gw_reply_text(err) and,
 * when detail is not NULL, ": " detail. */
void gw_reply_error(struct gw_reply *r, const char *const *names,
		    const struct gw_str *values, size_t n, int err, const char *detail);

/* <status id="ID"> ... </status> and <canceled id="ID"> ... </canceled>:
 * between begin and end, gw_reply_open / gw_reply_canceled_part /
 * gw_reply_executed in the protocol's order. */
void gw_reply_status_begin(struct gw_reply *r, struct gw_str id);
void gw_reply_status_end(struct gw_reply *r);
void gw_reply_cancel_begin(struct gw_reply *r, struct gw_str id);
void gw_reply_cancel_end(struct gw_reply *r);
/* <open shares="N"/> (QTY scale) */
void gw_reply_open(struct gw_reply *r, int64_t shares);
/* <canceled shares="N" time="T"/> (QTY scale, seconds) */
void gw_reply_canceled_part(struct gw_reply *r, int64_t shares, uint64_t time);
/* <executed shares="N" price="P" time="T"/> (QTY, PRICE scales, seconds) */
void gw_reply_executed(struct gw_reply *r, int64_t shares, int64_t price, uint64_t time);

/* ---- children, from parsed items ------------------------------------ */

/* The item's <error> with the attributes the protocol echoes for its kind
 * (ACCOUNT: id; SYMBOL: sym id; ORDER: sym amount limit; QUERY, CANCEL:
 * id; UNKNOWN: none, the reason names the element).  err 0 means the
 * item's own err/why. */
void gw_reply_item_error(struct gw_reply *r, const struct gw_xml_req *req,
			 const struct gw_item *it, int err, const char *why);
/* <created id/> (ACCOUNT) or <created sym id/> (SYMBOL). */
void gw_reply_item_created(struct gw_reply *r, const struct gw_xml_req *req,
			   const struct gw_item *it);
/* <opened sym amount limit id/> for an ORDER item. */
void gw_reply_item_opened(struct gw_reply *r, const struct gw_xml_req *req,
			  const struct gw_item *it, uint64_t order_id);

#endif
