/*
 * eng_cash: queued credits, allowances and the ledger (contract in
 * eng_cash.h; the argument for why it is safe is in docs/durability.md,
 * "Accounts shared by shards").
 *
 * Data.  `queue` holds the credits and publications not applied yet, in
 * tag order (tags only grow: they are journal sequences), so commit
 * applies a prefix.  `allow` maps an account slot to the sum of its
 * queued balance credits, the allowance of eng_cash_reserve; an entry
 * leaves the map when its last credit is applied.  Both are private to the
 * matcher thread.  In replay, `parts` is the shard's part per account,
 * found through `pmap`.
 */
#include "engine/eng_cash.h"
#include "engine/eng_alloc.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "shm/shm_error.h"
#include "shm/shm_hash.h"

enum item_kind { IT_CREDIT = 0, IT_PUBLISH = 1 };

struct item {
	uint64_t tag;
	uint64_t id;
	shm_cash_t dbal;
	shm_cash_t dres; /* IT_PUBLISH: the deposit */
	uint32_t idx;
	uint8_t kind;
};

struct allow_ent {
	uint32_t idx1;   /* slot + 1; 0 = empty */
	uint32_t n;      /* queued credits */
	shm_cash_t sum;  /* their balance part */
	shm_cash_t rsum; /* their reserved part (<= 0: releases) */
};

struct eng_cash {
	struct shm_accounts *acc;
	struct shm_ledger *ledger;
	bool replay;
	uint64_t tag;
	uint64_t internal;
	/* Live. */
	struct item *q;
	size_t qhead, qlen, qcap;
	struct allow_ent *allow;
	uint32_t amask, aused;
	uint64_t npublish; /* IT_PUBLISH items queued */
	/* Replay. */
	struct shm_ledger_part *parts;
	uint64_t nparts, pcap;
	uint32_t *pmap; /* part index + 1 */
	uint32_t pmask;
};

int eng_cash_open(struct eng_cash **out, struct shm_accounts *accounts,
		  struct shm_ledger *ledger)
{
	*out = NULL;
	struct eng_cash *c = eng_alloc_calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->acc = accounts;
	c->ledger = ledger;
	c->replay = accounts == NULL;
	if (c->replay) {
		c->pmask = 1023;
		c->pmap = eng_alloc_calloc(c->pmask + 1, sizeof(*c->pmap));
		if (!c->pmap)
			goto out_nomem;
	} else {
		c->amask = 255;
		c->allow = eng_alloc_calloc(c->amask + 1, sizeof(*c->allow));
		if (!c->allow)
			goto out_nomem;
	}
	*out = c;
	return 0;
out_nomem:
	eng_cash_close(c);
	return -ENOMEM;
}

void eng_cash_close(struct eng_cash *c)
{
	if (!c)
		return;
	eng_alloc_free(c->q);
	eng_alloc_free(c->allow);
	eng_alloc_free(c->parts);
	eng_alloc_free(c->pmap);
	eng_alloc_free(c);
}

bool eng_cash_replaying(const struct eng_cash *c)
{
	return c->replay;
}

void eng_cash_set_tag(struct eng_cash *c, uint64_t seq)
{
	c->tag = seq;
}

uint64_t eng_cash_internal_errors(const struct eng_cash *c)
{
	return c->internal;
}

/* ---- replay: the private part ---------------------------------------------- */

static struct shm_ledger_part *part_of(struct eng_cash *c, uint64_t id, bool make)
{
	for (uint32_t i = shm_hash_u64(id + 1) & c->pmask;; i = (i + 1) & c->pmask) {
		uint32_t k = c->pmap[i];
		if (k && c->parts[k - 1].account == id)
			return &c->parts[k - 1];
		if (k)
			continue;
		if (!make)
			return NULL;
		if (c->nparts == c->pcap) {
			uint64_t cap = c->pcap ? 2 * c->pcap : 1024;
			struct shm_ledger_part *np =
				eng_alloc_realloc(c->parts, cap * sizeof(*np));
			if (!np)
				return NULL;
			c->parts = np;
			c->pcap = cap;
		}
		if (2 * (c->nparts + 1) > (uint64_t)c->pmask + 1) {
			/* Grow the map and place every part again. */
			uint32_t nmask = c->pmask * 2 + 1;
			uint32_t *nm = eng_alloc_calloc((size_t)nmask + 1, sizeof(*nm));
			if (!nm)
				return NULL;
			for (uint64_t p = 0; p < c->nparts; p++) {
				uint32_t j =
					shm_hash_u64(c->parts[p].account + 1) & nmask;
				while (nm[j])
					j = (j + 1) & nmask;
				nm[j] = (uint32_t)p + 1;
			}
			eng_alloc_free(c->pmap);
			c->pmap = nm;
			c->pmask = nmask;
			return part_of(c, id, make);
		}
		struct shm_ledger_part *p = &c->parts[c->nparts];
		memset(p, 0, sizeof(*p));
		p->account = id;
		c->pmap[i] = (uint32_t)++c->nparts;
		return p;
	}
}

