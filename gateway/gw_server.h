/*
 * gw_server: the gateway's event loop.  One thread, one epoll set holding a
 * listening socket, every client connection, and a few extra descriptors
 * (the reply-ring eventfd, a signalfd).  Per connection: non-blocking
 * socket, the length-line frame parser (gw_frame), a read buffer, a write
 * buffer with back-pressure, and two deadlines.
 *
 * The server knows framing, not XML: each complete request is handed to the
 * handler (ops.request), which must answer it exactly once through
 * gw_server_reply(), either at once or later (when the matchers' replies
 * arrive).  A connection executes one request at a time; requests that a
 * client pipelines wait, in order, in its read buffer.
 *
 * Limits (struct gw_server_cfg, defaults in parentheses):
 *  - max_conns (1024): a connection beyond it gets an "Exchange busy"
 *    reply if the socket takes it at once, and is closed.
 *  - max_request (1 MiB): a length line above it is refused before any
 *    body byte is stored (gw_frame): error reply, then close.
 *  - deadline_ms (10 s): a request whose first byte arrived must be complete
 *    within it; likewise pending output must make progress within it.  A
 *    slow client gets an error reply where possible and is closed, so it
 *    cannot pin a connection slot or buffers.
 *  - wbuf_high (1 MiB): while more than this many reply bytes are unsent,
 *    the connection is not read and no new request of it is started; a
 *    handler that streams a reply (gw_server_reply_part) asks
 *    gw_server_may_send before producing more.
 *  - max_unsent (64 MiB): the same for the sum over all connections: above
 *    it no connection is read, no request starts and no streaming reply
 *    grows until clients read.
 *  - idle_ms (60 s): a connection with no partial request, no request
 *    executing and nothing unsent for this long is closed (FIN, no reply:
 *    an unsolicited document would be read as the answer to the client's
 *    next request).  UINT32_MAX: never.
 *  - max_per_peer (512): connections from one client address; the one
 *    beyond it gets "Too many connections from your address" and is closed.
 *  - drain_ms (5 s): after gw_server_stop, time granted to requests that
 *    are executing; then the handler's drain answers each of them at once
 *    (ops.drain), the replies get up to a second to flush, and every
 *    connection is closed.  Complete requests a client pipelined behind
 *    its executing one are answered "Not executed: the exchange is
 *    stopping", never silently dropped.
 * Each violation affects only the offending connection.
 *
 * Concurrency: everything runs in the thread that calls gw_server_run; the
 * handler's callbacks and gw_server_reply run in that thread too.
 */
#ifndef SHMEX_GW_SERVER_H
#define SHMEX_GW_SERVER_H

#include "shm/shm_settings.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The exchange's settings (shm_settings.h) state these; a loop created
 * without them (tests) uses the same values. */
#define GW_SERVER_MAX_CONNS_DEFAULT SHM_DEFAULT_MAX_CONNS
#define GW_SERVER_MAX_CONNS_LIMIT SHM_SETTINGS_CONNS_MAX
#define GW_SERVER_DEADLINE_MS_DEFAULT SHM_DEFAULT_DEADLINE_MS
#define GW_SERVER_WBUF_HIGH_DEFAULT ((size_t)1 << 20)
#define GW_SERVER_DRAIN_MS_DEFAULT SHM_DEFAULT_DRAIN_MS
#define GW_SERVER_MAX_UNSENT_DEFAULT ((size_t)SHM_DEFAULT_MAX_UNSENT)
#define GW_SERVER_IDLE_MS_DEFAULT SHM_DEFAULT_CLIENT_IDLE_MS
#define GW_SERVER_IDLE_NEVER UINT32_MAX
#define GW_SERVER_PER_PEER_DEFAULT SHM_DEFAULT_MAX_CONNS_PER_PEER

struct gw_server;

/* Names one connection for the life of that connection: a reply to a
 * reference whose connection has closed (and whose slot may serve another
 * client by now) is dropped. */
struct gw_conn_ref {
	uint32_t slot;
	uint32_t gen;
};

