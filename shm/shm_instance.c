/*
 * shm_instance: creation, attachment and addressing of an exchange's
 * control and rings regions (see shm_instance.h for the layout).
 *
 * Why this shape: every process of an exchange needs the same few facts
 * (how many shards and gateways, where ring (g, s) is, which doorbell to
 * ring) and must not be able to disagree on them, so they are written once
 * by the creator into the control region and every attacher validates them
 * against the regions' own headers before computing a single address.  All
 * rings sit in one region so that a gateway or matcher maps them with one
 * mmap; rings are addressed by index, never by pointer.
 *
 * Creation order: rings region first (laid out and published), then one
 * ledger per shard (shm_ledger.h: they outlive matchers, so they belong
 * to the instance), control region last, so an attacher that finds a
 * ready control region also finds ready rings and ledgers.  Any failure
 * unlinks what was created.
 *
 * Invariants: the settings never change after creation; ring i
 * starts at body + i * ring_bytes, 128-byte aligned; shard_db[s] serves
 * the request rings (*, s); gateway_db[g] serves the reply rings (*, g).
 *
 * Limits: at most 64 shards and 64 gateways (fixed arrays keep the control
 * layout independent of the configuration); the rings region may not
 * exceed SHM_INSTANCE_RINGS_BYTES_MAX.
 */
#include "shm/shm_instance.h"
#include "shm/shm_ledger.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "shm/shm_accounts.h"
#include "shm/shm_book.h"
#include "shm/shm_error.h"
#include "shm/shm_positions.h"
#include "shm/shm_proc.h"
#include "shm/shm_rcu.h"

static int fail(struct shm_instance *h, int err, const char *what)
{
	return shmex_error_set(&h->err, err, "%s: %s", what, shmex_strerror(err));
}

static int fail_region(struct shm_instance *h, int err, const struct shm_region *r)
{
	h->err = r->err;
	return err;
}

/* Bytes of the rings region's body, or 0 when out of limits. */
static uint64_t rings_body_bytes(uint32_t nshards, uint32_t ngateways, size_t ring_bytes)
{
	uint64_t n = 2ull * nshards * ngateways * ring_bytes;
	return n > SHM_INSTANCE_RINGS_BYTES_MAX ? 0 : n;
}

static bool counts_ok(uint32_t nshards, uint32_t ngateways)
{
	return nshards >= 1 && nshards <= SHM_INSTANCE_SHARDS_MAX && ngateways >= 1 &&
	       ngateways <= SHM_INSTANCE_GATEWAYS_MAX;
}

static void *ring_mem(const struct shm_instance *h, uint64_t idx)
{
	return (char *)shm_region_body(&h->rings) + idx * h->ring_bytes;
}

static int unlink_ledger(const char *instance, uint32_t k)
{
	char name[SHM_REGION_NAME_MAX];
	int rc = shm_region_name(name, SHM_KIND_LEDGER, k);
	return rc ? rc : shm_region_unlink(instance, name);
}

int shm_instance_create(const char *instance, const struct shm_instance_cfg *cfg,
			struct shm_instance *h)
{
	memset(h, 0, sizeof(*h));
	if (!shm_instance_name_valid(instance))
		return fail(h, SHMEX_EBADNAME, "instance name");
	snprintf(h->name, sizeof(h->name), "%s", instance);
	int rc = shm_settings_validate(&cfg->s, &h->err);
	if (rc)
		return rc;
	if (cfg->data_dir && strlen(cfg->data_dir) >= SHM_DATA_DIR_MAX)
		return fail(h, -ENAMETOOLONG, "data directory");
	uint32_t ns = (uint32_t)cfg->s.shards, ng = (uint32_t)cfg->s.gateways;
	uint32_t cap = (uint32_t)cfg->s.ring_capacity;
	size_t ring_bytes = shm_ring_bytes(cap);
	if (!counts_ok(ns, ng) || ring_bytes == 0)
		return fail(h, -EINVAL, "instance configuration");
	uint64_t body = rings_body_bytes(ns, ng, ring_bytes);
	if (body == 0)
		return fail(h, -EINVAL, "instance configuration (rings too big)");
	mode_t mode = cfg->mode ? cfg->mode : 0640;
	uint64_t nrings = 2ull * ns * ng;
	uint64_t caps[4] = {ns, ng, cap, nrings};

