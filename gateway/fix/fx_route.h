/*
 * fx_route: the FIX gateway's way into the exchange, as a small C
 * interface that the C++ session layer (fx_app.cpp) can call without
 * seeing any shared-memory header.
 *
 * The FIX process is one more gateway of the instance (gateway index G,
 * after the XML gateways 0..G-1): it owns the (G, shard) request rings and
 * the (shard, G) reply rings, exactly like shmex-gateway, and reads order
 * status, fills and book depth from the shards' book regions read-only
 * (shm_snap.h), which costs the matchers nothing.
 *
 *   fx_route_send      queues one request (order, cancel, modify); its
 *                      req_id is chosen by the caller and comes back in
 *                      the reply
 *   fx_route_flush     publishes queued requests on the rings (batched)
 *   fx_route_replies   drains every reply ring and hands each validated
 *                      reply to a callback
 *   fx_route_order     one consistent snapshot of an order and its fills
 *                      (only once durable: SHMEX_EBUSY before)
 *   fx_route_levels    the best levels of one side of a symbol
 *   fx_route_events    a per-shard change counter (the durable event),
 *                      so the caller re-reads its resting orders only
 *                      when their shard moved
 *
 * The matcher answers only the request's own gateway; a resting order
 * filled by someone else's order is learned by re-reading it (see
 * docs/fix.md, "Both sides hear every fill").
 *
 * Concurrency: one thread (the FIX process's loop) calls everything; a
 * helper thread inside only watches the reply rings' shared indexes and
 * the doorbell (see fx_route_arm).  Nothing here blocks.
 */
#ifndef SHMEX_FX_ROUTE_H
#define SHMEX_FX_ROUTE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

struct fx_route;

/* Request kinds: the values of enum shm_msg_type. */
enum fx_req_kind { FX_REQ_ORDER = 3, FX_REQ_CANCEL = 4, FX_REQ_MODIFY = 5 };
/* Reply kind of a matcher restart notice (order_id = ring position before
 * which every unanswered request of ours was not executed). */
#define FX_REPLY_RESTART 17

enum fx_side { FX_BUY = 0, FX_SELL = 1 };
enum fx_tif { FX_GTC = 0, FX_IOC = 1, FX_FOK = 2 };

struct fx_req {
	uint64_t req_id; /* caller's, echoed; unique for the process life */
	uint8_t kind;    /* enum fx_req_kind */
	uint8_t side;    /* enum fx_side (ORDER) */
	uint8_t tif;     /* enum fx_tif (ORDER) */
	bool post_only;  /* ORDER: rejected by the matcher if it would cross */
	uint64_t account;
	uint64_t order_id; /* CANCEL, MODIFY */
	int64_t price;     /* PRICE scale (shm_dec.h) */
	int64_t qty;       /* QTY scale; MODIFY: the new open quantity */
	char symbol[16];   /* ORDER: NUL-terminated */
};

struct fx_reply {
	uint8_t kind; /* the request's kind, or FX_REPLY_RESTART */
	uint32_t shard;
	int32_t status; /* 0 or a shmex error (shm_error.h) */
	uint64_t req_id;
	uint64_t order_id; /* ORDER: the new id; RESTART: ring position */
	int64_t price, qty;
	uint64_t time_ns;
};

/* A consistent snapshot of an order (shm_snap_order). */
struct fx_order {
	uint64_t id, account;
	uint8_t side, tif, live, done_reason; /* enum shm_book_done_reason */
	int64_t price, amount, open, executed, cancelled;
	uint32_t nfills;
};

struct fx_fill {
	int64_t qty, price; /* price: the resting order's */
	uint64_t time_ns, counterparty, event;
	bool maker;
};

struct fx_level {
	int64_t price, qty;
};

/* Attaches as gateway `gateway` of `instance` (rings, books, accounts).
 * err gets a one-line reason on failure.  Returns 0 or a shmex error. */
int fx_route_open(struct fx_route **out, const char *instance, uint32_t gateway,
		  char *err, size_t errlen);