struct gw_server_cfg {
	int listen_fd;         /* bound, listening socket (made non-blocking) */
	uint32_t max_conns;    /* 0: default */
	size_t max_request;    /* 0: default (GW_FRAME_MAX_DEFAULT) */
	uint32_t deadline_ms;  /* 0: default */
	size_t wbuf_high;      /* 0: default */
	uint32_t drain_ms;     /* 0: default */
	size_t max_unsent;     /* 0: default */
	uint32_t idle_ms;      /* 0: default; GW_SERVER_IDLE_NEVER: none */
	uint32_t max_per_peer; /* 0: default */
	bool frame_replies;    /* put a length line in front of every reply */
	bool exclusive;        /* EPOLLEXCLUSIVE on the listening socket (it is
			       * shared with other gateway processes) */
};

struct gw_server_ops {
	void *ctx;
	/* A complete request of connection c (xml valid during the call).
	 * The handler answers with gw_server_reply(c), now or later. */
	void (*request)(void *ctx, struct gw_conn_ref c, const char *xml, size_t len);
	/* Connection c closed while its request was executing; the handler
	 * forgets it (a reply would be dropped anyway). */
	void (*abort)(void *ctx, struct gw_conn_ref c);
	/* Once per loop turn, after I/O: the handler drains its inputs and
	 * sends what it queued.  Returns how long the loop may sleep in ms
	 * (-1: until an event), e.g. 0 while it has unsent messages. */
	int (*poll)(void *ctx);
	/* The drain time after gw_server_stop is over: answer every
	 * executing request now (gw_server_reply), saying truthfully what
	 * became of its items.  May be NULL (those connections are closed). */
	void (*drain)(void *ctx);
};

struct gw_server_stats {
	uint64_t accepted;     /* connections accepted and served */
	uint64_t refused;      /* closed at once: max_conns reached */
	uint64_t closed;       /* connections closed, for any reason */
	uint64_t requests;     /* complete requests handed to the handler */
	uint64_t frame_errors; /* bad/huge length lines */
	uint64_t deadlines;    /* connections closed by a deadline */
	uint64_t aborted;      /* closed while a request was executing */
	uint64_t refused_peer; /* closed at once: max_per_peer reached */
	uint64_t idle_closed;  /* closed after idle_ms without a request */
	uint64_t stop_replies; /* pipelined requests answered "stopping" */
	uint64_t unsent_peak;  /* most reply bytes unsent at once, in total */
	uint64_t unsent;       /* reply bytes unsent now, in total */
	uint32_t open;         /* connections open now */
};

/* Creates the loop over cfg->listen_fd (which stays the caller's to close
 * after gw_server_destroy).  Returns 0 or -errno. */
int gw_server_create(struct gw_server **out, const struct gw_server_cfg *cfg,
		     const struct gw_server_ops *ops) __attribute__((warn_unused_result));

/* Adds a descriptor whose readability calls cb(arg) from the loop
 * (level-triggered: cb must consume what made it readable). */
int gw_server_watch(struct gw_server *s, int fd, void (*cb)(void *arg), void *arg)
	__attribute__((warn_unused_result));

/* Runs until gw_server_stop was called and every connection is closed (or
 * the drain time is over).  Returns 0, or -errno when epoll fails. */
int gw_server_run(struct gw_server *s) __attribute__((warn_unused_result));

/*
 * Starts the drain: stops accepting (the listening socket leaves the epoll
 * set), starts no new request, lets executing requests finish and their
 * replies flush, closes each connection when it is idle.  Callable from a
 * loop callback.
 */
void gw_server_stop(struct gw_server *s);

/*
 * Answers the executing request of c with a complete reply document (the
 * server adds the length line when frame_replies is set).  Returns 0,
 * -ENOENT when c is gone (the reply is dropped), -EINVAL when c has no
 * request executing, -ENOMEM.
 */
int gw_server_reply(struct gw_server *s, struct gw_conn_ref c, const char *data,
		    size_t len);

/*
 * Streams part of the reply of c's executing request (unframed replies
 * only: a length line needs the whole size); the request stays executing
 * and gw_server_reply sends the last part.  Returns as gw_server_reply.
 */
int gw_server_reply_part(struct gw_server *s, struct gw_conn_ref c, const char *data,
			 size_t len);

/* True while c may take more reply bytes: its unsent output is at most
 * wbuf_high and the total at most max_unsent.  A handler that streams
 * stops producing when this is false and asks again on a later poll (the
 * loop turns when the client reads).  False when c is gone. */
bool gw_server_may_send(const struct gw_server *s, struct gw_conn_ref c);

void gw_server_get_stats(const struct gw_server *s, struct gw_server_stats *st);

/* Closes every connection and frees the loop. */
void gw_server_destroy(struct gw_server *s);

#endif