	rc = shm_region_create(&h->rings, instance, SHM_REGION_RINGS, SHM_KIND_RINGS,
			       (size_t)body, caps, 4, mode);
	if (rc)
		return fail_region(h, rc, &h->rings);
	h->settings = cfg->s;
	h->nshards = ns;
	h->ngateways = ng;
	h->ring_capacity = cap;
	h->ring_bytes = ring_bytes;
	for (uint64_t i = 0; i < nrings; i++) {
		rc = shm_ring_init(ring_mem(h, i), ring_bytes, cap);
		if (rc) {
			fail(h, rc, "ring init");
			goto out_unlink_rings;
		}
	}
	shm_region_publish(&h->rings);

	/* The ledgers outlive matchers (a restarted one reads its
	 * predecessor's), so they belong to the instance. */
	uint32_t nledgers = 0;
	for (; nledgers < ns; nledgers++) {
		struct shm_ledger l;
		rc = shm_ledger_create(&l, instance, nledgers, cfg->s.accounts, mode);
		if (rc) {
			fail_region(h, rc, &l.region);
			goto out_unlink_ledgers;
		}
		shm_ledger_detach(&l);
	}

	rc = shm_region_create(&h->control, instance, SHM_REGION_CONTROL,
			       SHM_KIND_CONTROL, sizeof(struct shm_control_sh), caps, 3,
			       mode);
	if (rc) {
		fail_region(h, rc, &h->control);
		goto out_unlink_ledgers;
	}
	struct shm_control_sh *ctl = shm_region_body(&h->control);
	/* The body is zero-filled: member slots empty, stopping 0,
	 * doorbells idle.  Only the configuration needs writing. */
	shm_settings_store(&ctl->settings, &cfg->s);
	ctl->ring_bytes = ring_bytes;
	ctl->port = cfg->port;
	if (cfg->data_dir)
		snprintf(ctl->data_dir, sizeof(ctl->data_dir), "%s", cfg->data_dir);
	memcpy(h->data_dir, ctl->data_dir, sizeof(h->data_dir));
	for (uint32_t i = 0; i < SHM_INSTANCE_SHARDS_MAX; i++)
		shm_doorbell_init(&ctl->shard_db[i].db);
	for (uint32_t i = 0; i < SHM_INSTANCE_GATEWAYS_MAX; i++)
		shm_doorbell_init(&ctl->gateway_db[i].db);
	shm_region_publish(&h->control);
	h->ctl = ctl;
	h->role = SHM_ROLE_SUPERVISOR;
	return 0;

out_unlink_ledgers:
	for (uint32_t k = 0; k < nledgers; k++)
		(void)unlink_ledger(instance, k);
out_unlink_rings:
	shm_region_detach(&h->rings);
	/* The name was ours a moment ago; nothing to do if it is gone. */
	(void)shm_region_unlink(instance, SHM_REGION_RINGS);
	h->ctl = NULL;
	return rc;
}

