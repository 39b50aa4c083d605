/*
 * shm_book: THE shared layout of one shard's book region (kind
 * SHM_KIND_BOOK, object /shmex.<instance>.book.<shard>).
 *
 * The region body holds, at offsets recorded in the body header:
 *
 *   body + 0            struct shm_book_hdr_sh      (256 bytes)
 *   body + off_symbols  struct shm_book_sym_sh   [cap_symbols] (128 B each)
 *   body + off_levels   struct shm_book_level_sh [cap_levels]  (64 B each)
 *   body + off_orders   struct shm_book_order_sh [cap_orders]  (128 B each)
 *   body + off_fills    struct shm_book_fill_sh  [cap_fills]   (64 B each)
 *   body + off_quotes   struct shm_book_quote_sh [cap_symbols] (640 B each)
 *
 * Every pool is addressed by uint32 index; SHM_BOOK_NIL ends every list.
 * There are no pointers in the region.  A reader must bounds-check every
 * index it loads (shm_book_*_at() below return NULL for a bad one) and
 * bound every walk (a list is never longer than its pool's capacity).
 *
 * Writer: the shard's matcher, and only it (engine/eng_core.c).  Readers:
 * gateways, query tools, stress checkers, in other processes, mapping the
 * region PROT_READ.  Readers never block the writer; the writer never waits
 * for readers.  Two mechanisms make concurrent reads safe:
 *
 * 1. RCU publication of links [BK1]/[BK2].  The writer fully initialises a
 *    node (level, order, fill) with relaxed atomic stores, then links it
 *    with a release store of its index into the predecessor's link (or the
 *    list head) [BK1].  A reader loads every link with an acquire load [BK2]
 *    before reading the node it names.  An unlinked node keeps its own
 *    `next` intact, so a reader standing on it can still walk on; it is
 *    RETIRED (tagged with the writer's current reader epoch) and reused only
 *    once the reader table (shm_rcu) says every reader that could have
 *    seen it has left its read-side section.
 *
 * 2. A per-symbol seqcount `seq` [BK3]/[BK4].  The writer makes it odd
 *    before it changes anything belonging to the symbol (its levels, the
 *    orders resting or done in it, their fills) and even again after the
 *    whole request is applied; inside the window every field readers read
 *    is written with a relaxed atomic store, ordered after the odd store by
 *    a release fence [BK3].  The closing even store is a release [BK4].
 *    A reader that wants a consistent snapshot (top of book, depth, an
 *    order's status):
 *
 *        s1 = load_acquire(&sym->seq)            [BK5, pairs with BK4]
 *        if (s1 & 1) retry;
 *        ... relaxed/acquire loads of the fields, bounds-checked ...
 *        fence_acquire();                          [BK6, pairs with BK3]
 *        if (load_relaxed(&sym->seq) != s1) retry;
 *
 *    and gives up after a bounded number of retries (SHMEX_EBUSY).  Order
 *    records are covered by the seqcount of the symbol in their `sym`
 *    field: a reader reads `sym` first, bounds-checks it, and after the
 *    snapshot checks that `id` and `sym` are still the ones it wanted.
 *    When the writer recycles a done order's slot it does so inside the
 *    window of the slot's OLD symbol as well, so a reader of the old order
 *    sees the change.
 *
 * 3. A per-symbol quote [BK13]-[BK16]: a copy of the symbol's top
 *    SHM_BOOK_QUOTE_LEVELS levels per side and its totals, with a
 *    seqcount of its own, which the matcher writes only when it
 *    publishes (after a round of requests, or after each request when it
 *    does not batch; eng_core_publish), and only the words that changed.
 *    Readers of top of book and of shallow depth read the quote and
 *    nothing else, so while the matcher applies a round they touch no
 *    line it writes (docs/concurrency.md, "Readers' cost to the writer").
 *
 * Fields that are not links and not covered by a seqcount (the header's
 * statistics) are written relaxed and read relaxed; they are monotonic or
 * informative only, and a reader must never index with them.
 *
 * Lifetimes:
 *  - symbols: appended, never removed.  An entry is fully written before
 *    hdr.nsymbols is raised with a release store [BK7]; readers load
 *    nsymbols with acquire [BK8] and read only entries below it.  name is
 *    immutable after that.
 *  - levels: LIVE while linked in their symbol side's list, with an
 *    immutable price; RETIRED after unlinking (retire_epoch set); FREE after
 *    reclamation.
 *  - orders: LIVE from acceptance until filled or cancelled; DONE after that
 *    and still queryable by id; the slot is recycled (gen + 1, new id) only
 *    when a new order needs one and no never-used slot is left, oldest DONE
 *    first, and only once its retire epoch has passed the safe epoch.
 *  - fills: owned by one order, appended at the tail of its list [BK1],
 *    freed when the order's slot is recycled.
 *
 * Order id -> slot: shm_order_slot(id, hdr.nshards, hdr.cap_orders)
 * (shm_msg.h); the record is the order exactly when its `id` equals the id
 * asked for (compare inside the seqcount snapshot).
 *
 * Units: prices and quantities are int64 "units"; the matcher uses the
 * shm_dec scales (PRICE, QTY), the conformance replay uses integer ticks.
 */
