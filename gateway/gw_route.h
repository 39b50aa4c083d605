/*
 * gw_route: executes parsed ECE 568 requests for one gateway process.
 *
 * It is the handler behind gw_server: each complete request is parsed
 * (gw_xml), its items are executed strictly in DOCUMENT ORDER, and the
 * <results> reply (gw_reply) goes back through gw_server_reply.
 *
 *   <create><account>          CREATE_ACCOUNT -> the account's home shard
 *   <create><symbol><account>  ADD_SHARES     -> the symbol's shard
 *   <transactions><order>      ORDER          -> the symbol's shard
 *   <transactions><cancel>     CANCEL         -> the order's shard, then
 *                                                 its fills read from the book
 *   <transactions><query>      answered here, from the shard's book region
 *                                                 (costs the matcher nothing)
 *
 * A request that needs a matcher is a small state machine: the item's
 * message waits in a per-shard send queue, goes out in a batch on the
 * (gateway, shard) ring, and the request resumes when the reply with its
 * req_id comes back on the (shard, gateway) ring.  Other connections are
 * served meanwhile.  Only one message per request is outstanding, which is
 * what makes "a query after an order sees the order" hold.
 *
 * Back-pressure: a full ring keeps the message queued and retried every
 * loop turn; after busy_ms the item is answered "Exchange busy, try again",
 * and so is every later ring item of the same request (queries still run).
 * Nothing is dropped and nothing is sent twice.  Likewise a book read whose
 * snapshot keeps changing parks the request and is retried on later loop
 * turns, for up to busy_ms.
 *
 * Waking: the matcher rings this gateway's doorbell (a futex in the control
 * region) after writing replies.  An epoll loop cannot wait on a futex, so a
 * helper thread does: while requests are outstanding it sleeps on the
 * doorbell and, when a reply ring becomes readable, writes to an eventfd
 * that is in the epoll set (gw_route_wake_fd).  Idle: both threads sleep.
 *
 * Concurrency: every function but the helper thread's runs in the loop
 * thread.  The helper thread only reads ring indexes and the doorbell,
 * clears `armed` (private, GW2 labels in gw_route.c) and writes the
 * eventfd.
 */
#ifndef SHMEX_GW_ROUTE_H
#define SHMEX_GW_ROUTE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gateway/gw_server.h"
#include "gateway/gw_xml.h"

#define GW_ROUTE_BUSY_MS_DEFAULT 2000u

struct gw_route;

struct gw_route_cfg {
	const char *instance;
	uint32_t gateway;          /* this gateway's index */
	uint32_t max_conns;        /* as gw_server_cfg.max_conns (0: default) */
	uint32_t busy_ms;          /* 0: GW_ROUTE_BUSY_MS_DEFAULT */
	uint32_t spin_us;          /* helper's spin before sleeping (0: none) */
	size_t max_reply;          /* 0: GW_REPLY_MAX_DEFAULT */
	const struct gw_xml_limits *xml; /* NULL: defaults */
};

struct gw_route_stats {
	uint64_t requests;         /* documents handled */
	uint64_t items;            /* items answered */
	uint64_t sent;             /* ring messages sent */
	uint64_t replies;          /* ring replies matched to a request */
	uint64_t stale;            /* replies for nobody (closed connection,
				    * a predecessor gateway) dropped */
	uint64_t bad_replies;      /* replies that failed validation */
	uint64_t busy;             /* items answered "Exchange busy" */
	uint64_t queries;          /* status reads from the books */
	uint64_t retries;          /* busy status reads parked for a retry */
	uint64_t wakes;            /* eventfd wake-ups from the helper */
};

/* Attaches to the instance as gateway cfg->gateway: control and rings
 * regions, reply and request rings, accounts (read-only), each shard's book
 * (read-only) and reader table (one registration per shard), and starts the
 * helper thread.  err (may be NULL) gets a one-line reason on failure. */
int gw_route_open(struct gw_route **out, const struct gw_route_cfg *cfg,
		  char *err, size_t errlen) __attribute__((warn_unused_result));

/* Tells the route which server to answer through (before serving). */
void gw_route_bind(struct gw_route *r, struct gw_server *srv);

/* The eventfd the helper thread writes when replies arrive; watch it with
 * gw_server_watch(srv, fd, gw_route_wake, r). */
int gw_route_wake_fd(const struct gw_route *r);
void gw_route_wake(void *route);

/* gw_server_ops callbacks (ctx = the route). */
void gw_route_request(void *route, struct gw_conn_ref c, const char *xml,
		      size_t len);
void gw_route_abort(void *route, struct gw_conn_ref c);
int gw_route_poll(void *route);

/* Requests being executed right now. */
uint32_t gw_route_active(const struct gw_route *r);

void gw_route_get_stats(const struct gw_route *r, struct gw_route_stats *st);

/* Stops the helper thread, unregisters from the reader tables, detaches. */
void gw_route_close(struct gw_route *r);

#endif
