/*
 * The quiescent checks of shmex-stress.  Called by the parent while every
 * client is paused or dead and the matchers have applied everything in
 * their rings, so the shared memory is one state that every reply was
 * given in (or before).  Fresh handles every time: a whole-exchange
 * restart replaces the regions.
 *
 * What is checked, each against an independent account of the same fact:
 *
 *  1. every book passes shm_snap_book_check (not crossed, levels and
 *     orders add up);
 *  2. cash: each account's reserved == the sum of open x limit of its
 *     resting buys (from the books); Σ balance + Σ reserved == Σ
 *     deposited == the region's total; each account's deposit is the
 *     balance of the create it was told succeeded, or of one whose outcome
 *     was never heard; no account exists that every attempt was told
 *     failed;
 *  3. shares: each position's reserved == the open of its resting sells;
 *     per symbol Σ amount + Σ reserved == created, and created lies
 *     between what the setup and the acknowledged creates made and that
 *     plus the creates whose outcome is unknown;
 *  4. every order a client was told is open exists with its account,
 *     side, limit and amount, and open + executed + canceled == amount;
 *  5. every fill appears on both orders with the same shares, price,
 *     time and event, maker on one side, taker on the other;
 *  6. every status or cancel reply is a past of the final state: its
 *     fills are the first fills of the order, the newest one identical;
 *     a canceled quantity is final.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "shm/shm_accounts.h"
#include "shm/shm_atomic.h"
#include "shm/shm_dec.h"
#include "shm/shm_error.h"
#include "shm/shm_msg.h"
#include "shm/shm_positions.h"
#include "shm/shm_shard.h"
#include "shm/shm_history.h"
#include "shm/shm_snap.h"
#include "tests/stress/stress.h"

#define MAX_FILLS 4096
#define ORDER_MAP (1u << 20) /* open-addressing set of checked fills */

static int nviol;

#define VIOL(...)                          \
	do {                               \
		st_violation(__VA_ARGS__); \
		nviol++;                   \
	} while (0)

static int sym_index(const char *name)
{
	for (int i = 0; i < ST_NSYMS; i++)
		if (!strcmp(st->syms[i], name))
			return i;
	return -1;
}

/* Holds the books say each account should have. */
static int64_t hold_cash[ST_MAX_ACC];
static int64_t hold_sh[ST_MAX_ACC][ST_NSYMS];

static int check_books(struct shm_snap *rd, uint64_t *orders_live)
{
	struct shm_snap_book b;
	memset(&b, 0, sizeof(b));
	for (int k = 0; k < ST_NSHARDS; k++) {
		uint32_t n = shm_snap_nsymbols(&rd[k]);
		for (uint32_t s = 0; s < n; s++) {
			int rc = SHMEX_EBUSY;
			for (int t = 0; t < 100 && rc == SHMEX_EBUSY; t++) {
				rc = shm_snap_book_read(&rd[k], s, 0, true, &b);
				if (rc == SHMEX_EBUSY)
					usleep(1000);
			}
			if (rc != 0) {
				VIOL("shard %d symbol %u: book read at quiescence: %s", k,
				     s, shmex_strerror(rc));
				continue;
			}
			char why[256];
			if (shm_snap_book_check(&b, &rd[k].view, why, sizeof(why)) != 0)
				VIOL("shard %d symbol %s: %s", k, b.name, why);
			int si = sym_index(b.name);
			if (si < 0 || shm_shard_of_symbol(b.name, strlen(b.name),
							  ST_NSHARDS) != (uint32_t)k) {
				VIOL("shard %d has symbol '%s' that nobody created there",
				     k, b.name);
				continue;
			}
			for (size_t i = 0; i < b.nord; i++) {
				const struct shm_snap_book_order *o = &b.ords[i];
				if (o->account >= ST_MAX_ACC) {
					VIOL("order %llu of unknown account %llu",
					     (unsigned long long)o->id,
					     (unsigned long long)o->account);
					continue;
				}
				(*orders_live)++;
				if (o->side == SHM_SIDE_BUY) {
					int64_t c;
					if (shm_dec_cash(o->open, o->price, &c) != 0 ||
					    __builtin_add_overflow(
						    hold_cash[o->account], c,
						    &hold_cash[o->account]))
						VIOL("order %llu: hold overflows",
						     (unsigned long long)o->id);
				} else {
					hold_sh[o->account][si] += o->open;
				}
			}
		}
	}
	shm_snap_book_free(&b);
	return 0;
}

/* ---- what the clients were told about creates ---- */