#ifndef SHMEX_SHM_BOOK_H
#define SHMEX_SHM_BOOK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "shm/shm_atomic.h"
#include "shm/shm_region.h"

#define SHM_BOOK_MAGIC UINT64_C(0x4b4f4f42584d4853) /* "SHMXBOOK" */
#define SHM_BOOK_NIL UINT32_MAX
/* Largest capacity of any pool (indexes stay below SHM_BOOK_NIL). */
#define SHM_BOOK_CAP_MAX (UINT32_C(1) << 30)

/* Region header capacity[] slots of a book region (shm_region.h). */
enum shm_book_cap_slot {
	SHM_BOOK_CAP_SYMBOLS = 0,
	SHM_BOOK_CAP_LEVELS = 1,
	SHM_BOOK_CAP_ORDERS = 2,
	SHM_BOOK_CAP_FILLS = 3,
	SHM_BOOK_CAP_SHARD = 4,
	SHM_BOOK_CAP_NSHARDS = 5,
};

enum shm_book_level_state {
	SHM_BOOK_LEVEL_FREE = 0,
	SHM_BOOK_LEVEL_LIVE = 1,    /* linked in its side's list */
	SHM_BOOK_LEVEL_RETIRED = 2, /* unlinked, waiting for a grace period */
};

enum shm_book_order_state {
	SHM_BOOK_ORDER_FREE = 0, /* never used, or recycled and unused */
	SHM_BOOK_ORDER_LIVE = 1, /* open quantity > 0 (resting or matching) */
	SHM_BOOK_ORDER_DONE = 2, /* filled or cancelled; still queryable */
};

/* Why a DONE order ended (shm_book_order_sh.done_reason). */
enum shm_book_done_reason {
	SHM_BOOK_DONE_NONE = 0,   /* not done */
	SHM_BOOK_DONE_FILLED = 1, /* fully executed */
	SHM_BOOK_DONE_CANCEL = 2, /* cancelled by request */
	SHM_BOOK_DONE_IOC = 3,    /* IOC remainder cancelled */
	SHM_BOOK_DONE_FOK = 4,    /* FOK killed (no trade) */
	SHM_BOOK_DONE_STP = 5,    /* cancelled by self-trade prevention */
	SHM_BOOK_DONE_MODIFY = 6, /* modified to a zero open quantity */
};

/* Self-trade prevention mode (shm_book_hdr_sh.stp_mode). */
enum shm_book_stp {
	SHM_BOOK_STP_NONE = 0,          /* self-trades allowed (default) */
	SHM_BOOK_STP_CANCEL_NEWEST = 1, /* cancel the incoming remainder */
	SHM_BOOK_STP_CANCEL_OLDEST = 2, /* cancel the resting order, go on */
	SHM_BOOK_STP_CANCEL_BOTH = 3,   /* cancel both */
};

/*
 * Body header, at body offset 0.  Lines 0-1 (the geometry) are immutable
 * after the region is published (shm_region_publish, [R0]/[A0] in
 * shm_region.h): readers read it after attach and must validate it
 * (shm_book_view_init) before using any offset or capacity.  Lines 2-3 hold
 * nsymbols [BK7]/[BK8] and the statistics (relaxed, see top).
 */
