/*
 * shm_error: the one error table of shmex.
 *
 * Every function that can fail returns 0 or a negative error.  Values in
 * [-4095, -1] are negated errno values (system calls); values at or below
 * SHMEX_ERR_BASE are shmex's own, generated from SHMEX_ERRNO_MAP so that the
 * enum, the names and the messages can never drift apart (libuv UV_ERRNO_MAP).
 * Reject reasons the matcher sends to gateways over the reply rings are
 * errors from this table, so both sides agree on their meaning.
 *
 * "Ring full" and "ring empty" are results, not errors (see shm_ring.h).
 *
 * The messages are for operators and logs.  What a client is told is the
 * gateway's choice (gateway/gw_reply.c maps each code to its wire text).
 *
 * Error context: a function that can say more than its code (which object,
 * which value, which system call) fills a struct shmex_error, the one
 * context type of the project (Aeron's AERON_SET_ERR / AERON_APPEND_ERR):
 * the function that fails first sets the message, every caller on the way
 * up may put its own context in front ("shard 0: creating
 * /shmex.x.book.0: shm_open /shmex.x.book.0: File exists"), and the program
 * prints shmex_error_msg() as one line.
 */
#ifndef SHMEX_SHM_ERROR_H
#define SHMEX_SHM_ERROR_H

#include <stdbool.h>

#define SHMEX_ERR_BASE (-10000)

/* X(NAME, message): the message is for operators and logs; clients read
 * the gateway's wire text for the code (gateway/gw_reply.c). */
#define SHMEX_ERRNO_MAP(X)                                                          \
	X(EBADMAGIC, "wrong magic number: not a shmex region")                      \
	X(EBADVERSION, "layout version mismatch")                                   \
	X(EBADLAYOUT, "layout signature mismatch (built with other struct sizes)")  \
	X(ETOOSHORT, "region is shorter than its header requires")                  \
	X(ENOTREADY, "region is not ready (creator still initialising, or died)")   \
	X(EBADKIND, "region is of another kind")                                    \
	X(EBADNAME, "invalid instance or region name")                              \
	X(EINUSE, "in use by a running exchange")                                   \
	X(ERINGCORRUPT, "ring indexes are corrupted")                               \
	X(EBADMSG, "malformed message")                                             \
	X(EBADINDEX, "index out of range in shared memory")                         \
	X(EBUSY, "Exchange busy, try again")                                        \
	X(ETIMEDOUT, "timed out")                                                   \
	X(ENOREADERSLOT, "reader table full")                                       \
	X(ESLOTLOST, "reader slot was reclaimed; re-register and retry")            \
	X(ENOACCOUNT, "Account does not exist")                                     \
	X(EACCOUNTEXISTS, "Account already exists")                                 \
	X(EACCOUNTSFULL, "Account table full")                                      \
	X(EBADACCOUNT, "Invalid account id")                                        \
	X(ENOSYMBOL, "Symbol does not exist")                                       \
	X(EBADSYMBOL, "Invalid symbol")                                             \
	X(ESYMBOLSFULL, "Symbol table full")                                        \
	X(EWRONGSHARD, "Symbol does not belong to this shard")                      \
	X(EBADAMOUNT, "Invalid amount")                                             \
	X(EBADPRICE, "Invalid limit price")                                         \
	X(EBADBALANCE, "Invalid balance")                                           \
	X(EOVERFLOW, "Numeric overflow")                                            \
	X(ENOFUNDS, "Insufficient funds")                                           \
	X(ENOSHARES, "Insufficient shares")                                         \
	X(EBOOKFULL, "Book full")                                                   \
	X(ENOORDER, "Order does not exist")                                         \
	X(ENOTOWNER, "Order belongs to another account")                            \
	X(ENOTOPEN, "Order has nothing open")                                       \
	X(EBADTIF, "Invalid time in force")                                         \
	X(EBADREQUEST, "Malformed request")                                         \
	X(ETOOBIG, "Request too large")                                             \
	X(EUNKNOWNELEM, "Unknown element")                                          \
	X(EINTERNAL, "Internal error")                                              \
	X(EBADLENGTH, "Invalid request length line")                                \
	X(ELENGTHDIGITS, "Request length has too many digits")                      \
	X(EBADXML, "Malformed XML")                                                 \
	X(ENODTD, "DTDs and entity declarations are not allowed")                   \
	X(ETOODEEP, "Request nested too deeply")                                    \
	X(ETOOMANY, "Too many elements in request")                                 \
	X(ETOOLONG, "Attribute or text too long")                                   \
	X(EBADORDERID, "Invalid order id")                                          \
	X(EPOSITIONSFULL, "Position table full")                                    \
	X(EJTORN, "journal ends in a torn record (a write cut short)")              \
	X(EJCORRUPT, "journal or snapshot is corrupted")                            \
	X(EJOURNAL, "the journal cannot be written; no order is accepted")          \
	X(ENOTEXEC, "not executed: the shard's matcher restarted before it")        \
	X(EREPLYBIG, "an order's fill listing passes the reply limit")              \
	X(EUNKNOWN, "outcome unknown: the matcher did not answer in time")          \
	X(ESTOPPING, "not executed: the gateway is stopping")                       \
	X(ESKIPPED, "not executed: an earlier item of the request has no answer")   \
	X(EUNKNOWNATTR, "unknown attribute in a request")                           \
	X(EBADTYPE, "invalid order type")                                           \
	X(EFOREIGN, "the object belongs to another user, or we may not read it")    \
	X(ESHORTBODY, "the client ended a request before its announced length")     \
	X(ECONNSFULL, "connection refused: the gateway is full")                    \
	X(EPEERFULL, "connection refused: too many from that address")              \
	X(ERECOVERY, "recovery failed")                                             \
	X(ENOTEXECRING, "not executed: lost in a damaged ring, which was repaired") \
	X(EWOULDCROSS, "Post-only order would cross the book")                      \
	X(ECASHRANGE, "Cash amount out of range")                                   \
	X(ENOATOMIC16, "this CPU lacks the 16-byte atomics 128-bit cash needs")     \
	X(ESHARESRANGE, "Shares out of range: a symbol's total passes its limit")

