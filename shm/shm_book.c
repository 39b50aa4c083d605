/*
 * shm_book: geometry and validation of a shard's book region (the layout
 * itself, and its concurrency contract, is in shm_book.h).
 *
 * The body is the 256-byte header followed by five pools, each starting on
 * a cache line: symbols, levels, orders, fills, quotes.  Offsets are recorded in
 * the header so a reader never recomputes them; shm_book_validate checks
 * them against the size of the mapping before anyone indexes with them, so
 * a corrupted or hostile header gives an error, never an out-of-bounds
 * read.  Limits: each capacity <= SHM_BOOK_CAP_MAX (2^30), so byte sizes fit
 * comfortably in 64 bits.
 */
#include "shm/shm_book.h"

#include <errno.h>
#include <string.h>

#include "shm/shm_error.h"

static bool cap_ok(uint32_t c)
{
	return c >= 1 && c <= SHM_BOOK_CAP_MAX;
}

static bool caps_ok(const struct shm_book_caps *c)
{
	return cap_ok(c->symbols) && cap_ok(c->levels) && cap_ok(c->orders) &&
	       cap_ok(c->fills);
}

int shm_book_layout(struct shm_book_hdr_sh *hdr, const struct shm_book_caps *caps,
		    uint32_t shard, uint32_t nshards, uint32_t stp_mode)
{
	if (!caps_ok(caps) || nshards == 0 || shard >= nshards ||
	    stp_mode > SHM_BOOK_STP_CANCEL_BOTH)
		return -EINVAL;
	memset(hdr, 0, sizeof(*hdr));
	hdr->magic = SHM_BOOK_MAGIC;
	hdr->shard = shard;
	hdr->nshards = nshards;
	hdr->cap_symbols = caps->symbols;
	hdr->cap_levels = caps->levels;
	hdr->cap_orders = caps->orders;
	hdr->cap_fills = caps->fills;
	hdr->stp_mode = stp_mode;
	uint64_t off = sizeof(struct shm_book_hdr_sh);
	hdr->off_symbols = off;
	off += (uint64_t)caps->symbols * sizeof(struct shm_book_sym_sh);
	hdr->off_levels = off;
	off += (uint64_t)caps->levels * sizeof(struct shm_book_level_sh);
	hdr->off_orders = off;
	off += (uint64_t)caps->orders * sizeof(struct shm_book_order_sh);
	hdr->off_fills = off;
	off += (uint64_t)caps->fills * sizeof(struct shm_book_fill_sh);
	hdr->off_quotes = off;
	off += (uint64_t)caps->symbols * sizeof(struct shm_book_quote_sh);
	hdr->body_size = off;
	return 0;
}

size_t shm_book_body_bytes(const struct shm_book_caps *caps)
{
	struct shm_book_hdr_sh h;
	if (shm_book_layout(&h, caps, 0, 1, 0) != 0)
		return 0;
	return (size_t)h.body_size;
}

/* Copies the geometry of a header with relaxed loads (it is immutable
 * after publish, but the mapping may be shared with a buggy writer). */
static void geometry_load(struct shm_book_hdr_sh *g, const struct shm_book_hdr_sh *h)
{
	memset(g, 0, sizeof(*g));
	g->magic = load_relaxed(&h->magic);
	g->shard = load_relaxed(&h->shard);
	g->nshards = load_relaxed(&h->nshards);
	g->cap_symbols = load_relaxed(&h->cap_symbols);
	g->cap_levels = load_relaxed(&h->cap_levels);
	g->cap_orders = load_relaxed(&h->cap_orders);
	g->cap_fills = load_relaxed(&h->cap_fills);
	g->off_symbols = load_relaxed(&h->off_symbols);
	g->off_levels = load_relaxed(&h->off_levels);
	g->off_orders = load_relaxed(&h->off_orders);
	g->off_fills = load_relaxed(&h->off_fills);
	g->off_quotes = load_relaxed(&h->off_quotes);
	g->body_size = load_relaxed(&h->body_size);
	g->stp_mode = load_relaxed(&h->stp_mode);
}

/* The geometry g is valid for a body of body_len bytes when it is exactly
 * the canonical layout of its own capacities and fits. */