/* Causes a matcher counts its rejects by (shm_book_hdr_sh.rejects_by). */
enum shm_book_reject_cause {
	SHM_REJECT_FUNDS = 0, /* SHMEX_ENOFUNDS */
	SHM_REJECT_SHARES,    /* SHMEX_ENOSHARES */
	SHM_REJECT_UNKNOWN,   /* SHMEX_ENOSYMBOL, ENOACCOUNT, ENOORDER, EACCOUNTEXISTS */
	SHM_REJECT_REFUSED,   /* SHMEX_ENOTOWNER, ENOTOPEN, EWOULDCROSS (post-only) */
	SHM_REJECT_OTHER,     /* anything else, e.g. SHMEX_EJOURNAL (book full is
			       * also counted in rejects_full) */
	SHM_BOOK_REJECT_CAUSES
};
extern const char *const shm_book_reject_names[SHM_BOOK_REJECT_CAUSES];
int shm_book_reject_cause(int err);

struct shm_book_hdr_sh {
	/* --- lines 0-1: geometry; W: creator before R0; R: anyone after A0 --- */
	uint64_t magic;       /* SHM_BOOK_MAGIC */
	uint32_t shard;       /* this shard, < nshards */
	uint32_t nshards;     /* shards of the exchange (order id scheme) */
	uint32_t cap_symbols; /* entries in the symbol table */
	uint32_t cap_levels;  /* price-level records */
	uint32_t cap_orders;  /* order records (id scheme's cap) */
	uint32_t cap_fills;   /* fill records */
	uint64_t off_symbols; /* byte offsets from the body start */
	uint64_t off_levels;
	uint64_t off_orders;
	uint64_t off_fills;
	uint64_t body_size; /* bytes of the body this layout needs */
	uint32_t stp_mode;  /* enum shm_book_stp */
	uint32_t pad0;
	uint64_t off_quotes;
	uint64_t reserved0[5]; /* zero */

	/* --- lines 2-3: W: matcher, relaxed; R: anyone, relaxed (statistics
	 * only, never used as an index) except nsymbols --- */
	/* W: matcher, release after the entry is written [BK7];
	 * R: readers, acquire [BK8]; only grows, <= cap_symbols. */
	uint32_t nsymbols;
	uint32_t levels_live; /* levels linked in some side list */
	uint32_t orders_live; /* orders with open quantity */
	uint32_t orders_used; /* never-used watermark: slots ever taken */
	uint32_t fills_used;  /* fill records owned by some order */
	uint32_t pad1;
	uint64_t events;         /* events emitted (per-shard event sequence) */
	uint64_t last_seq;       /* seq of the last request applied */
	uint64_t last_time_ns;   /* time of the last request applied */
	uint64_t orders_created; /* orders ever accepted */
	uint64_t rejects_full;   /* requests rejected with SHMEX_EBOOKFULL */
	uint64_t safe_epoch;     /* last safe epoch given to reclaim */
	/* Every event numbered up to this one is in the journal on disk
	 * (all events when the exchange runs without a journal).
	 * W: matcher, release [BK9] after its journal said so; R: gateways
	 * before they tell a client an order's status, acquire [BK10]. */
	uint64_t durable_event;
	/* The audit watermark: every record of this shard whose time_ns is
	 * below it is durable, and no later record will have a time below
	 * it (an idle matcher moves it to the clock; docs/durability.md,
	 * "Audit log").  Non-decreasing within one matcher's life.
	 * W: matcher, release [BK11] after its journal said so; R: the audit
	 * process before it merges records below it, acquire [BK12]. */
	uint64_t durable_time_ns;

	/* Rejected requests by cause (shm_book_reject_cause), for tools.
	 * W: matcher, relaxed; R: anyone, relaxed (statistics). */
	uint64_t rejects_by[SHM_BOOK_REJECT_CAUSES];
};
_Static_assert(sizeof(struct shm_book_hdr_sh) == 256, "book header is 256 bytes");
_Static_assert(offsetof(struct shm_book_hdr_sh, nsymbols) == 128,
	       "statistics start on line 2");
_Static_assert(offsetof(struct shm_book_hdr_sh, durable_time_ns) == 208,
	       "audit watermark (docs/shm-layout-book.md)");