/* Checks the control body against both region headers; fills h's copies. */
static int validate(struct shm_instance *h)
{
	if (shm_region_body_size(&h->control) < sizeof(struct shm_control_sh))
		return fail(h, SHMEX_ETOOSHORT, "control region");
	const struct shm_control_sh *ctl = shm_region_body(&h->control);
	const struct shm_region_hdr_sh *ch = shm_region_hdr(&h->control);
	const struct shm_region_hdr_sh *rh = shm_region_hdr(&h->rings);
	/* Copied once, validated row by row (immutable after the regions'
	 * R0, acquired by A0); only the copy is used from here on. */
	int rc = shm_settings_load(&ctl->settings, &h->settings, &h->err);
	if (rc)
		return shmex_error_wrap(&h->err, rc, "control region of %s", h->name);
	/* The path: NUL-terminated within its field, else refused. */
	memcpy(h->data_dir, ctl->data_dir, sizeof(h->data_dir));
	if (memchr(h->data_dir, 0, sizeof(h->data_dir)) == NULL)
		return fail(h, SHMEX_EBADLAYOUT, "control region's data directory");
	uint32_t ns = (uint32_t)h->settings.shards;
	uint32_t ng = (uint32_t)h->settings.gateways;
	uint32_t cap = (uint32_t)h->settings.ring_capacity;
	size_t ring_bytes = shm_ring_bytes(cap);
	/* Relaxed: immutable, as above. */
	if (!counts_ok(ns, ng) || ring_bytes == 0 ||
	    load_relaxed(&ctl->ring_bytes) != ring_bytes)
		return fail(h, SHMEX_EBADLAYOUT, "control configuration");
	uint64_t body = rings_body_bytes(ns, ng, ring_bytes);
	uint64_t nrings = 2ull * ns * ng;
	if (body == 0 || ch->capacity[0] != ns || ch->capacity[1] != ng ||
	    ch->capacity[2] != cap || rh->capacity[0] != ns || rh->capacity[1] != ng ||
	    rh->capacity[2] != cap || rh->capacity[3] != nrings)
		return fail(h, SHMEX_EBADLAYOUT, "control and rings regions disagree");
	if (shm_region_body_size(&h->rings) < body)
		return fail(h, SHMEX_ETOOSHORT, "rings region");
	h->nshards = ns;
	h->ngateways = ng;
	h->ring_capacity = cap;
	h->ring_bytes = ring_bytes;
	return 0;
}

static struct shm_instance_member_sh *member(struct shm_instance *h,
					     enum shm_instance_role role, uint32_t index)
{
	if (!h->ctl)
		return NULL;
	if (role == SHM_ROLE_GATEWAY && index < h->ngateways)
		return &h->ctl->gateways[index];
	if (role == SHM_ROLE_MATCHER && index < h->nshards)
		return &h->ctl->shards[index];
	return NULL;
}

/* Takes the member slot for this process: from free, from a dead owner
 * (killed without detaching), or from ourselves; a live other owner keeps
 * it (SHMEX_EINUSE).  INS5: acq_rel CAS; pairs with the CAS of the
 * previous owner's claim or release. */
static int claim(struct shm_instance *h, struct shm_instance_member_sh *m,
		 enum shm_instance_role role, uint32_t index)
{
	uint64_t me = shm_proc_self_ident();
	uint64_t cur = load_acquire(&m->owner); /* INS5 */
	for (;;) {
		if (cur != 0 && cur != me && shm_proc_ident_alive(cur)) {
			char what[48];
			snprintf(what, sizeof(what), "%s %u",
				 role == SHM_ROLE_GATEWAY ? "gateway" : "matcher", index);
			return fail(h, SHMEX_EINUSE, what);
		}
		if (cas_acq_rel(&m->owner, &cur, me)) /* INS5 */
			return 0;
	}
}