void fx_route_close(struct fx_route *r);

uint32_t fx_route_nshards(const struct fx_route *r);
/* The instance's data directory, "" without a journal. */
const char *fx_route_data_dir(const struct fx_route *r);
/* Settings the FIX layer applies too (validated by the supervisor). */
uint64_t fx_route_max_request(const struct fx_route *r);
uint64_t fx_route_deadline_ms(const struct fx_route *r);
uint64_t fx_route_max_conns(const struct fx_route *r);
bool fx_route_quiet(const struct fx_route *r);
/* True once the supervisor began a clean stop. */
bool fx_route_stopping(const struct fx_route *r);

/* Shard of an order id / of a symbol (the request's destination). */
uint32_t fx_route_shard_of_order(const struct fx_route *r, uint64_t order_id);
uint32_t fx_route_shard_of_symbol(const struct fx_route *r, const char *sym);

/* Validates q (symbol syntax, side, tif, ranges) and queues it for its
 * shard; *shard gets the shard and *pos the position the request will
 * have in that shard's request ring (requests leave in FIFO order, and
 * this process is the ring's only producer, so it is exact).  Returns 0
 * or the shmex error a matcher would answer (nothing is queued then). */
int fx_route_send(struct fx_route *r, const struct fx_req *q, uint32_t *shard,
		  uint64_t *pos);
/* Publishes queued requests; sent(ctx, req_id, ring position) for each.
 * Returns the number still queued (rings full). */
size_t fx_route_flush(struct fx_route *r, void (*sent)(void *, uint64_t, uint64_t),
		      void *ctx);
/* Hands every waiting reply to fn, a batch at a time, and consumes a
 * batch from its ring only after fn saw all of it and commit(ctx)
 * returned (the caller makes their outcome durable there): a process
 * killed in between leaves the batch to its successor.  Returns how many. */
unsigned fx_route_replies(struct fx_route *r, void (*fn)(void *, const struct fx_reply *),
			  void (*commit)(void *), void *ctx);

/* Requests ever published on shard s's request ring (by this process and
 * its predecessors): a request whose position is below it reached the
 * matcher's ring, one at or above it never did. */
uint64_t fx_route_produced(const struct fx_route *r, uint32_t s);

/* The identity of the instance's rings ("<creator pid>.<start time>"):
 * ring positions mean something only within one. */
void fx_route_rings_id(const struct fx_route *r, char *out, size_t len);

/* 1 when the account exists, 0 when not. */
int fx_route_account_exists(const struct fx_route *r, uint64_t account);

/* Order `id` and up to max of its fills (*n copied).  0, SHMEX_ENOORDER,
 * SHMEX_EBUSY (snapshot kept changing, or the last change is not durable
 * yet: read again later), other shmex errors. */
int fx_route_order(struct fx_route *r, uint64_t id, struct fx_order *o,
		   struct fx_fill *fills, size_t max, size_t *n);

/* Up to max best levels of `side` of symbol sym (*n returned).  0,
 * SHMEX_ENOSYMBOL, SHMEX_EBUSY. */
int fx_route_levels(struct fx_route *r, const char *sym, int side, struct fx_level *out,
		    size_t max, size_t *n);

/* Shard s's durable event number: grows whenever an event of the shard
 * became durable (a hint for re-reading orders, never an index). */
uint64_t fx_route_events(const struct fx_route *r, uint32_t s);

/* Waking: the loop polls the reply rings while it makes progress; before
 * it blocks with requests outstanding it calls fx_route_arm, and a helper
 * thread then makes fx_route_wake_fd readable when a reply arrives
 * (fx_route_woken consumes that). */
void fx_route_arm(struct fx_route *r);
int fx_route_wake_fd(const struct fx_route *r);
void fx_route_woken(struct fx_route *r);
/* The instance's gateway poll budget (--spin-us), in microseconds. */
uint64_t fx_route_spin_us(const struct fx_route *r);

/* shmex_strerror. */
const char *fx_route_strerror(int rc);

#ifdef __cplusplus
}
#endif

#endif