/*
 * One symbol: its name, seqcount, and the heads of its two level lists.
 * side 0 = bids (best = highest price first), side 1 = asks (best = lowest
 * price first); see enum shm_side in shm_msg.h.
 */
struct shm_book_sym_sh {
	/* W: matcher: odd + release fence [BK3] before a change, release even
	 * after [BK4]; R: readers, acquire [BK5] + fence [BK6]. */
	uint64_t seq;
	/* NUL-padded like shm_symbol_pack; W: matcher before BK7; immutable. */
	char name[16];
	/* Best level of each side, SHM_BOOK_NIL when empty.
	 * W: matcher, release [BK1]; R: readers, acquire [BK2]. */
	uint32_t head[2];
	/* Everything below: W: matcher, relaxed inside the seq window;
	 * R: readers, relaxed inside a seq snapshot. */
	uint32_t nlevels[2];   /* live levels per side */
	uint32_t norders[2];   /* live (resting) orders per side */
	int64_t open_qty[2];   /* sum of resting open qty per side (saturates) */
	int64_t last_price;    /* last trade price, 0 before the first */
	int64_t last_qty;      /* last trade quantity */
	uint64_t last_time_ns; /* last trade time */
	uint64_t trades;       /* trades so far */
	int64_t volume;        /* traded quantity so far (saturates) */
	uint32_t index;        /* own index in the table */
	uint32_t pad0;
	uint64_t reserved[2];
};
_Static_assert(sizeof(struct shm_book_sym_sh) == 128, "symbol entry is 128 bytes");
_Static_assert(offsetof(struct shm_book_sym_sh, head) == 24, "symbol layout");

/*
 * One price level: a FIFO queue of resting orders at one price on one side
 * of one symbol, linked in its side's best-to-worst list.
 */
struct shm_book_level_sh {
	/* Immutable while LIVE; W: matcher before the level is linked [BK1]. */
	int64_t price;
	/* Aggregate open quantity and order count of the queue.
	 * W: matcher, relaxed inside the seq window; R: in a seq snapshot. */
	int64_t qty;
	uint32_t count;
	/* Next worse level of the same side, SHM_BOOK_NIL at the end.
	 * W: matcher, release [BK1]; R: readers, acquire [BK2]; kept intact
	 * after unlinking. */
	uint32_t next;
	/* Oldest and newest order of the queue (order indexes).  head:
	 * W: matcher, release [BK1]; R: readers, acquire [BK2].  tail: writer
	 * bookkeeping, readers may read it relaxed but must not walk from it. */
	uint32_t head;
	uint32_t tail;
	uint32_t sym; /* symbol index; immutable while LIVE */
	uint8_t side; /* enum shm_side; immutable while LIVE */
	/* enum shm_book_level_state.  W: matcher, relaxed: LIVE/RETIRED in
	 * the seq window, FREE by reclamation outside any window (only after
	 * the grace period, so no reader stands on it); R: relaxed, a sanity
	 * check inside a seq snapshot. */
	uint8_t state;
	uint16_t pad0;
	/* Reader epoch at which the level was unlinked (RETIRED); relaxed,
	 * informative for readers. */
	uint64_t retire_epoch;
	uint64_t reserved[2];
};
_Static_assert(sizeof(struct shm_book_level_sh) == 64, "level is one cache line");
_Static_assert(offsetof(struct shm_book_level_sh, next) == 20, "level layout");

/*
 * One order record: what a status query needs, and the queue links.
 * Everything is W: matcher, relaxed inside the seq window of the symbol in
 * `sym` (and of the old symbol when the slot is recycled) and inside the
 * record's own window (`seq` below), R: readers in a snapshot of either,
 * except the links marked [BK1]/[BK2].
 * Invariant outside the window: open + executed + cancelled == amount.
 */
