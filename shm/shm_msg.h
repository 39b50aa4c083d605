/*
 * shm_msg: the fixed-size message that travels on every ring: what a
 * gateway asks of a matcher, and what every field of the matcher's reply
 * means (the reply contract, below).  Which shard a message goes to is
 * shm_shard.h.
 *
 * One message is one cache line.  Gateways write requests on their
 * (gateway, shard) ring; the shard's matcher answers on the (shard, gateway)
 * ring with the same req_id.  The consumer copies a message out of the ring
 * once and validates every field of the copy (shm_msg_validate_request) before
 * acting on it: a buggy or hostile producer gets a reject, never a crash.
 */
#ifndef SHMEX_SHM_MSG_H
#define SHMEX_SHM_MSG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "shm/shm_atomic.h"
#include "shm/shm_dec.h"
#include "shm/shm_shard.h"

#define SHM_SYMBOL_MAX 15 /* characters; [A-Za-z0-9]+ */

enum shm_msg_type {
	SHM_MSG_NONE = 0,
	/* Requests (gateway -> matcher). */
	SHM_MSG_CREATE_ACCOUNT = 1, /* account, cash = initial balance */
	SHM_MSG_ADD_SHARES = 2,     /* account, symbol, qty (creates symbol) */
	SHM_MSG_ORDER = 3,          /* account, symbol, side, tif, flags, price, qty */
	SHM_MSG_CANCEL = 4,         /* account, order_id */
	SHM_MSG_MODIFY = 5,         /* account, order_id, price, qty (new open) */
	SHM_MSG_REQUEST_LAST_ = SHM_MSG_MODIFY,
	/* Reply (matcher -> gateway): type = SHM_MSG_REPLY, req_type says to
	 * what; status 0 or a shmex error (shm_error.h). */
	SHM_MSG_REPLY = 16,
	/* Matcher -> gateway, once after a matcher restarted: every request
	 * of this gateway's ring before position order_id was taken by the
	 * previous matcher, and those not answered by now were not executed
	 * (the journal did not keep them).  req_id = the new matcher's
	 * incarnation; type and req_type are SHM_MSG_RESTART. */
	SHM_MSG_RESTART = 17,
	/* Matcher -> gateway, once after the rings between them were
	 * repaired (docs/ring.md): the matcher had taken this gateway's
	 * requests up to request-ring position order_id when it stopped
	 * using the damaged generation, and every reply it owed for them is
	 * before this notice.  req_id = the request ring's new generation;
	 * type and req_type are SHM_MSG_REPAIR. */
	SHM_MSG_REPAIR = 18,
};

enum shm_side { SHM_SIDE_BUY = 0, SHM_SIDE_SELL = 1 };
enum shm_tif { SHM_TIF_GTC = 0, SHM_TIF_IOC = 1, SHM_TIF_FOK = 2 };

/* Request flags (ORDER only; every other request has flags 0).
 * POST_ONLY: the order may only add liquidity: the matcher rejects it
 * (SHMEX_EWOULDCROSS, nothing changed) when it would trade at the moment
 * it is applied (engine/eng_core.h, ENG_REQ_POST_ONLY). */
#define SHM_MSG_POST_ONLY 1u
#define SHM_MSG_FLAGS_ALL SHM_MSG_POST_ONLY

struct shm_msg {
	uint8_t type;     /* enum shm_msg_type */
	uint8_t side;     /* enum shm_side (ORDER) */
	uint8_t tif;      /* enum shm_tif (ORDER) */
	uint8_t req_type; /* REPLY: the request's type */
	union {
		int32_t status; /* REPLY: 0 or a shmex error */
		uint32_t flags; /* requests: SHM_MSG_POST_ONLY (ORDER), else 0 */
	};
	uint64_t req_id;   /* chosen by the gateway, echoed in the reply */
	uint64_t account;  /* account id */
	uint64_t order_id; /* CANCEL/MODIFY; REPLY to ORDER: the new id */
	int64_t price;     /* limit (PRICE scale); CREATE_ACCOUNT: balance, low */
	int64_t qty;       /* amount > 0 (QTY scale); REPLY: shares affected;
			    * CREATE_ACCOUNT: balance, high 64 bits */
	union {
		char symbol[16]; /* requests: NUL-padded, SHM_SYMBOL_MAX */
		struct {
			uint64_t time_ns; /* REPLY: event time */
			uint64_t seq;     /* REPLY: shard event sequence */
		} r;
	} u;
};
_Static_assert(sizeof(struct shm_msg) == SHM_CACHE_LINE, "one message = one cache line");
_Static_assert(offsetof(struct shm_msg, u) == 48, "message layout");
_Static_assert(offsetof(struct shm_msg, flags) == 4, "message layout");