int shm_instance_attach(const char *instance, enum shm_instance_role role, uint32_t index,
			struct shm_instance *h)
{
	memset(h, 0, sizeof(*h));
	if (!shm_instance_name_valid(instance))
		return fail(h, SHMEX_EBADNAME, "instance name");
	snprintf(h->name, sizeof(h->name), "%s", instance);
	if (role != SHM_ROLE_SUPERVISOR && role != SHM_ROLE_GATEWAY &&
	    role != SHM_ROLE_MATCHER && role != SHM_ROLE_OBSERVER)
		return fail(h, -EINVAL, "instance role");
	enum shm_attach_mode mode = role == SHM_ROLE_OBSERVER ? SHM_RDONLY : SHM_RDWR;
	int rc = shm_region_attach(&h->control, instance, SHM_REGION_CONTROL,
				   SHM_KIND_CONTROL, mode);
	if (rc)
		return fail_region(h, rc, &h->control);
	rc = shm_region_attach(&h->rings, instance, SHM_REGION_RINGS, SHM_KIND_RINGS,
			       mode);
	if (rc) {
		fail_region(h, rc, &h->rings);
		goto out_detach_control;
	}
	rc = validate(h);
	if (rc)
		goto out_detach_rings;
	h->ctl = shm_region_body(&h->control);
	h->role = role;
	h->index = index;
	if (role == SHM_ROLE_GATEWAY || role == SHM_ROLE_MATCHER) {
		struct shm_instance_member_sh *m = member(h, role, index);
		if (!m) {
			rc = fail(h, SHMEX_EBADINDEX, "instance role index");
			goto out_detach_rings;
		}
		rc = claim(h, m, role, index);
		if (rc)
			goto out_detach_rings;
		/* Relaxed: published by INS3 below. */
		store_relaxed(&m->start, shm_proc_self_start());
		/* INS3: the pid says "start is valid"; pairs with INS4. */
		store_release(&m->pid, (int32_t)getpid());
	}
	return 0;

out_detach_rings:
	shm_region_detach(&h->rings);
out_detach_control:
	shm_region_detach(&h->control);
	h->ctl = NULL;
	return rc;
}

void shm_instance_detach(struct shm_instance *h)
{
	struct shm_instance_member_sh *m = member(h, h->role, h->index);
	/* INS3 (detach): only the slot's own process clears it.  A
	 * read-only observer never gets here (member() is NULL for it).
	 * Relaxed load: it compares against our own earlier INS3 store; a
	 * later attacher's pid differs from ours whatever we read. */
	if (m && h->control.writable && load_relaxed(&m->pid) == (int32_t)getpid())
		store_release(&m->pid, 0);
	if (m && h->control.writable) {
		/* INS5: free the slot only if it is still ours. */
		uint64_t me = shm_proc_self_ident();
		(void)cas_acq_rel(&m->owner, &me, 0);
	}
	h->ctl = NULL;
	shm_region_detach(&h->rings);
	shm_region_detach(&h->control);
}

int shm_instance_unlink(const char *instance)
{
	int rc1 = shm_region_unlink(instance, SHM_REGION_CONTROL);
	int rc2 = shm_region_unlink(instance, SHM_REGION_RINGS);
	for (uint32_t k = 0; k < SHM_INSTANCE_SHARDS_MAX; k++)
		(void)unlink_ledger(instance, k);
	if (rc1 == 0 || rc2 == 0) {
		if (rc1 && rc1 != -ENOENT)
			return rc1;
		if (rc2 && rc2 != -ENOENT)
			return rc2;
		return 0;
	}
	return rc1 != -ENOENT ? rc1 : rc2;
}

int shm_instance_request_ring(struct shm_instance *h, uint32_t g, uint32_t s,
			      struct shm_ring *out)
{
	if (!h->ctl || g >= h->ngateways || s >= h->nshards)
		return SHMEX_EBADINDEX;
	uint64_t idx = (uint64_t)g * h->nshards + s;
	return shm_ring_attach(out, ring_mem(h, idx), h->ring_bytes,
			       &h->ctl->shard_db[s].db);
}

int shm_instance_reply_ring(struct shm_instance *h, uint32_t s, uint32_t g,
			    struct shm_ring *out)
{
	if (!h->ctl || g >= h->ngateways || s >= h->nshards)
		return SHMEX_EBADINDEX;
	uint64_t idx =
		(uint64_t)h->ngateways * h->nshards + (uint64_t)s * h->ngateways + g;
	return shm_ring_attach(out, ring_mem(h, idx), h->ring_bytes,
			       &h->ctl->gateway_db[g].db);
}

struct shm_doorbell_sh *shm_instance_shard_doorbell(struct shm_instance *h, uint32_t s)
{
	if (!h->ctl || s >= h->nshards)
		return NULL;
	return &h->ctl->shard_db[s].db;
}