struct shm_book_order_sh {
	uint64_t id;             /* shmex order id; 0 while never used */
	uint64_t account;        /* owner */
	int64_t price;           /* limit (a modify may change it) */
	int64_t amount;          /* ordered quantity (a modify may change it) */
	int64_t open;            /* open quantity */
	int64_t executed;        /* executed quantity (sum of fills) */
	int64_t cancelled;       /* cancelled quantity (0 or the open part) */
	uint64_t time_ns;        /* acceptance time (of the last modify) */
	uint64_t cancel_time_ns; /* time of the cancel, 0 if none */
	uint64_t gen;            /* times this slot was reused (id scheme) */
	/* The record's own seqcount [BK17]-[BK20]: W: matcher, odd + release
	 * fence [BK17] before its first change in a request (to any field
	 * below or above, or to its fills), release even [BK18] when the
	 * request ends; R: status readers, acquire [BK19] + fence and
	 * re-check [BK20] (shm_book_seqword_begin/_stable).  A status read
	 * needs no other seqcount, so it touches only the record's lines and
	 * its fills, which the matcher writes only when the order changes.
	 * Also, once, relaxed: order_alloc makes the count of a record never
	 * used before even (bytes a snapshot did not vouch for); no id of
	 * that slot has been issued, so no reader reads it as an order. */
	uint64_t seq;
	uint32_t sym;        /* symbol index */
	uint8_t side;        /* enum shm_side */
	uint8_t tif;         /* enum shm_tif */
	uint8_t state;       /* enum shm_book_order_state */
	uint8_t done_reason; /* enum shm_book_done_reason */
	/* Level the order rests in, SHM_BOOK_NIL when not resting. */
	uint32_t level;
	/* Next (younger) order in the level queue; W: matcher, release [BK1];
	 * R: acquire [BK2]; kept intact after the order leaves the queue. */
	uint32_t next;
	uint32_t prev; /* writer-only: older order in the queue */
	/* Oldest fill; W: matcher, release [BK1]; R: acquire [BK2]. */
	uint32_t fill_head;
	uint32_t fill_tail; /* writer bookkeeping: newest fill */
	uint32_t nfills;    /* fills in the list */
	/* The core's number of the last event that changed this record
	 * (its acceptance, a fill, its cancel, a modify).  A reader that
	 * must tell a client only what is durable compares it with the
	 * header's durable_event (BK9/BK10) and waits while it is above. */
	uint64_t mod_event;
};
_Static_assert(sizeof(struct shm_book_order_sh) == 128, "order is two cache lines");
_Static_assert(offsetof(struct shm_book_order_sh, sym) == 88, "order layout");
_Static_assert(offsetof(struct shm_book_order_sh, fill_head) == 108, "order layout");

/*
 * One execution of one order (each trade writes one on each side).
 * Everything but `next` is W: matcher, relaxed inside the seq window of the
 * owner's symbol, before the fill is linked [BK1]; immutable while the
 * owner holds it; R: readers in a seq snapshot, after the acquire load of
 * the link that named it [BK2], checking order_id.
 */
struct shm_book_fill_sh {
	int64_t qty;           /* shares executed, > 0 */
	int64_t price;         /* execution price (the maker's limit) */
	uint64_t time_ns;      /* time of the trade */
	uint64_t counterparty; /* the other order's id */
	uint64_t event;        /* shard event sequence of the trade */
	uint64_t order_id;     /* owning order's id (validation) */
	/* Next (younger) fill of the same order; W: matcher, release [BK1];
	 * R: acquire [BK2]. */
	uint32_t next;
	uint8_t maker; /* 1 when the owner was the resting order */
	uint8_t pad0[3];
	uint64_t reserved[1];
};
_Static_assert(sizeof(struct shm_book_fill_sh) == 64, "fill is one cache line");
_Static_assert(offsetof(struct shm_book_fill_sh, next) == 48, "fill layout");

/*
 * The published quote of one symbol (quotes[i] belongs to symbols[i]): its
 * best SHM_BOOK_QUOTE_LEVELS levels per side and the totals of its entry,
 * as of the last publication.  Everything is W: matcher, relaxed inside
 * the quote's own seqcount window (odd + release fence [BK13] before the
 * first store, release even after the last [BK14]), a word stored only
 * when its value changes; R: readers, acquire load of seq [BK15] + loads +
 * acquire fence and re-check [BK16] (shm_book_seqword_begin/_stable).
 * A reader checks what it read (ndepth == min(nlevels, QUOTE_LEVELS),
 * levels strictly sorted, positive, not crossed) before using it.
 */
#define SHM_BOOK_QUOTE_LEVELS 10

