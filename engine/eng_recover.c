/*
 * eng_recover: the cash side of recovery (contract in eng_recover.h).
 *
 * The identity it relies on (shm_ledger.h): at a clean point of every
 * matcher, for every published account,
 *     balance  = deposited + sum over shards of ledger.balance
 *     reserved =             sum over shards of ledger.reserved
 * A dead matcher's ledger may lag its last cash step, so its part is
 * computed from the others': applied_k = accounts - deposits - others.
 * The correction durable_k - applied_k only ever raises a balance and
 * lowers a reservation (docs/durability.md proves it), so no account goes
 * negative while it is applied.
 */
#include "engine/eng_recover.h"
#include "engine/eng_alloc.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "shm/shm_atomic.h"
#include "shm/shm_clock.h"
#include "shm/shm_doorbell.h"
#include "shm/shm_proc.h"
#include "shm/shm_shard.h"

static void nap_us(unsigned us)
{
	struct timespec ts = {0, (long)us * 1000};
	nanosleep(&ts, NULL);
}

static bool member_alive(const struct shm_instance *inst, uint32_t k)
{
	int32_t pid;
	uint64_t start;
	shm_instance_member(inst, SHM_ROLE_MATCHER, k, &pid, &start);
	return pid > 0 && shm_proc_alive(pid, start);
}

/* Attaches every other shard's ledger read-only into l[] (l[shard] is
 * left zero). */
static int attach_others(const struct eng_recover_in *in, struct shm_ledger *l,
			 struct shmex_error *e)
{
	for (uint32_t j = 0; j < in->nshards; j++) {
		memset(&l[j], 0, sizeof(l[j]));
		if (j == in->shard)
			continue;
		int rc = shm_ledger_attach(&l[j], in->inst->name, j, SHM_RDONLY);
		if (rc) {
			if (e)
				*e = l[j].region.err;
			for (uint32_t i = 0; i < j; i++)
				shm_ledger_detach(&l[i]);
			return shmex_error_wrap(e, rc, "ledger of shard %u", j);
		}
	}
	return 0;
}

static void detach_others(const struct eng_recover_in *in, struct shm_ledger *l)
{
	for (uint32_t j = 0; j < in->nshards; j++)
		if (j != in->shard)
			shm_ledger_detach(&l[j]);
}

/* The ledger gets this shard's durable part, whole. */
static int write_ledger(const struct eng_recover_in *in, struct shmex_error *e)
{
	shm_ledger_clear(in->ledger);
	const struct shm_ledger_part *p;
	uint64_t n = eng_cash_parts(in->parts, &p);
	for (uint64_t i = 0; i < n; i++) {
		int rc = shm_ledger_add(in->ledger, p[i].account, p[i].deposit,
					p[i].balance, p[i].reserved);
		if (rc)
			return shmex_error_set(e, rc, "ledger of shard %u: %s", in->shard,
					       shmex_strerror(rc));
	}
	return 0;
}

int eng_recover_full(const struct eng_recover_in *in, struct eng_recover_stats *st,
		     struct shmex_error *e)
{
	memset(st, 0, sizeof(*st));
	const struct shm_ledger_part *p;
	uint64_t n = eng_cash_parts(in->parts, &p);
	/* Phase 1: the home accounts this shard created, with their
	 * deposits and nothing else yet.  Every part of a home account is
	 * one it created (an account has no cash moves before its home
	 * shard creates it), also one created with nothing in it. */
	for (uint64_t i = 0; i < n; i++) {
		uint32_t home = shm_shard_of_account(p[i].account, in->nshards);
		if (p[i].deposit == 0 && home != in->shard)
			continue;
		if (home != in->shard)
			return shmex_error_set(e, SHMEX_ERECOVERY,
					       "account %" PRIu64 " has "
					       "a deposit in shard %u's journal, but "
					       "its home is shard %u",
					       p[i].account, in->shard, home);
		uint32_t idx;
		int rc = shm_accounts_add(in->accounts, p[i].account, p[i].deposit, &idx);
		if (rc)
			return shmex_error_set(e, rc,
					       "recreating account %" PRIu64 ": %s",
					       p[i].account, shmex_strerror(rc));
		st->accounts_created++;
	}
	/* LG5: release; pairs with every other matcher's LG6 below. */
	store_release(&in->ledger->hdr->phase, (uint32_t)SHM_LEDGER_PHASE_ACCOUNTS);