static void part_add(struct eng_cash *c, uint64_t id, shm_cash_t dep, shm_cash_t bal,
		     shm_cash_t res)
{
	struct shm_ledger_part *p = part_of(c, id, true);
	if (!p) {
		c->internal++;
		return;
	}
	p->deposit += dep;
	p->balance += bal;
	p->reserved += res;
}

uint64_t eng_cash_parts(const struct eng_cash *c, const struct shm_ledger_part **parts)
{
	*parts = c->parts;
	return c->nparts;
}

void eng_cash_part(const struct eng_cash *c, uint64_t id, struct shm_ledger_part *p)
{
	const struct shm_ledger_part *x =
		c->replay ? part_of((struct eng_cash *)c, id, false) : NULL;
	if (x) {
		*p = *x;
	} else {
		memset(p, 0, sizeof(*p));
		p->account = id;
	}
}

int eng_cash_load_part(struct eng_cash *c, const struct shm_ledger_part *p)
{
	if (!c->replay)
		return -EINVAL;
	struct shm_ledger_part *x = part_of(c, p->account, true);
	if (!x)
		return -ENOMEM;
	*x = *p;
	return 0;
}

/* ---- live: allowances ------------------------------------------------------- */

static struct allow_ent *allow_find(struct eng_cash *c, uint32_t idx)
{
	for (uint32_t i = shm_hash_u64(idx) & c->amask;; i = (i + 1) & c->amask) {
		struct allow_ent *e = &c->allow[i];
		if (e->idx1 == idx + 1)
			return e;
		if (e->idx1 == 0)
			return NULL;
	}
}

static int allow_grow(struct eng_cash *c)
{
	uint32_t nmask = c->amask * 2 + 1;
	struct allow_ent *na = eng_alloc_calloc((size_t)nmask + 1, sizeof(*na));
	if (!na)
		return -ENOMEM;
	for (uint32_t i = 0; i <= c->amask; i++) {
		struct allow_ent *e = &c->allow[i];
		if (!e->idx1)
			continue;
		uint32_t j = shm_hash_u64(e->idx1 - 1) & nmask;
		while (na[j].idx1)
			j = (j + 1) & nmask;
		na[j] = *e;
	}
	eng_alloc_free(c->allow);
	c->allow = na;
	c->amask = nmask;
	return 0;
}

static void allow_add(struct eng_cash *c, uint32_t idx, shm_cash_t x, shm_cash_t r)
{
	struct allow_ent *e = allow_find(c, idx);
	if (!e) {
		if (2 * (c->aused + 1) > c->amask + 1 && allow_grow(c) != 0) {
			c->internal++;
			return;
		}
		uint32_t i = shm_hash_u64(idx) & c->amask;
		while (c->allow[i].idx1)
			i = (i + 1) & c->amask;
		e = &c->allow[i];
		e->idx1 = idx + 1;
		c->aused++;
	}
	e->n++;
	e->sum += x;
	e->rsum += r;
}

/* Removes one credit of x from idx's allowance (backward-shift deletion
 * when it was the last, so probes never meet a hole). */
static void allow_sub(struct eng_cash *c, uint32_t idx, shm_cash_t x, shm_cash_t r)
{
	struct allow_ent *e = allow_find(c, idx);
	if (!e) {
		c->internal++;
		return;
	}
	e->sum -= x;
	e->rsum -= r;
	if (--e->n)
		return;
	uint32_t i = (uint32_t)(e - c->allow);
	for (uint32_t j = (i + 1) & c->amask; c->allow[j].idx1; j = (j + 1) & c->amask) {
		uint32_t home = shm_hash_u64(c->allow[j].idx1 - 1) & c->amask;
		/* Move j into the hole at i when its home is not in (i, j]. */
		bool stays = i <= j ? (home > i && home <= j) : (home > i || home <= j);
		if (stays)
			continue;
		c->allow[i] = c->allow[j];
		i = j;
	}
	memset(&c->allow[i], 0, sizeof(c->allow[i]));
	c->aused--;
}

static shm_cash_t allowance(struct eng_cash *c, uint32_t idx)
{
	struct allow_ent *e = allow_find(c, idx);
	return e && e->sum > 0 ? e->sum : 0;
}

/* ---- live: the queue ---------------------------------------------------------- */

static void enqueue(struct eng_cash *c, const struct item *it)
{
	if (c->qhead + c->qlen == c->qcap) {
		if (c->qhead > 0) {
			memmove(c->q, c->q + c->qhead, c->qlen * sizeof(*c->q));
			c->qhead = 0;
		} else {
			size_t cap = c->qcap ? 2 * c->qcap : 1024;
			struct item *nq = eng_alloc_realloc(c->q, cap * sizeof(*nq));
			if (!nq) {
				c->internal++;
				return;
			}
			c->q = nq;
			c->qcap = cap;
		}
	}
	c->q[c->qhead + c->qlen++] = *it;
}