struct shm_doorbell_sh *shm_instance_gateway_doorbell(struct shm_instance *h, uint32_t g)
{
	if (!h->ctl || g >= h->ngateways)
		return NULL;
	return &h->ctl->gateway_db[g].db;
}

void shm_instance_set_stopping(struct shm_instance *h)
{
	if (!h->ctl || !h->control.writable)
		return;
	/* INS1: pairs with INS2 in every process's loop. */
	store_release(&h->ctl->stopping, 1u);
	/* The DB4 fence inside each shm_doorbell_ring orders INS1 before
	 * that doorbell's `sleeping` load (Dekker with the waiter's DB2). */
	for (uint32_t s = 0; s < h->nshards; s++)
		shm_doorbell_ring(&h->ctl->shard_db[s].db);
	for (uint32_t g = 0; g < h->ngateways; g++)
		shm_doorbell_ring(&h->ctl->gateway_db[g].db);
}

bool shm_instance_stopping(const struct shm_instance *h)
{
	/* INS2: pairs with INS1. */
	return h->ctl && load_acquire(&h->ctl->stopping) != 0;
}

void shm_instance_ring_repairs_bump(struct shm_instance *h, uint32_t g, uint32_t s)
{
	if (!h->ctl || !h->control.writable)
		return;
	/* INS6: release after the ring's own repair words (RNG5/RNG7);
	 * pairs with INS7.  Only the supervisor writes it. */
	store_release(&h->ctl->ring_repairs, load_relaxed(&h->ctl->ring_repairs) + 1);
	/* DB4 inside: the ends re-read ring_repairs after waking. */
	if (s < h->nshards)
		shm_doorbell_ring(&h->ctl->shard_db[s].db);
	if (g < h->ngateways)
		shm_doorbell_ring(&h->ctl->gateway_db[g].db);
}

uint32_t shm_instance_ring_repairs(const struct shm_instance *h)
{
	/* INS7: pairs with INS6; the ring's state is then read with its own
	 * acquires (RNG6/RNG8). */
	return h->ctl ? load_acquire(&h->ctl->ring_repairs) : 0;
}

void shm_instance_ring_name(const struct shm_instance *h, bool request, uint32_t g,
			    uint32_t s, char *buf, size_t len)
{
	if (request)
		snprintf(buf, len, "/shmex.%s.rings req g%u->s%u", h->name, g, s);
	else
		snprintf(buf, len, "/shmex.%s.rings rep s%u->g%u", h->name, s, g);
}

void shm_instance_member(const struct shm_instance *h, enum shm_instance_role role,
			 uint32_t index, int32_t *pid, uint64_t *start)
{
	*pid = 0;
	*start = 0;
	const struct shm_instance_member_sh *m =
		member((struct shm_instance *)h, role, index);
	if (!m)
		return;
	/* INS4: pairs with INS3; start is at least as new as pid. */
	*pid = load_acquire(&m->pid);
	/* Relaxed: ordered after INS4. */
	*start = load_relaxed(&m->start);
}

bool shm_instance_name_valid(const char *name)
{
	char probe[SHM_NAME_MAX];
	return name &&
	       shm_name_format(probe, sizeof(probe), name, SHM_REGION_CONTROL) == 0;
}

/* True when the region of kind for shard k attaches (read-only). */
static bool region_attaches(const struct shm_instance *h, enum shm_region_kind kind,
			    uint32_t k)
{
	char name[SHM_REGION_NAME_MAX];
	struct shm_region r;
	if (shm_region_name(name, kind, k) != 0 ||
	    shm_region_attach(&r, h->name, name, kind, SHM_RDONLY) != 0)
		return false;
	shm_region_detach(&r);
	return true;
}