	struct shm_ledger *others = eng_alloc_calloc(in->nshards, sizeof(*others));
	if (!others)
		return shmex_error_set(e, -ENOMEM, "out of memory");
	int rc = attach_others(in, others, e);
	if (rc) {
		eng_alloc_free(others);
		return rc;
	}
	uint64_t deadline =
		shm_clock_ns(CLOCK_MONOTONIC) + (uint64_t)in->timeout_ms * 1000000u;
	for (uint32_t j = 0; j < in->nshards && !rc; j++) {
		if (j == in->shard)
			continue;
		/* LG6: acquire; pairs with shard j's LG5: its accounts exist. */
		while (load_acquire(&others[j].hdr->phase) < SHM_LEDGER_PHASE_ACCOUNTS) {
			if (shm_instance_stopping(in->inst)) {
				rc = shmex_error_set(e, -EINTR,
						     "stopped while waiting for "
						     "shard %u",
						     j);
				break;
			}
			if (shm_clock_ns(CLOCK_MONOTONIC) > deadline) {
				rc = shmex_error_set(e, SHMEX_ETIMEDOUT,
						     "shard %u did not "
						     "recover its accounts "
						     "within %u ms",
						     j, in->timeout_ms);
				break;
			}
			nap_us(200);
		}
	}
	detach_others(in, others);
	eng_alloc_free(others);
	if (rc)
		return rc;
	/* Phase 2: this shard's part of every account. */
	for (uint64_t i = 0; i < n; i++) {
		if (p[i].balance == 0 && p[i].reserved == 0)
			continue;
		uint32_t idx;
		rc = shm_accounts_find(in->accounts, p[i].account, &idx);
		if (rc)
			return shmex_error_set(
				e, SHMEX_ERECOVERY,
				"account %" PRIu64 " has cash "
				"moves in shard %u's journal but its home "
				"shard %u did not recreate it",
				p[i].account, in->shard,
				shm_shard_of_account(p[i].account, in->nshards));
		rc = shm_accounts_add_delta(in->accounts, idx, p[i].balance,
					    p[i].reserved);
		if (rc)
			return shmex_error_set(e, rc, "account %" PRIu64 ": %s",
					       p[i].account, shmex_strerror(rc));
	}
	rc = write_ledger(in, e);
	if (rc)
		return rc;
	store_release(&in->ledger->hdr->phase,
		      (uint32_t)SHM_LEDGER_PHASE_READY); /* LG5 */
	return 0;
}

/* Whether the durable part holds the creation of account id. */
static bool created_here(void *ctx, uint64_t id)
{
	struct shm_ledger_part p;
	eng_cash_part(ctx, id, &p);
	return p.deposit != 0;
}

