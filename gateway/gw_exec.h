/*
 * gw_exec: executes parsed ECE 568 requests for one gateway process.
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
 * that is in the epoll set (gw_exec_wake_fd).  Idle: both threads sleep.
 *
 * Concurrency: every function but the helper thread's runs in the loop
 * thread.  The helper thread only reads ring indexes and the doorbell,
 * clears `armed` (private, GW2 labels in gw_exec.c) and writes the
 * eventfd.
 */
#ifndef SHMEX_GW_EXEC_H
#define SHMEX_GW_EXEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gateway/gw_server.h"
#include "gateway/gw_xml.h"
#include "shm/shm_error.h"
#include "shm/shm_settings.h"

struct gw_exec;

struct gw_exec_stats {
	uint64_t requests;     /* documents handled */
	uint64_t items;        /* items answered */
	uint64_t sent;         /* ring messages sent */
	uint64_t replies;      /* ring replies matched to a request */
	uint64_t stale;        /* replies for nobody (closed connection,
				    * a predecessor gateway) dropped */
	uint64_t bad_replies;  /* replies that failed validation */
	uint64_t busy;         /* items answered "Exchange busy" */
	uint64_t queries;      /* status reads from the books */
	uint64_t retries;      /* busy status reads parked for a retry */
	uint64_t wakes;        /* eventfd wake-ups from the helper */
	uint64_t restarts;     /* restart notices from a shard's new matcher */
	uint64_t not_executed; /* items answered "not executed" after one */
	uint64_t stale_books;  /* status reads that found a dead matcher's book mapped */
	uint64_t unknown;      /* items answered "outcome unknown" */
	uint64_t late;         /* replies that came after "outcome unknown" */
	uint64_t slices;       /* jobs that gave the loop back mid-request */
	uint64_t held;         /* jobs parked until their client reads */
	uint64_t drained;      /* requests answered at once by the drain */
	uint64_t ring_errors;  /* rings found damaged (reported for repair) */
	uint64_t repairs;      /* repair notices: a path back in use */
};

/* Attaches to the instance as gateway `gateway`: control and rings
 * regions, reply and request rings, accounts (read-only), each shard's book
 * (read-only) and reader table (one registration per shard), and starts the
 * helper thread.  Its limits (connections, busy time, spin, XML elements)
 * are the instance's settings.  err (may be NULL) gets a one-line reason
 * on failure. */
int gw_exec_open(struct gw_exec **out, const char *instance, uint32_t gateway,
		 struct shmex_error *err) __attribute__((warn_unused_result));

/* The instance's settings (validated copy), for the caller's loop. */
const struct shm_settings *gw_exec_settings(const struct gw_exec *r);

/* Tells the route which server to answer through (before serving). */
void gw_exec_bind(struct gw_exec *r, struct gw_server *srv);

/* The eventfd the helper thread writes when replies arrive; watch it with
 * gw_server_watch(srv, fd, gw_exec_wake, r). */
int gw_exec_wake_fd(const struct gw_exec *r);
void gw_exec_wake(void *route);

/* gw_server_ops callbacks (ctx = the route). */
void gw_exec_request(void *route, struct gw_conn_ref c, const char *xml, size_t len);
void gw_exec_abort(void *route, struct gw_conn_ref c);
int gw_exec_poll(void *route);
void gw_exec_drain(void *route);

/* Requests being executed right now. */
uint32_t gw_exec_active(const struct gw_exec *r);

void gw_exec_get_stats(const struct gw_exec *r, struct gw_exec_stats *st);

/* Stops the helper thread, unregisters from the reader tables, detaches. */
void gw_exec_close(struct gw_exec *r);

#endif