struct shm_book_quote_level_sh {
	int64_t price;  /* 0 beyond ndepth */
	int64_t qty;    /* open quantity of the level */
	uint32_t count; /* orders in its queue */
	uint32_t pad0;
};

struct shm_book_quote_sh {
	/* --- line 0 --- */
	uint64_t seq;        /* the quote's seqcount (BK13-BK16) */
	uint64_t book_seq;   /* the symbol's seq (even) the copy was taken at */
	uint32_t nlevels[2]; /* live levels per side (all of them) */
	uint32_t norders[2]; /* resting orders per side */
	int64_t open_qty[2]; /* resting open quantity per side */
	int64_t last_price;  /* last trade, 0 before the first */
	int64_t last_qty;
	/* --- line 1 --- */
	uint64_t last_time_ns;
	uint64_t trades;
	int64_t volume;
	uint32_t ndepth[2]; /* levels filled in level[][side] */
	uint64_t reserved[4];
	/* --- lines 2-9: level[k][0] is the k-th best bid, [k][1] ask --- */
	struct shm_book_quote_level_sh level[SHM_BOOK_QUOTE_LEVELS][2];
	uint64_t pad1[4];
};
_Static_assert(sizeof(struct shm_book_quote_sh) == 640, "quote is ten cache lines");
_Static_assert(offsetof(struct shm_book_quote_sh, last_time_ns) == 64, "quote layout");
_Static_assert(offsetof(struct shm_book_quote_sh, level) == 128, "quote layout");

/* The reader half of a seqcount word (the symbol's, a quote's): BK5/BK6
 * for a symbol, BK15/BK16 for a quote. */
static inline bool shm_book_seqword_begin(const uint64_t *w, uint64_t *s1)
{
	/* Acquire; pairs with the writer's closing release store. */
	*s1 = load_acquire(w);
	return (*s1 & 1) == 0;
}

static inline bool shm_book_seqword_stable(const uint64_t *w, uint64_t s1)
{
	/* Acquire fence; pairs with the writer's release fence after the
	 * odd store. */
	fence_acquire();
	return load_relaxed(w) == s1;
}

/*
 * The reader half of the per-symbol seqcount (the writer half, BK3/BK4,
 * is in engine/eng_core.c).  A snapshot is
 *
 *     uint64_t s1;
 *     if (!shm_book_seq_begin(sym, &s1)) retry;      (a window is open)
 *     ... relaxed or acquire loads, bounds-checked ...
 *     if (!shm_book_seq_stable(sym, s1)) retry;      (the symbol changed)
 */
static inline bool shm_book_seq_begin(const struct shm_book_sym_sh *s, uint64_t *s1)
{
	/* BK5: acquire; pairs with the matcher's BK4 (a window closed before
	 * this load is entirely visible to the loads after it). */
	*s1 = load_acquire(&s->seq);
	return (*s1 & 1) == 0;
}

static inline bool shm_book_seq_stable(const struct shm_book_sym_sh *s, uint64_t s1)
{
	/* BK6: acquire fence; pairs with the matcher's BK3 (a window opened
	 * after any of our loads shows as a changed seqcount). */
	fence_acquire();
	return load_relaxed(&s->seq) == s1;
}

/* Capacities of a book (all >= 1 and <= SHM_BOOK_CAP_MAX). */
struct shm_book_caps {
	uint32_t symbols;
	uint32_t levels;
	uint32_t orders;
	uint32_t fills;
};

/*
 * Computes the body layout for the given capacities: fills the geometry
 * (lines 0-1) of *hdr with magic, caps, offsets and body_size; everything
 * else zero.  shard/nshards/stp_mode are copied.  Returns 0, or -EINVAL for
 * a capacity of 0 or above SHM_BOOK_CAP_MAX, shard >= nshards or nshards 0.
 */
int shm_book_layout(struct shm_book_hdr_sh *hdr, const struct shm_book_caps *caps,
		    uint32_t shard, uint32_t nshards, uint32_t stp_mode)
	__attribute__((warn_unused_result));

/* Bytes of body the capacities need (0 when they are invalid). */
size_t shm_book_body_bytes(const struct shm_book_caps *caps);