int eng_recover_restart(const struct eng_recover_in *in, struct eng_recover_stats *st,
			struct shmex_error *e)
{
	memset(st, 0, sizeof(*st));
	/* Creations our predecessor claimed: finished when durable, else
	 * abandoned (no other shard can have used them: unpublished). */
	int rc = shm_accounts_recover(in->accounts, in->shard, in->nshards, created_here,
				      (void *)in->parts, &st->abandoned);
	if (rc)
		return shmex_error_set(e, rc, "accounts of shard %u: %s", in->shard,
				       shmex_strerror(rc));
	struct shm_ledger *others = eng_alloc_calloc(in->nshards, sizeof(*others));
	if (!others)
		return shmex_error_set(e, -ENOMEM, "out of memory");
	rc = attach_others(in, others, e);
	if (rc) {
		eng_alloc_free(others);
		return rc;
	}
	struct shm_control_sh *ctl = in->inst->ctl;
	uint64_t t0 = shm_clock_ns(CLOCK_MONOTONIC);
	uint64_t deadline = t0 + (uint64_t)in->timeout_ms * 1000000u;
	/* FZ1: take the freeze (one restart at a time). */
	for (;;) {
		uint32_t none = 0;
		if (__atomic_compare_exchange_n(&ctl->freeze_owner, &none, in->shard + 1,
						false, __ATOMIC_ACQ_REL,
						__ATOMIC_ACQUIRE))
			break;
		if (shm_clock_ns(CLOCK_MONOTONIC) > deadline) {
			rc = shmex_error_set(e, SHMEX_ERECOVERY,
					     "the cash freeze is held by "
					     "shard %u",
					     none - 1);
			goto out;
		}
		nap_us(200);
	}
	/* FZ4: release; pairs with FZ5 in eng_recover_freeze_point. */
	uint32_t gen = load_relaxed(&ctl->freeze_gen) + 1;
	store_release(&ctl->freeze_gen, gen);
	for (uint32_t j = 0; j < in->nshards; j++) {
		struct shm_doorbell_sh *db = shm_instance_shard_doorbell(in->inst, j);
		if (db && j != in->shard)
			shm_doorbell_ring(db);
	}
	for (uint32_t j = 0; j < in->nshards; j++) {
		if (j == in->shard)
			continue;
		/* LG2: acquire; pairs with shard j's LG1: every cash step it
		 * made is applied and in its ledger, and it makes no more. */
		while (load_acquire(&others[j].hdr->freeze_ack) != gen) {
			if (!member_alive(in->inst, j)) {
				rc = shmex_error_set(e, SHMEX_ERECOVERY,
						     "the matcher of shard %u "
						     "is not running: only a "
						     "restart of the whole "
						     "exchange recovers exactly",
						     j);
				goto out_release;
			}
			if (shm_clock_ns(CLOCK_MONOTONIC) > deadline) {
				rc = shmex_error_set(e, SHMEX_ERECOVERY,
						     "the matcher of shard %u "
						     "did not pause within %u "
						     "ms",
						     j, in->timeout_ms);
				goto out_release;
			}
			nap_us(50);
		}
	}
	/* Every other shard is paused: the accounts and their ledgers hold
	 * still.  Correct each account by durable - applied. */
	for (uint32_t i = 0; i < in->accounts->nslots; i++) {
		struct shm_account_view v;
		if (shm_accounts_read_slot(in->accounts, i, &v) != 0)
			continue;
		shm_cash_t ab = v.balance - v.deposited, ar = v.reserved;
		for (uint32_t j = 0; j < in->nshards; j++) {
			if (j == in->shard)
				continue;
			struct shm_ledger_part op;
			shm_ledger_get(&others[j], v.id, &op);
			ab -= op.balance;
			ar -= op.reserved;
		}
		struct shm_ledger_part d;
		eng_cash_part(in->parts, v.id, &d);
		shm_cash_t cb = d.balance - ab, cr = d.reserved - ar;
		if (cb == 0 && cr == 0)
			continue;
		rc = shm_accounts_add_delta(in->accounts, i, cb, cr);
		if (rc) {
			shmex_error_set(e, rc, "account %" PRIu64 ": %s", v.id,
					shmex_strerror(rc));
			goto out_release;
		}
		st->corrected++;
	}
	rc = write_ledger(in, e);
out_release:
	/* FZ2: release; the others see every correction above when they
	 * see the freeze end (FZ3). */
	store_release(&ctl->freeze_owner, (uint32_t)0);
	st->freeze_ns = shm_clock_ns(CLOCK_MONOTONIC) - t0;
out:
	detach_others(in, others);
	eng_alloc_free(others);
	if (!rc)
		store_release(&in->ledger->hdr->phase, (uint32_t)SHM_LEDGER_PHASE_READY);
	return rc;
}

bool eng_recover_freeze_point(struct shm_instance *inst, struct shm_ledger *ledger,
			      uint32_t shard, const int *stop)
{
	struct shm_control_sh *ctl = inst->ctl;
	/* FZ3: acquire; pairs with FZ1/FZ2. */
	uint32_t owner = load_acquire(&ctl->freeze_owner);
	if (owner == 0 || owner == shard + 1)
		return false;
	bool paused = false;
	for (;;) {
		owner = load_acquire(&ctl->freeze_owner); /* FZ3 */
		if (owner == 0 || load_relaxed(stop))
			return paused;
		uint32_t gen = load_acquire(&ctl->freeze_gen); /* FZ5 */
		/* LG1: release; pairs with the owner's LG2.  Every cash step
		 * of ours happened before this store. */
		if (load_relaxed(&ledger->hdr->freeze_ack) != gen)
			store_release(&ledger->hdr->freeze_ack, gen);
		paused = true;
		nap_us(50);
	}
}