/* CREATE_ACCOUNT: the balance, a shm_cash_t (CASH scale), travels as
 * its low 64 bits in `price` and its high 64 bits in `qty`. */
static inline shm_cash_t shm_msg_balance(const struct shm_msg *m)
{
	return (shm_cash_t)(((unsigned __int128)(uint64_t)m->qty << 64) |
			    (uint64_t)m->price);
}
static inline void shm_msg_set_balance(struct shm_msg *m, shm_cash_t v)
{
	m->price = (int64_t)(uint64_t)v;
	m->qty = (int64_t)(uint64_t)((unsigned __int128)v >> 64);
}

/* Symbol validity: 1..SHM_SYMBOL_MAX of [A-Za-z0-9]. */
bool shm_symbol_valid(const char *sym, size_t len);
/* Copies a valid symbol NUL-padded into dst[16]; false when invalid. */
bool shm_symbol_pack(char dst[16], const char *sym, size_t len);
/* Length of a packed symbol, or 0 when the 16 bytes are not a valid
 * NUL-padded symbol (validation of ring/shm contents). */
size_t shm_symbol_unpack_len(const char src[16]);

/* Validates a request copied out of a ring: type, side, tif, flags, ranges,
 * symbol; `shard`/`nshards` check that the symbol (or order id, or account
 * for CREATE_ACCOUNT) belongs to this shard.  Returns 0 or the shmex error to
 * put in the reject reply. */
int shm_msg_validate_request(const struct shm_msg *m, uint32_t shard, uint32_t nshards)
	__attribute__((warn_unused_result));

/*
 * The reply contract: every request gets exactly one reply on the (shard,
 * gateway) ring of its gateway, after every effect of the request is
 * published (the reply's release store [RNG1] follows every write of the
 * request), so a gateway that reads the book after the reply sees them.
 *
 *   type       SHM_MSG_REPLY
 *   req_type   the request's type byte (also when invalid: such a reply
 *              then fails shm_msg_validate_reply on purpose)
 *   req_id, account   copied from the request
 *   status     0, or the shmex error (shm_error.h) that rejected it; a
 *              rejected request changed no balance, reservation, position
 *              or live order (docs/matcher.md lists what it may touch)
 *   order_id   ORDER: the new order's id; CANCEL, MODIFY: the target
 *   qty        ORDER: shares it executed in this request; CANCEL: shares
 *              cancelled; MODIFY: open quantity after its trades;
 *              ADD_SHARES: echoed
 *   price      ORDER: its limit; CANCEL: the order's limit; MODIFY: the
 *              order's limit now (the old one for a modify to 0, which
 *              cancels); CREATE_ACCOUNT: the balance, echoed
 *   side, tif  the order's
 *   u.r.time_ns  the request's time (CLOCK_REALTIME ns; also the time of
 *              its fills and of its cancel)
 *   u.r.seq    the shard's event sequence after the request: every fill
 *              this request created has an `event` number in (the
 *              sequence before the request, u.r.seq]
 *
 * A FOK order that cannot fill completely is accepted and killed: status
 * 0, qty 0, and its record says SHM_BOOK_DONE_FOK.
 */

/* Validates a reply copied out of a reply ring (type, req_type, status). */
int shm_msg_validate_reply(const struct shm_msg *m) __attribute__((warn_unused_result));

#endif