static bool member_is(const struct shm_instance *h, enum shm_instance_role role,
		      uint32_t idx, int32_t want)
{
	int32_t pid;
	uint64_t start;
	/* SV1: acquire of the member pid (INS4 inside; pairs with INS3). */
	shm_instance_member(h, role, idx, &pid, &start);
	if (pid <= 0)
		return false;
	if (want > 0)
		return pid == want;
	return shm_proc_alive(pid, start);
}

bool shm_instance_member_alive(const struct shm_instance *h, enum shm_instance_role role,
			       uint32_t index)
{
	return member_is(h, role, index, 0);
}

bool shm_instance_gateway_ready(const struct shm_instance *h, uint32_t g, int32_t pid)
{
	return member_is(h, SHM_ROLE_GATEWAY, g, pid);
}

bool shm_instance_matcher_ready(const struct shm_instance *h, uint32_t k, int32_t pid)
{
	/* The matcher publishes book.<k> last [MT1], after positions.<k>
	 * and readers.<k>; check it last too. */
	return member_is(h, SHM_ROLE_MATCHER, k, pid) &&
	       region_attaches(h, SHM_KIND_READERS, k) &&
	       region_attaches(h, SHM_KIND_POSITIONS, k) &&
	       region_attaches(h, SHM_KIND_BOOK, k);
}

/* A region of `body` bytes as it sits in /dev/shm: header, whole pages. */
static uint64_t region_bytes(uint64_t body)
{
	uint64_t n = SHM_REGION_HDR_SIZE + body;
	return (n + 4095) & ~(uint64_t)4095;
}

void shm_instance_footprint(const struct shm_settings *s, struct shm_footprint *f)
{
	struct shm_book_caps caps = {.symbols = (uint32_t)s->symbols,
				     .levels = (uint32_t)s->levels,
				     .orders = (uint32_t)s->orders,
				     .fills = (uint32_t)s->fills};
	memset(f, 0, sizeof(*f));
	f->book = region_bytes(shm_book_body_bytes(&caps));
	f->positions = region_bytes(shm_positions_bytes(s->symbols, s->positions));
	f->shard_rest = region_bytes(shm_rcu_body_size((uint32_t)s->readers)) +
			region_bytes(shm_ledger_bytes(s->accounts));
	f->accounts = region_bytes(shm_accounts_bytes(s->accounts));
	f->rings = region_bytes(2ull * s->shards * s->gateways *
				shm_ring_bytes((uint32_t)s->ring_capacity));
	f->total = s->shards * (f->book + f->positions + f->shard_rest) + f->accounts +
		   f->rings + region_bytes(sizeof(struct shm_control_sh));
}

void shm_instance_gateway_publish(struct shm_instance *h, uint32_t g,
				  const struct shm_gateway_counters *c)
{
	struct shm_instance_member_sh *m = member(h, SHM_ROLE_GATEWAY, g);
	if (!m || !h->control.writable)
		return;
	/* Relaxed: statistics (see the field comments). */
	store_relaxed(&m->gw_requests, c->requests);
	store_relaxed(&m->gw_open, c->open);
	store_relaxed(&m->gw_refused, c->refused);
	store_relaxed(&m->gw_unknown, c->unknown);
	store_relaxed(&m->gw_busy, c->busy);
}

void shm_instance_gateway_counters(const struct shm_instance *h, uint32_t g,
				   struct shm_gateway_counters *c)
{
	memset(c, 0, sizeof(*c));
	const struct shm_instance_member_sh *m =
		member((struct shm_instance *)h, SHM_ROLE_GATEWAY, g);
	if (!m)
		return;
	/* Relaxed: statistics. */
	c->requests = load_relaxed(&m->gw_requests);
	c->open = load_relaxed(&m->gw_open);
	c->refused = load_relaxed(&m->gw_refused);
	c->unknown = load_relaxed(&m->gw_unknown);
	c->busy = load_relaxed(&m->gw_busy);
}

uint32_t shm_instance_port(const struct shm_instance *h)
{
	return h->ctl ? load_relaxed(&h->ctl->port) : 0; /* immutable after R0 */
}