struct acct_know {
	int64_t ok_balance; /* the acknowledged create's balance */
	int nok;
	int64_t maybe[16]; /* balances of attempts never answered */
	int nmaybe;
	int nno;
};
static struct acct_know know[ST_MAX_ACC];
static int64_t sh_ok[ST_NSYMS], sh_maybe[ST_NSYMS];

/* Outcome of each attempt, by serial: resolved by a later OK/NO record
 * of the same slot (records of one slot are in order). */
static void gather_creates(void)
{
	memset(know, 0, sizeof(know));
	memset(sh_ok, 0, sizeof(sh_ok));
	memset(sh_maybe, 0, sizeof(sh_maybe));
	for (int s = 0; s < ST_MAX_CLIENTS; s++) {
		const struct st_client_sh *c = &st->c[s];
		uint64_t n = load_acquire(&c->nlog);
		if (!c->log)
			continue;
		for (uint64_t i = 0; i < n; i++) {
			const struct st_rec *r = &c->log[i];
			if (r->type != R_ACCT_TRY && r->type != R_SH_TRY)
				continue;
			/* Its outcome: the next record with its serial. */
			int out = 0;
			for (uint64_t j = i + 1; j < n && j < i + 64; j++) {
				const struct st_rec *q = &c->log[j];
				if (q->id != r->id)
					continue;
				if (q->type == R_ACCT_OK || q->type == R_SH_OK)
					out = 1;
				else if (q->type == R_ACCT_NO || q->type == R_SH_NO)
					out = -1;
				if (out)
					break;
			}
			if (r->type == R_ACCT_TRY) {
				struct acct_know *k = &know[r->account];
				if (out > 0) {
					k->nok++;
					k->ok_balance = r->a;
				} else if (out < 0) {
					k->nno++;
				} else if (k->nmaybe < 16) {
					k->maybe[k->nmaybe++] = r->a;
				}
			} else {
				if (out > 0)
					sh_ok[r->sym] += r->a;
				else if (out == 0)
					sh_maybe[r->sym] += r->a;
			}
		}
	}
}

static void check_cash(struct shm_accounts *a, const struct st_check_in *in)
{
	shm_cash_t sum_bal = 0, sum_res = 0, sum_dep = 0;
	static bool seen[ST_MAX_ACC];
	memset(seen, 0, sizeof(seen));
	for (uint32_t i = 0; i < a->nslots; i++) {
		struct shm_account_view v;
		if (shm_accounts_read_slot(a, i, &v) != 0)
			continue;
		sum_bal += v.balance;
		sum_res += v.reserved;
		sum_dep += v.deposited;
		if (v.id >= ST_MAX_ACC) {
			VIOL("account %llu exists; nobody created it",
			     (unsigned long long)v.id);
			continue;
		}
		seen[v.id] = true;
		if (v.reserved != hold_cash[v.id])
			VIOL("account %llu: reserved %lld, its resting buys hold %lld",
			     (unsigned long long)v.id, (long long)v.reserved,
			     (long long)hold_cash[v.id]);
		if (v.balance < 0)
			VIOL("account %llu: balance %lld", (unsigned long long)v.id,
			     (long long)v.balance);
		const struct acct_know *k = &know[v.id];
		int64_t want = in->setup_cash[v.id];
		if (want) {
			if (v.deposited != want)
				VIOL("setup account %llu: deposited %lld, created with %lld",
				     (unsigned long long)v.id, (long long)v.deposited,
				     (long long)want);
			if (k->nok)
				VIOL("setup account %llu created again",
				     (unsigned long long)v.id);
			continue;
		}
		if (k->nok > 1)
			VIOL("account %llu: %d creates were told they succeeded",
			     (unsigned long long)v.id, k->nok);
		if (k->nok) {
			if (v.deposited != k->ok_balance)
				VIOL("account %llu: deposited %lld, its acknowledged create "
				     "had %lld",
				     (unsigned long long)v.id, (long long)v.deposited,
				     (long long)k->ok_balance);
			continue;
		}
		bool found = false;
		for (int m = 0; m < k->nmaybe; m++)
			found |= k->maybe[m] == v.deposited;
		if (!found)
			VIOL("account %llu exists with deposit %lld: no create that could "
			     "have made it (%d refused, %d unanswered)",
			     (unsigned long long)v.id, (long long)v.deposited, k->nno,
			     k->nmaybe);
	}
	for (uint64_t id = 0; id < ST_MAX_ACC; id++)
		if (!seen[id] && (know[id].nok || in->setup_cash[id]))
			VIOL("account %llu was created (acknowledged) and is gone",
			     (unsigned long long)id);
	struct shm_accounts_totals t;
	if (shm_accounts_totals(a, &t) != 0)
		VIOL("accounts totals overflow");
	else if (sum_bal + sum_res != sum_dep || sum_dep != t.total_deposited)
		VIOL("cash not conserved: balances %lld + reserved %lld = %lld, deposits %lld, "
		     "region total %lld",
		     (long long)sum_bal, (long long)sum_res,
		     (long long)(sum_bal + sum_res), (long long)sum_dep,
		     (long long)t.total_deposited);
	printf("  cash: %" PRIu64
	       " accounts, balances %.2f + reserved %.2f = deposits %.2f\n",
	       t.accounts, (double)sum_bal / SHM_CASH_ONE, (double)sum_res / SHM_CASH_ONE,
	       (double)sum_dep / SHM_CASH_ONE);
}