/*
 * Validates a body header read from another process's memory: magic,
 * nshards/shard, capacities and stp_mode in range, offsets and body_size
 * exactly the canonical layout of those capacities (shm_book_layout), and
 * body_size <= body_len.  Returns 0, SHMEX_EBADLAYOUT or SHMEX_ETOOSHORT.
 * Reads the header with relaxed loads (it is immutable after publish).
 * hdr.nsymbols changes at run time: clamp it to cap_symbols on every use.
 */
int shm_book_validate(const void *body, size_t body_len)
	__attribute__((warn_unused_result));

/*
 * Per-process view of a book body (never in shared memory): the geometry
 * copied out of a VALIDATED header, so that a header changed after
 * validation can never steer an access out of the mapping.  All element
 * accessors go through it.
 */
struct shm_book_view {
	char *body;
	struct shm_book_hdr_sh *hdr;
	struct shm_book_sym_sh *symbols;
	struct shm_book_level_sh *levels;
	struct shm_book_order_sh *orders;
	struct shm_book_fill_sh *fills;
	struct shm_book_quote_sh *quotes; /* [cap_symbols] */
	uint32_t shard, nshards;
	uint32_t cap_symbols, cap_levels, cap_orders, cap_fills;
};

/*
 * Mode of a book region: the exchange's group may map it read-only (query
 * tools, gateways of another user in the group); only the matcher that
 * created it maps it writable.
 */
#define SHM_BOOK_REGION_MODE 0640

/*
 * Creates the region book.<shard> of an instance for the given capacities
 * (shm_region_create: O_EXCL, mode; mode 0 means SHM_BOOK_REGION_MODE),
 * with the capacities, shard and nshards in its header's capacity[]
 * (enum shm_book_cap_slot).  The body is zero and the region is NOT
 * published: the creator lays the book out (eng_core_init) and then calls
 * shm_region_publish [R0].  Errors: -EINVAL for invalid capacities or
 * shard, region errors (r->err names the object).
 */
int shm_book_region_create(struct shm_region *r, const char *instance,
			   const struct shm_book_caps *caps, uint32_t shard,
			   uint32_t nshards, mode_t mode)
	__attribute__((warn_unused_result));

/* Validates (shm_book_validate) and fills *v.  Returns 0 or its error. */
int shm_book_view_init(struct shm_book_view *v, const void *body, size_t body_len)
	__attribute__((warn_unused_result));

/* Bounds-checked element access: NULL when the index is out of range
 * (SHM_BOOK_NIL included).  Cheap enough for hot loops. */
static inline struct shm_book_sym_sh *shm_book_sym_at(const struct shm_book_view *v,
						      uint32_t i)
{
	return i < v->cap_symbols ? v->symbols + i : NULL;
}

static inline struct shm_book_quote_sh *shm_book_quote_at(const struct shm_book_view *v,
							  uint32_t i)
{
	return i < v->cap_symbols ? v->quotes + i : NULL;
}

static inline struct shm_book_level_sh *shm_book_level_at(const struct shm_book_view *v,
							  uint32_t i)
{
	return i < v->cap_levels ? v->levels + i : NULL;
}

static inline struct shm_book_order_sh *shm_book_order_at(const struct shm_book_view *v,
							  uint32_t i)
{
	return i < v->cap_orders ? v->orders + i : NULL;
}

static inline struct shm_book_fill_sh *shm_book_fill_at(const struct shm_book_view *v,
							uint32_t i)
{
	return i < v->cap_fills ? v->fills + i : NULL;
}

/* Whether order `id` of this shard, which is not (or no longer) in its
 * record, was issued and its record recycled since: the slot has moved
 * on to a later generation, or holds the same generation freed after
 * use (a freed record keeps its acceptance time; a never-used one has
 * 0).  Such an order is in the shard's history (shm_history.h).  Relaxed
 * loads: generations only grow.  The caller checked the shard. */
static inline bool shm_book_order_issued(const struct shm_book_view *v, uint64_t id)
{
	uint64_t x = (id - 1) / v->nshards;
	const struct shm_book_order_sh *o =
		shm_book_order_at(v, (uint32_t)(x % v->cap_orders));
	if (id == 0 || !o)
		return false;
	uint64_t gen = x / v->cap_orders, g = load_relaxed(&o->gen);
	if (g != gen)
		return g > gen;
	return load_relaxed(&o->time_ns) != 0;
}

#endif