enum shmex_err_index {
#define SHMEX_ERR_INDEX_(name, msg) SHMEX_ERRIDX_##name,
	SHMEX_ERRNO_MAP(SHMEX_ERR_INDEX_)
#undef SHMEX_ERR_INDEX_
		SHMEX_ERRIDX_COUNT_
};

enum shmex_err {
#define SHMEX_ERR_ENUM_(name, msg) SHMEX_##name = SHMEX_ERR_BASE - SHMEX_ERRIDX_##name,
	SHMEX_ERRNO_MAP(SHMEX_ERR_ENUM_)
#undef SHMEX_ERR_ENUM_
		SHMEX_ERR_LAST_ = SHMEX_ERR_BASE - SHMEX_ERRIDX_COUNT_ + 1
};

/* Message for any error this project returns (shmex's own or -errno). */
const char *shmex_strerror(int err);
/* Symbolic name ("SHMEX_ENOFUNDS", "ENOENT"), for logs and tests. */
const char *shmex_errname(int err);
/* True when err is one of shmex's own codes (validates reply-ring fields). */
bool shmex_err_is_valid(int err);

/* Number of shmex's own codes; shmex_err_at(i) is the i-th (i < count). */
#define SHMEX_ERR_COUNT ((int)SHMEX_ERRIDX_COUNT_)
static inline int shmex_err_at(int i)
{
	return SHMEX_ERR_BASE - i;
}

#define SHMEX_ERROR_MAX 384

/* What failed and why, for one line of output.  Zero-initialise it, or
 * shmex_error_clear() it. */
struct shmex_error {
	int code;                  /* the last code set, 0: none */
	char msg[SHMEX_ERROR_MAX]; /* "" when only the code is known */
};

/* Sets the message (printf format) and the code; returns code, so that
 * `return shmex_error_set(e, rc, "...", ...);` reads naturally.  e may be
 * NULL (then only code is returned). */
int shmex_error_set(struct shmex_error *e, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Puts context in front of what is there: "<context>: <message>", where
 * <message> is the message set so far or, when none was set, the text of
 * code.  Returns code; e may be NULL. */
int shmex_error_wrap(struct shmex_error *e, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* The line to print for a failure with code: the message, or the code's
 * text when no message was set.  Never NULL. */
const char *shmex_error_msg(const struct shmex_error *e, int code);

void shmex_error_clear(struct shmex_error *e);

#endif