static void check_shares(struct shm_positions *p, const struct st_check_in *in)
{
	/* 128-bit like the positions themselves (printed as long long: the
	 * stress workload's totals are far below 2^63). */
	shm_shares_t amount[ST_NSYMS] = {0}, reserved[ST_NSYMS] = {0};
	for (int k = 0; k < ST_NSHARDS; k++) {
		for (uint32_t i = 0; i < p[k].pos_slots; i++) {
			struct shm_position_view v;
			if (shm_positions_read_slot(&p[k], i, &v) != 0)
				continue;
			int si = sym_index(v.symbol);
			if (si < 0 || v.account >= ST_MAX_ACC) {
				VIOL("position of account %llu in unknown symbol '%.16s'",
				     (unsigned long long)v.account, v.symbol);
				continue;
			}
			amount[si] += v.amount;
			reserved[si] += v.reserved;
			if (v.reserved != hold_sh[v.account][si])
				VIOL("position %llu %s: reserved %lld, its resting sells hold %lld",
				     (unsigned long long)v.account, v.symbol,
				     (long long)v.reserved,
				     (long long)hold_sh[v.account][si]);
			if (v.amount < 0)
				VIOL("position %llu %s: amount %lld",
				     (unsigned long long)v.account, v.symbol,
				     (long long)v.amount);
		}
	}
	for (int s = 0; s < ST_NSYMS; s++) {
		int k = (int)shm_shard_of_symbol(st->syms[s], strlen(st->syms[s]),
						 ST_NSHARDS);
		char name[16] = {0};
		memcpy(name, st->syms[s], strlen(st->syms[s]));
		uint32_t sidx;
		struct shm_positions_totals t;
		if (shm_positions_symbol_find(&p[k], name, &sidx) != 0 ||
		    shm_positions_totals(&p[k], sidx, &t) != 0) {
			VIOL("symbol %s: no positions", st->syms[s]);
			continue;
		}
		int64_t lo = in->setup_shares[s] + sh_ok[s], hi = lo + sh_maybe[s];
		if (amount[s] + reserved[s] != t.created)
			VIOL("shares of %s not conserved: amounts %lld + reserved %lld != created "
			     "%lld",
			     st->syms[s], (long long)amount[s], (long long)reserved[s],
			     (long long)t.created);
		if (t.created < lo || t.created > hi)
			VIOL("shares of %s: created %lld, acknowledged creates make %lld (up to "
			     "%lld with unanswered ones)",
			     st->syms[s], (long long)t.created, (long long)lo,
			     (long long)hi);
	}
}

/* ---- orders and fills ---- */

static struct shm_snap_fill fills[MAX_FILLS], cfills[MAX_FILLS];

/* The order history of each shard (an acknowledged order that left the
 * book is read there, as a gateway would). */
static struct shm_history hist[ST_NSHARDS];
static const char *data_dir;

static int read_order(struct shm_snap *rd, uint64_t id, struct shm_snap_order *o,
		      struct shm_snap_fill *f, size_t *nf)
{
	uint32_t k = shm_shard_of_order(id, ST_NSHARDS);
	int rc = SHMEX_EBUSY;
	for (int t = 0; t < 100 && rc == SHMEX_EBUSY; t++) {
		rc = shm_snap_order(&rd[k], id, o, f, MAX_FILLS, nf);
		if (rc == SHMEX_ENOORDER) {
			struct shmex_error e = {0};
			rc = shm_history_lookup(&hist[k], &rd[k], data_dir, id, o, f,
						MAX_FILLS, nf, &e);
			if (rc && rc != SHMEX_ENOORDER && rc != SHMEX_EBUSY)
				VIOL("order %llu: %s", (unsigned long long)id, e.msg);
		}
	}
	return rc;
}

/* Fills already checked from the other side: ids of (order, event). */
static uint64_t *fillset;