static void ledger_add(struct eng_cash *c, uint64_t id, shm_cash_t dep, shm_cash_t bal,
		       shm_cash_t res)
{
	if (c->ledger && shm_ledger_add(c->ledger, id, dep, bal, res) != 0)
		c->internal++;
}

/* ---- the operations ------------------------------------------------------------ */

int eng_cash_find(struct eng_cash *c, uint64_t id, struct eng_cash_acct *a)
{
	a->id = id;
	a->idx = 0;
	if (c->replay)
		return 0;
	return shm_accounts_find(c->acc, id, &a->idx);
}

int eng_cash_create(struct eng_cash *c, uint64_t id, shm_cash_t deposit)
{
	if (c->replay) {
		part_add(c, id, deposit, 0, 0);
		return 0;
	}
	uint32_t idx;
	int rc = shm_accounts_claim(c->acc, id, deposit, &idx);
	if (rc)
		return rc;
	struct item it = {
		.tag = c->tag, .id = id, .dres = deposit, .idx = idx, .kind = IT_PUBLISH};
	enqueue(c, &it);
	c->npublish++;
	return 0;
}

int eng_cash_reserve(struct eng_cash *c, const struct eng_cash_acct *a, int64_t x)
{
	if (c->replay) {
		part_add(c, a->id, 0, -x, x);
		return 0;
	}
	int rc = shm_accounts_reserve_allow(c->acc, a->idx, x, allowance(c, a->idx));
	if (rc)
		return rc;
	ledger_add(c, a->id, 0, -x, x);
	return 0;
}

void eng_cash_unreserve_now(struct eng_cash *c, const struct eng_cash_acct *a, int64_t x)
{
	if (c->replay) {
		part_add(c, a->id, 0, x, -x);
		return;
	}
	if (shm_accounts_add_delta(c->acc, a->idx, x, -x) != 0)
		c->internal++;
	else
		ledger_add(c, a->id, 0, x, -x);
}

static void queue_credit(struct eng_cash *c, const struct eng_cash_acct *a,
			 shm_cash_t dbal, shm_cash_t dres)
{
	if (c->replay) {
		part_add(c, a->id, 0, dbal, dres);
		return;
	}
	struct item it = {.tag = c->tag,
			  .id = a->id,
			  .dbal = dbal,
			  .dres = dres,
			  .idx = a->idx,
			  .kind = IT_CREDIT};
	enqueue(c, &it);
	allow_add(c, a->idx, dbal, dres);
}

int eng_cash_release(struct eng_cash *c, const struct eng_cash_acct *a, int64_t x)
{
	if (!c->replay) {
		/* What this shard reserved and has not yet released must
		 * cover x: a release of more is a bug, refused at once
		 * rather than found when the credit is applied. */
		struct shm_account_view v;
		struct allow_ent *e = allow_find(c, a->idx);
		shm_cash_t queued = e ? e->rsum : 0;
		if (shm_accounts_read_slot(c->acc, a->idx, &v) != 0 ||
		    v.reserved + queued < x)
			return SHMEX_EINTERNAL;
	}
	queue_credit(c, a, x, -x);
	return 0;
}

void eng_cash_settle_buy(struct eng_cash *c, const struct eng_cash_acct *a,
			 int64_t release, int64_t refund)
{
	queue_credit(c, a, refund, -release);
}

void eng_cash_credit(struct eng_cash *c, const struct eng_cash_acct *a, int64_t x)
{
	queue_credit(c, a, x, 0);
}

unsigned eng_cash_commit(struct eng_cash *c, uint64_t durable)
{
	unsigned n = 0;
	while (c->qlen > 0 && c->q[c->qhead].tag <= durable) {
		const struct item *it = &c->q[c->qhead];
		if (it->kind == IT_PUBLISH) {
			c->npublish--;
			if (shm_accounts_publish(c->acc, it->idx) != 0)
				c->internal++;
			else
				ledger_add(c, it->id, it->dres, 0, 0);
		} else {
			if (shm_accounts_add_delta(c->acc, it->idx, it->dbal, it->dres) !=
			    0) {
				c->internal++;
			} else {
				ledger_add(c, it->id, 0, it->dbal, it->dres);
			}
			allow_sub(c, it->idx, it->dbal, it->dres);
		}
		c->qhead++;
		c->qlen--;
		n++;
	}
	if (c->qlen == 0)
		c->qhead = 0;
	return n;
}

bool eng_cash_creating(const struct eng_cash *c, uint64_t id)
{
	if (c->replay || c->npublish == 0)
		return false;
	uint32_t idx;
	if (shm_accounts_find(c->acc, id, &idx) == 0)
		return false;
	for (size_t i = 0; i < c->qlen; i++) {
		const struct item *it = &c->q[c->qhead + i];
		if (it->kind == IT_PUBLISH && it->id == id)
			return true;
	}
	return false;
}

uint64_t eng_cash_pending(const struct eng_cash *c)
{
	return c->qlen;
}
