/*
 * gw_xml: parses one ECE 568 request document (the bytes gw_frame handed
 * out) with expat into a bounded request structure: the root (<create> or
 * <transactions>) and its operations as items in DOCUMENT ORDER, each with
 * its values in fixed point, the original attribute text for echoing, and a
 * per-item validation error, so the gateway can answer a bad item without
 * asking a matcher.
 *
 * Two objects: a parser (struct gw_xml_parser, one per gateway thread,
 * reused for every document) and a request (struct gw_xml_req, one per
 * connection or per request in flight, reused too: its storage only grows,
 * bounded by the limits).  Parsing is synchronous and does no I/O.
 *
 * Whole-request errors (malformed XML, a DTD, a limit exceeded, a bad root)
 * leave root == GW_ROOT_NONE and no items; the reply is then
 * <results><error>reason</error></results>.  See docs/protocol.md.
 *
 * Concurrency: a parser and a request belong to one thread at a time.
 */
#ifndef SHMEX_GW_XML_H
#define SHMEX_GW_XML_H

#include "shm/shm_dec.h"
#include "shm/shm_settings.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define GW_XML_MAX_ELEMS_DEFAULT SHM_DEFAULT_MAX_ELEMENTS
#define GW_XML_MAX_DEPTH_DEFAULT 8
#define GW_XML_MAX_TEXT_DEFAULT 256
#define GW_XML_MAX_DEPTH_LIMIT 64
#define GW_XML_ACCOUNT_DIGITS 19 /* account ids: 1..19 decimal digits */
#define GW_XML_ORDER_DIGITS 20   /* order ids: 1..20 digits, 1..2^64-1 */

struct gw_xml_limits {
	uint32_t max_elems; /* elements per document, root included */
	uint32_t max_depth; /* nesting depth, root = 1 (2..64) */
	uint32_t max_text;  /* bytes of one attribute value, element or
			     * attribute name, or <account> text */
};

/* Fills in the defaults above. */
void gw_xml_limits_default(struct gw_xml_limits *lim);

enum gw_xml_root {
	GW_ROOT_NONE = 0, /* whole-request error: see err/detail */
	GW_ROOT_CREATE,
	GW_ROOT_TRANSACTIONS,
};

enum gw_item_kind {
	GW_ITEM_ACCOUNT = 1, /* <create><account id balance/> */
	GW_ITEM_SYMBOL,      /* one <account id>NUM</account> of a
			      * <create><symbol sym>; a <symbol> without
			      * any gives one item with an error */
	GW_ITEM_ORDER,       /* <transactions><order sym amount limit/> */
	GW_ITEM_QUERY,       /* <transactions><query id/> */
	GW_ITEM_CANCEL,      /* <transactions><cancel id/> */
	GW_ITEM_UNKNOWN,     /* any other element in an item position:
			      * err = SHMEX_EUNKNOWNELEM, name = its name */
};

/* A piece of text in the request's arena; off == GW_TEXT_ABSENT when the
 * attribute was not given.  Use gw_xml_text() to get the bytes. */
#define GW_TEXT_ABSENT UINT32_MAX
struct gw_text {
	uint32_t off;
	uint32_t len;
};

struct gw_str {
	const char *p; /* NULL when absent */
	size_t len;
};

struct gw_item {
	uint8_t kind;       /* enum gw_item_kind */
	uint8_t side;       /* ORDER: enum shm_side (amount < 0 sells) */
	uint8_t tif;        /* ORDER: enum shm_tif (tif="GTC|IOC|FOK", GTC) */
	uint8_t post_only;  /* ORDER: postonly="yes" (SHM_MSG_POST_ONLY) */
	int32_t err;        /* 0, or the shmex error the reply must carry */
	const char *why;    /* static detail for err ("zero amount"), or NULL */
	uint64_t account;   /* ACCOUNT, SYMBOL: account id */
	uint64_t order_id;  /* QUERY, CANCEL */
	int64_t qty;        /* ORDER: |amount|; SYMBOL: shares (QTY scale, > 0) */
	int64_t limit;      /* ORDER: limit (PRICE scale, > 0) */
	shm_cash_t balance; /* ACCOUNT: initial balance (CASH scale, >= 0,
			     * at most SHM_CASH_INPUT_MAX) */
	/* Text as written (after XML decoding), echoed in replies. */
	struct gw_text id;        /* ACCOUNT, SYMBOL, QUERY, CANCEL */
	struct gw_text sym;       /* SYMBOL, ORDER */
	struct gw_text amount;    /* ORDER */
	struct gw_text limit_t;   /* ORDER */
	struct gw_text balance_t; /* ACCOUNT */
	struct gw_text name;      /* UNKNOWN: the element's name; other kinds
				   * with err SHMEX_EUNKNOWNATTR: the
				   * attribute's name */
	/* Validated symbol (the sym text without surrounding blanks); only
	 * meaningful when err == 0 for SYMBOL and ORDER. */
	struct gw_text sym_val;
};

struct gw_xml_req {
	uint8_t root;     /* enum gw_xml_root */
	int err;          /* whole-request error (0 when root != NONE) */
	char detail[160]; /* whole-request error detail, NUL-terminated */
	/* TRANSACTIONS: the account (id= or its alias account=). */
	uint64_t account;
	int account_err; /* 0 or SHMEX_EBADACCOUNT; when set, every known
			  * item carries it as its err too */
	const char *account_why;
	struct gw_text account_t;
	uint32_t nitems;
	struct gw_item *items;
	/* storage (private) */
	uint32_t items_cap;
	char *arena;
	size_t arena_len, arena_cap;
};

static inline struct gw_str gw_xml_text(const struct gw_xml_req *req, struct gw_text t)
{
	struct gw_str s = {NULL, 0};
	if (t.off != GW_TEXT_ABSENT) {
		s.p = req->arena + t.off;
		s.len = t.len;
	}
	return s;
}

struct gw_xml_parser;

/* Creates a parser; lim NULL means defaults.  -EINVAL on absurd limits,
 * -ENOMEM. */
int gw_xml_parser_create(struct gw_xml_parser **out, const struct gw_xml_limits *lim)
	__attribute__((warn_unused_result));
void gw_xml_parser_destroy(struct gw_xml_parser *p);

void gw_xml_req_init(struct gw_xml_req *req);
void gw_xml_req_free(struct gw_xml_req *req);

/*
 * Parses doc[0..len) into req (whatever req held before is dropped).
 * Returns 0 when the document is a request (root != GW_ROOT_NONE; items may
 * still carry their own errors), else the whole-request error, also stored
 * in req->err with a human-readable req->detail:
 *   SHMEX_EBADXML        not well-formed (detail: expat's message, line, col)
 *   SHMEX_ENODTD         a DOCTYPE / entity declaration (billion laughs)
 *   SHMEX_EBADREQUEST    well-formed but the root is not create/transactions
 *   SHMEX_ETOOMANY       more than max_elems elements
 *   SHMEX_ETOODEEP       nesting deeper than max_depth
 *   SHMEX_ETOOLONG       a name, attribute value or text above max_text
 *   SHMEX_ETOOBIG        len does not fit expat's int
 *   -ENOMEM              out of memory (reply "Internal error")
 */
int gw_xml_parse(struct gw_xml_parser *p, const char *doc, size_t len,
		 struct gw_xml_req *req) __attribute__((warn_unused_result));

#endif