static bool fill_seen(uint64_t order, uint64_t event)
{
	uint64_t key = order * UINT64_C(0x9e3779b97f4a7c15) ^ event;
	if (!key)
		key = 1;
	for (uint32_t h = (uint32_t)(key >> 40) & (ORDER_MAP - 1), n = 0; n < ORDER_MAP;
	     n++, h = (h + 1) & (ORDER_MAP - 1)) {
		if (fillset[h] == key)
			return true;
		if (!fillset[h]) {
			fillset[h] = key;
			return false;
		}
	}
	return true; /* full: stop checking */
}

static void check_fills(struct shm_snap *rd, const struct shm_snap_order *o, size_t nf,
			bool *recycled)
{
	for (size_t i = 0; i < nf; i++) {
		const struct shm_snap_fill *f = &fills[i];
		if (fill_seen(o->id, f->event))
			continue;
		struct shm_snap_order c;
		size_t cn = 0;
		int rc = read_order(rd, f->counterparty, &c, cfills, &cn);
		if (rc != 0) {
			VIOL("fill of order %llu (event %llu): counterparty %llu: %s",
			     (unsigned long long)o->id, (unsigned long long)f->event,
			     (unsigned long long)f->counterparty, shmex_strerror(rc));
			continue;
		}
		bool found = false;
		for (size_t j = 0; j < cn; j++) {
			const struct shm_snap_fill *g = &cfills[j];
			if (g->event != f->event || g->counterparty != o->id)
				continue;
			found = true;
			fill_seen(c.id, g->event);
			if (g->qty != f->qty || g->price != f->price ||
			    g->time_ns != f->time_ns || g->maker == f->maker ||
			    c.side == o->side || c.sym != o->sym)
				VIOL("fill event %llu: order %llu says %lld @ %lld t=%llu maker=%d, "
				     "order %llu says %lld @ %lld t=%llu maker=%d",
				     (unsigned long long)f->event,
				     (unsigned long long)o->id, (long long)f->qty,
				     (long long)f->price, (unsigned long long)f->time_ns,
				     f->maker, (unsigned long long)c.id,
				     (long long)g->qty, (long long)g->price,
				     (unsigned long long)g->time_ns, g->maker);
		}
		if (!found && c.nfills == cn)
			VIOL("fill event %llu of order %llu: counterparty %llu has no such fill",
			     (unsigned long long)f->event, (unsigned long long)o->id,
			     (unsigned long long)c.id);
	}
}

static void check_orders(struct shm_snap *rd, bool recycled, uint64_t *norders,
			 uint64_t *nreplies)
{
	for (int s = 0; s < ST_MAX_CLIENTS; s++) {
		const struct st_client_sh *c = &st->c[s];
		uint64_t n = load_acquire(&c->nlog);
		for (uint64_t i = 0; c->log && i < n; i++) {
			const struct st_rec *r = &c->log[i];
			if (r->type != R_OPENED && r->type != R_STATUS &&
			    r->type != R_CANCELED)
				continue;
			struct shm_snap_order o;
			size_t nf = 0;
			/* Every acknowledged order answers (from the book or
			 * from the history), recycled or not. */
			int rc = read_order(rd, r->id, &o, fills, &nf);
			if (rc != 0) {
				VIOL("order %llu of account %llu (client %d was told of it): %s",
				     (unsigned long long)r->id,
				     (unsigned long long)r->account, s,
				     shmex_strerror(rc));
				continue;
			}
			if (o.account != r->account)
				VIOL("order %llu: account %llu, the client's was %llu",
				     (unsigned long long)r->id,
				     (unsigned long long)o.account,
				     (unsigned long long)r->account);
			if (o.open + o.executed + o.cancelled != o.amount)
				VIOL("order %llu: open %lld + executed %lld + canceled %lld != "
				     "amount %lld",
				     (unsigned long long)r->id, (long long)o.open,
				     (long long)o.executed, (long long)o.cancelled,
				     (long long)o.amount);
			if (r->type == R_OPENED) {
				(*norders)++;
				if (o.side != r->side || o.price != r->b ||
				    o.amount != r->a || o.sym >= 0xffff)
					VIOL("order %llu: side %u limit %lld amount %lld, opened as "
					     "side %u limit %lld amount %lld",
					     (unsigned long long)r->id, o.side,
					     (long long)o.price, (long long)o.amount,
					     r->side, (long long)r->b, (long long)r->a);
				if (nf < o.nfills)
					continue; /* more fills than we read */
				int64_t sum = 0;
				for (size_t j = 0; j < nf; j++)
					sum += fills[j].qty;
				if (sum != o.executed)
					VIOL("order %llu: fills add up to %lld, executed %lld",
					     (unsigned long long)r->id, (long long)sum,
					     (long long)o.executed);
				check_fills(rd, &o, nf, &recycled);
				continue;
			}
			/* A status or cancel reply: a past of this state. */
			(*nreplies)++;
			if (r->nfills > o.nfills || r->c > o.executed || r->a < o.open)
				VIOL("order %llu: a reply said open %lld executed %lld (%u fills), "
				     "now open %lld executed %lld (%u fills)",
				     (unsigned long long)r->id, (long long)r->a,
				     (long long)r->c, r->nfills, (long long)o.open,
				     (long long)o.executed, o.nfills);
			else if (r->nfills && r->nfills <= nf) {
				const struct shm_snap_fill *f = &fills[r->nfills - 1];
				int64_t sum = 0;
				for (uint32_t j = 0; j < r->nfills; j++)
					sum += fills[j].qty;
				if (f->qty != r->last_qty || f->price != r->last_price ||
				    f->time_ns / 1000000000u != r->last_time ||
				    sum != r->c)
					VIOL("order %llu: reply's fill %u was %lld @ %lld t=%llu "
					     "(total %lld), the book's is %lld @ %lld t=%llu "
					     "(total %lld)",
					     (unsigned long long)r->id, r->nfills,
					     (long long)r->last_qty,
					     (long long)r->last_price,
					     (unsigned long long)r->last_time,
					     (long long)r->c, (long long)f->qty,
					     (long long)f->price,
					     (unsigned long long)(f->time_ns /
								  1000000000u),
					     (long long)sum);
			}
			if ((r->b || r->type == R_CANCELED) &&
			    (o.cancelled != r->b || o.open))
				VIOL("order %llu: a reply said %lld canceled; now canceled %lld, "
				     "open %lld",
				     (unsigned long long)r->id, (long long)r->b,
				     (long long)o.cancelled, (long long)o.open);
		}
	}
}