static int geometry_check(const struct shm_book_hdr_sh *g, size_t body_len)
{
	if (g->magic != SHM_BOOK_MAGIC)
		return SHMEX_EBADLAYOUT;
	struct shm_book_caps caps = {g->cap_symbols, g->cap_levels, g->cap_orders,
				     g->cap_fills};
	struct shm_book_hdr_sh want;
	if (shm_book_layout(&want, &caps, g->shard, g->nshards, g->stp_mode) != 0)
		return SHMEX_EBADLAYOUT;
	if (g->off_symbols != want.off_symbols || g->off_levels != want.off_levels ||
	    g->off_orders != want.off_orders || g->off_fills != want.off_fills ||
	    g->off_quotes != want.off_quotes || g->body_size != want.body_size)
		return SHMEX_EBADLAYOUT;
	if (g->body_size > body_len)
		return SHMEX_ETOOSHORT;
	return 0;
}

int shm_book_validate(const void *body, size_t body_len)
{
	struct shm_book_hdr_sh g;
	if (body_len < sizeof(g))
		return SHMEX_ETOOSHORT;
	geometry_load(&g, body);
	return geometry_check(&g, body_len);
}

int shm_book_view_init(struct shm_book_view *v, const void *body, size_t body_len)
{
	struct shm_book_hdr_sh g;
	if (body_len < sizeof(g))
		return SHMEX_ETOOSHORT;
	/* Validate the very copy we use: the header cannot change between
	 * the check and the use. */
	geometry_load(&g, body);
	int rc = geometry_check(&g, body_len);
	if (rc)
		return rc;
	memset(v, 0, sizeof(*v));
	v->body = (char *)body;
	v->hdr = (struct shm_book_hdr_sh *)body;
	v->shard = g.shard;
	v->nshards = g.nshards;
	v->cap_symbols = g.cap_symbols;
	v->cap_levels = g.cap_levels;
	v->cap_orders = g.cap_orders;
	v->cap_fills = g.cap_fills;
	v->symbols = (struct shm_book_sym_sh *)(v->body + g.off_symbols);
	v->levels = (struct shm_book_level_sh *)(v->body + g.off_levels);
	v->orders = (struct shm_book_order_sh *)(v->body + g.off_orders);
	v->fills = (struct shm_book_fill_sh *)(v->body + g.off_fills);
	v->quotes = (struct shm_book_quote_sh *)(v->body + g.off_quotes);
	return 0;
}

int shm_book_region_create(struct shm_region *r, const char *instance,
			   const struct shm_book_caps *caps, uint32_t shard,
			   uint32_t nshards, mode_t mode)
{
	char name[SHM_REGION_NAME_MAX];
	size_t bytes = shm_book_body_bytes(caps);
	memset(r, 0, sizeof(*r));
	if (bytes == 0 || nshards == 0 || shard >= nshards)
		return shmex_error_set(&r->err, -EINVAL,
				       "book of shard %u of %u: "
				       "invalid capacities or shard",
				       shard, nshards);
	int rc = shm_region_name(name, SHM_KIND_BOOK, shard);
	if (rc)
		return shmex_error_set(&r->err, rc, "book of shard %u: %s", shard,
				       shmex_strerror(rc));
	uint64_t cap[6];
	cap[SHM_BOOK_CAP_SYMBOLS] = caps->symbols;
	cap[SHM_BOOK_CAP_LEVELS] = caps->levels;
	cap[SHM_BOOK_CAP_ORDERS] = caps->orders;
	cap[SHM_BOOK_CAP_FILLS] = caps->fills;
	cap[SHM_BOOK_CAP_SHARD] = shard;
	cap[SHM_BOOK_CAP_NSHARDS] = nshards;
	return shm_region_create(r, instance, name, SHM_KIND_BOOK, bytes, cap, 6,
				 mode ? mode : SHM_BOOK_REGION_MODE);
}

const char *const shm_book_reject_names[SHM_BOOK_REJECT_CAUSES] = {
	[SHM_REJECT_FUNDS] = "insufficient_funds",
	[SHM_REJECT_SHARES] = "insufficient_shares",
	[SHM_REJECT_UNKNOWN] = "unknown_or_existing",
	[SHM_REJECT_REFUSED] = "refused",
	[SHM_REJECT_OTHER] = "other",
};

int shm_book_reject_cause(int err)
{
	switch (err) {
	case SHMEX_ENOFUNDS:
		return SHM_REJECT_FUNDS;
	case SHMEX_ENOSHARES:
		return SHM_REJECT_SHARES;
	case SHMEX_ENOSYMBOL:
	case SHMEX_ENOACCOUNT:
	case SHMEX_ENOORDER:
	case SHMEX_EACCOUNTEXISTS:
		return SHM_REJECT_UNKNOWN;
	case SHMEX_ENOTOWNER:
	case SHMEX_ENOTOPEN:
	case SHMEX_EWOULDCROSS:
		return SHM_REJECT_REFUSED;
	default:
		return SHM_REJECT_OTHER;
	}
}