int st_check(const struct st_check_in *in)
{
	nviol = 0;
	data_dir = in->data_dir;
	memset(hold_cash, 0, sizeof(hold_cash));
	memset(hold_sh, 0, sizeof(hold_sh));
	struct shm_snap rd[ST_NSHARDS];
	struct shm_positions p[ST_NSHARDS];
	struct shm_accounts a;
	memset(rd, 0, sizeof(rd));
	memset(p, 0, sizeof(p));
	memset(&a, 0, sizeof(a));
	int opened = 0;
	for (int k = 0; k < ST_NSHARDS; k++) {
		int rc = shm_snap_open(&rd[k], st->instance, (unsigned)k);
		if (rc != 0) {
			VIOL("%s: shard %d book: %s", in->when, k, shmex_strerror(rc));
			goto out;
		}
		opened = k + 1;
		rc = shm_positions_attach(&p[k], st->instance, (uint32_t)k, SHM_RDONLY);
		if (rc != 0) {
			VIOL("%s: shard %d positions: %s", in->when, k,
			     shmex_strerror(rc));
			goto out;
		}
	}
	int rc = shm_accounts_attach(&a, st->instance, SHM_RDONLY);
	if (rc != 0) {
		VIOL("%s: accounts: %s", in->when, shmex_strerror(rc));
		goto out;
	}
	if (!fillset)
		fillset = calloc(ORDER_MAP, sizeof(*fillset));
	else
		memset(fillset, 0, ORDER_MAP * sizeof(*fillset));
	if (!fillset) {
		VIOL("%s: out of memory", in->when);
		goto out;
	}
	bool recycled = false;
	for (int k = 0; k < ST_NSHARDS; k++) {
		struct shm_snap_shard_stats ss;
		shm_snap_stats(&rd[k], &ss);
		recycled |= ss.orders_created > ss.cap_orders;
	}
	uint64_t live = 0, norders = 0, nreplies = 0;
	check_books(rd, &live);
	gather_creates();
	check_cash(&a, in);
	check_shares(p, in);
	check_orders(rd, recycled, &norders, &nreplies);
	printf("  orders: %" PRIu64 " acknowledged orders and %" PRIu64
	       " status/cancel replies checked against the books (%" PRIu64
	       " resting)%s\n",
	       norders, nreplies, live, recycled ? "; records were recycled" : "");
out:
	for (int k = 0; k < ST_NSHARDS; k++)
		shm_history_close(&hist[k]);
	if (a.sh)
		shm_accounts_detach(&a);
	for (int k = 0; k < opened; k++) {
		shm_snap_close(&rd[k]);
		if (p[k].sh)
			shm_positions_detach(&p[k]);
	}
	return nviol;
}
