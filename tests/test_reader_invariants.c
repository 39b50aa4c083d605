/*
 * reader_invariants_suite: reader PROCESSES check the book's invariants on
 * every snapshot while a writer churns through random requests, and the
 * reclamation promises hold against pinned, killed and surplus readers.
 *
 * The writer is the matching core (engine/eng_core) run in the test
 * process over a real book region (/shmex.<inst>.book.0), with a real
 * reader table (readers.0) and a control region (so `shmex-query` can
 * attach), doing exactly what the matcher's loop does after each batch:
 * advance the reader epoch, poll the safe epoch, reclaim.  Driving the core
 * directly lets the tests hold the writer at chosen points and look at its
 * pools; the `real_matcher` case runs the same reader checks against a
 * real `shmex-matcher` process fed through its request ring.
 *
 * Readers are forked before they attach and drop every inherited mapping,
 * so they read through their own read-only mapping of the book, the same
 * path as any reader process.  Each one loops: for every symbol a full-book
 * snapshot (every level, every order: shm_snap_book_read) checked by
 * shm_snap_book_check (levels strictly ordered, not crossed, level qty =
 * sum of its orders' open quantity, count = number of orders, each order
 * open + executed + cancelled == amount, the symbol's counters = the
 * sums), plus top of book, depth and the status of recently accepted
 * orders (shm_snap validates those: a crossed or unsorted stable snapshot,
 * or a status that does not add up, is SHMEX_EBADINDEX).  A snapshot that
 * kept changing (SHMEX_EBUSY) is counted, never judged.
 *
 * tests/stress_readers.c includes this file with RI_STRESS defined to run
 * the same machinery longer, with more readers and kill -9 torture.
 */
#include "tests/shmex_test.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "engine/eng_core.h"
#include "shm/shm_accounts.h"
#include "shm/shm_book.h"
#include "shm/shm_dec.h"
#include "shm/shm_error.h"
#include "shm/shm_instance.h"
#include "shm/shm_msg.h"
#include "shm/query/qry.h"
#include "shm/shm_snap.h"
#include "shm/shm_rcu.h"
#include "shm/shm_region.h"
#include "shm/shm_ring.h"

#define RI_MAX_READERS 24
#define RI_RECENT 4096u /* recently accepted ids readers query */
#define RI_IDS 8192u    /* ids the writer may cancel or modify */
#define RI_MAX_SYMS 16
#define RI_PIN_LEVELS 512
#define RI_PIN_ORDERS 2048
#define RI_BATCH 32u /* requests per matcher loop turn */

/* --- memory shared by the test and its reader processes ----------------------
 *
 * Test handshakes only (not part of the exchange): flags are written with
 * release [QY3] and read with acquire [QY4] so that what precedes a flag is
 * visible to whoever sees it; counters are relaxed and read after the
 * process that wrote them was reaped (waitpid orders them) or after the
 * flag that follows them. */

struct ri_stat {
	uint32_t ready; /* registered and reading (release) */
	uint32_t pad;
	uint64_t snaps;    /* stable full-book snapshots checked */
	uint64_t levels;   /* levels checked in them */
	uint64_t orders;   /* orders checked in them */
	uint64_t statuses; /* order statuses checked */
	uint64_t tops;     /* tops and depths checked */
	uint64_t busy;     /* snapshots that kept changing */
	uint64_t lost;     /* reader slots lost (re-registered) */
	uint64_t violations;
	char first[320]; /* the first violation */
};

/* The pinned reader's record of what it saw. */
struct ri_pin {
	uint32_t phase; /* writer -> reader: 1 pinned, 2 leave, 3 exit */
	uint32_t state; /* reader -> writer: 1 recorded, 2 left */
	uint64_t epoch; /* the section's epoch */
	uint32_t nlev, nord;
	uint32_t lev[RI_PIN_LEVELS];
	int64_t lev_price[RI_PIN_LEVELS];
	uint32_t lev_sym[RI_PIN_LEVELS];
	uint8_t lev_side[RI_PIN_LEVELS];
	uint8_t lev_retired[RI_PIN_LEVELS]; /* the reader saw it RETIRED */
	uint8_t ord_done[RI_PIN_ORDERS];    /* the reader saw it DONE */
	uint64_t lev_retire_epoch[RI_PIN_LEVELS];
	uint32_t ord[RI_PIN_ORDERS];
	uint64_t ord_id[RI_PIN_ORDERS];
	uint64_t checks;      /* passes over the record while pinned */
	uint64_t saw_retired; /* recorded levels seen RETIRED while pinned */
	uint64_t saw_done;    /* recorded orders seen DONE while pinned */
	uint64_t violations;
	char first[320];
};

struct ri_ctl {
	uint32_t stop; /* writer -> readers: finish (release) */
	uint32_t nsyms;
	uint64_t nrecent; /* ids published in recent[] (relaxed) */
	uint64_t recent[RI_RECENT];
	struct ri_stat r[RI_MAX_READERS];
	struct ri_pin pin;
	/* Cleanup after a failed test (the parent's unchecked teardown). */
	uint32_t ninst;
	char inst[8][64];
};

static struct ri_ctl *ctl;
static char inst[64];
static uint64_t ri_round; /* varies the writers' random flows */

static void ctl_setup(void)
{
	ctl = mmap(NULL, sizeof(*ctl), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
		   -1, 0);
	ck_assert(ctl != MAP_FAILED);
	memset(ctl, 0, sizeof(*ctl));
}

static void ctl_teardown(void)
{
	/* Readers die with their test process (PDEATHSIG); names remain. */
	for (uint32_t i = 0; i < ctl->ninst && i < 8; i++)
		test_cleanup_instance(ctl->inst[i]);
	munmap(ctl, sizeof(*ctl));
	ctl = NULL;
}

static void ctl_reset(void)
{
	uint32_t n = ctl->ninst;
	char names[8][64];
	memcpy(names, ctl->inst, sizeof(names));
	memset(ctl, 0, sizeof(*ctl));
	ctl->ninst = n;
	memcpy(ctl->inst, names, sizeof(names));
}

static void new_instance(void)
{
	test_instance(inst, sizeof(inst));
	if (ctl->ninst < 8)
		snprintf(ctl->inst[ctl->ninst++], sizeof(ctl->inst[0]), "%s", inst);
}

static uint64_t rnd(uint64_t *s)
{
	/* xorshift64* */
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return *s * UINT64_C(2685821657736338717);
}

/* --- the writer: the core over a real book region ------------------------- */

struct ri_writer {
	struct shm_instance h; /* control + rings, for shmex-query */
	struct shm_region reg; /* book.0, writable */
	struct eng_core *b;
	struct shm_rcu w; /* readers.0, writer role */
	uint32_t nsyms;
	uint32_t sym[RI_MAX_SYMS];
	uint64_t seq;
	uint64_t rng;
	uint64_t ids[RI_IDS]; /* accepted ids, ring */
	uint64_t owner[RI_IDS];
	uint64_t nids;
	uint32_t target_live; /* orders the mix aims to keep resting */
	/* Counters. */
	uint64_t requests, accepted, full, other_rejects, batches;
};

static void writer_open(struct ri_writer *W, uint32_t levels, uint32_t orders,
			uint32_t fills, uint32_t nslots, uint32_t nsyms)
{
	struct shm_instance_cfg cfg;
	test_instance_cfg(&cfg, 1, 1, 0);
	struct eng_core_cfg bc = {
		.caps = {RI_MAX_SYMS, levels, orders, fills}, .shard = 0, .nshards = 1};
	memset(W, 0, sizeof(*W));
	W->rng = UINT64_C(0x9e3779b97f4a7c15) ^ ((uint64_t)getpid() << 16) ^ ++ri_round;
	W->target_live = orders / 4;
	ck_assert_int_eq(shm_instance_create(inst, &cfg, &W->h), 0);
	ck_assert_int_eq(shm_rcu_create(&W->w, inst, 0, nslots, 0600), 0);
	ck_assert_uint_gt(eng_core_bytes(&bc), 0);
	ck_assert_int_eq(shm_book_region_create(&W->reg, inst, &bc.caps, 0, 1, 0), 0);
	ck_assert_int_eq(eng_core_init(&W->b, shm_region_body(&W->reg),
				       shm_region_body_size(&W->reg), &bc, NULL, NULL),
			 0);
	ck_assert(nsyms <= RI_MAX_SYMS);
	for (uint32_t i = 0; i < nsyms; i++) {
		char name[8];
		int n = snprintf(name, sizeof(name), "S%u", i);
		ck_assert_int_eq(eng_core_symbol_add(W->b, name, (size_t)n, &W->sym[i]),
				 0);
	}
	W->nsyms = nsyms;
	ctl->nsyms = nsyms;
	shm_region_publish(&W->reg);
}

static void writer_close(struct ri_writer *W)
{
	eng_core_destroy(W->b);
	shm_rcu_detach(&W->w);
	shm_region_detach(&W->reg);
	shm_instance_detach(&W->h);
	test_cleanup_instance(inst);
	ck_assert_int_eq(test_count_objects(inst), 0);
}

static struct eng_req writer_req(struct ri_writer *W)
{
	struct eng_req r;
	memset(&r, 0, sizeof(r));
	r.seq = ++W->seq;
	r.time_ns = UINT64_C(1700000000000000000) + W->seq * 1000;
	r.epoch = shm_rcu_epoch(&W->w);
	return r;
}

static void writer_result(struct ri_writer *W, int rc)
{
	W->requests++;
	if (rc == SHMEX_EBOOKFULL) {
		W->full++;
		return;
	}
	/* A target that filled, was cancelled or was recycled meanwhile. */
	if (rc == SHMEX_ENOTOPEN || rc == SHMEX_ENOORDER) {
		W->other_rejects++;
		return;
	}
	ck_assert_msg(rc == 0, "request %" PRIu64 ": %s", W->seq, shmex_strerror(rc));
}

/* One random request: new orders around a mid price that crosses often,
 * cancels and modifies of recent ids; more cancels when the book is big. */
static void writer_one(struct ri_writer *W)
{
	struct eng_req r = writer_req(W);
	uint64_t x = rnd(&W->rng);
	uint32_t live = load_relaxed(&eng_core_view(W->b)->hdr->orders_live);
	unsigned cancel_pct = live > W->target_live ? 45 : 20;
	unsigned p = (unsigned)(x % 100);
	x >>= 8;
	if (p >= 100 - cancel_pct - 10 && W->nids) {
		uint64_t k = (x >> 8) % (W->nids < RI_IDS ? W->nids : RI_IDS);
		r.order_id = W->ids[k];
		r.account = W->owner[k];
		if (p >= 100 - 10) {
			r.price = 990 + (int64_t)((x >> 24) % 21);
			r.qty = (int64_t)((x >> 40) % 60);
			writer_result(W, eng_core_modify(W->b, &r));
		} else {
			writer_result(W, eng_core_cancel(W->b, &r));
		}
		return;
	}
	r.account = 1 + (x % 8);
	r.sym = W->sym[(x >> 4) % W->nsyms];
	r.side = (uint8_t)((x >> 12) & 1);
	unsigned t = (unsigned)((x >> 13) % 40);
	r.tif = t == 0 ? SHM_TIF_IOC : t == 1 ? SHM_TIF_FOK : SHM_TIF_GTC;
	/* Buys a little below, sells a little above 1000: they cross often. */
	int64_t off = (int64_t)((x >> 20) % 16);
	r.price = r.side == SHM_SIDE_BUY ? 994 + off : 991 + off;
	r.qty = 1 + (int64_t)((x >> 32) % 50);
	uint64_t id = 0;
	int rc = eng_core_submit(W->b, &r, &id);
	writer_result(W, rc);
	if (rc == 0) {
		W->accepted++;
		W->ids[W->nids % RI_IDS] = id;
		W->owner[W->nids % RI_IDS] = r.account;
		W->nids++;
		/* Relaxed: readers only use it as a candidate id. */
		uint64_t n = load_relaxed(&ctl->nrecent);
		store_relaxed(&ctl->recent[n % RI_RECENT], id);
		store_relaxed(&ctl->nrecent, n + 1);
	}
}

/* One matcher loop turn: a batch, then advance, poll, reclaim. */
static void writer_batch(struct ri_writer *W, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		writer_one(W);
	(void)shm_rcu_advance(&W->w);
	(void)eng_core_reclaim(W->b, shm_rcu_safe_epoch(&W->w));
	W->batches++;
	if (W->batches % 512 == 0) {
		char why[256];
		int rc = eng_core_check(W->b, why, sizeof(why));
		ck_assert_msg(rc == 0, "writer-side check: %s", why);
	}
}

/* Runs batches until `requests` more were applied. */
static void writer_run(struct ri_writer *W, uint64_t requests)
{
	uint64_t until = W->requests + requests;
	while (W->requests < until)
		writer_batch(W, RI_BATCH);
}

/* --- reader processes ----------------------------------------------------- */

static void violation(char *first, size_t len, uint64_t *count, const char *f, ...)
	__attribute__((format(printf, 4, 5)));

static void violation(char *first, size_t len, uint64_t *count, const char *f, ...)
{
	if ((*count)++ == 0) {
		va_list ap;
		va_start(ap, f);
		vsnprintf(first, len, f, ap);
		va_end(ap);
	}
}

/* Drops every mapping inherited from the writer: the child reads only
 * through what it attaches itself (read-only book). */
static void child_drop(struct ri_writer *W)
{
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (!W)
		return;
	munmap(W->reg.base, W->reg.map_size);
	munmap(W->w.region.base, W->w.region.map_size);
	munmap(W->h.control.base, W->h.control.map_size);
	munmap(W->h.rings.base, W->h.rings.map_size);
}

static void check_statuses(struct shm_snap *rd, struct ri_stat *st, uint64_t *rng)
{
	struct shm_snap_order o;
	struct shm_snap_fill fills[8];
	size_t nf;
	uint64_t n = load_relaxed(&ctl->nrecent);
	for (int i = 0; i < 8 && n; i++) {
		uint64_t k = rnd(rng) % (n < RI_RECENT ? n : RI_RECENT);
		uint64_t id = load_relaxed(&ctl->recent[k]);
		int rc = shm_snap_order(rd, id, &o, fills, 8, &nf);
		if (rc == SHMEX_ENOORDER || rc == SHMEX_EBUSY) {
			st->busy += rc == SHMEX_EBUSY;
			continue;
		}
		if (rc || o.id != id || o.open + o.executed + o.cancelled != o.amount)
			violation(st->first, sizeof(st->first), &st->violations,
				  "order %" PRIu64 ": %s (open %" PRId64
				  " executed %" PRId64 " cancelled %" PRId64
				  " amount %" PRId64 ")",
				  id, rc ? shmex_strerror(rc) : "inconsistent", o.open,
				  o.executed, o.cancelled, o.amount);
		else
			st->statuses++;
	}
}

static void check_top_depth(struct shm_snap *rd, uint32_t sym, struct ri_stat *st)
{
	struct shm_snap_top t;
	struct shm_snap_level bids[8], asks[8];
	struct shm_snap_depth d = {.bids = bids, .asks = asks, .max = 8};
	int rc = shm_snap_top(rd, sym, &t);
	if (rc == 0 && t.has_bid && t.has_ask && t.bid_price >= t.ask_price)
		rc = SHMEX_EINTERNAL;
	if (rc == 0)
		rc = shm_snap_depth(rd, sym, &d);
	if (rc == SHMEX_EBUSY) {
		st->busy++;
		return;
	}
	if (rc)
		violation(st->first, sizeof(st->first), &st->violations,
			  "symbol %u top/depth: %s", sym, shmex_strerror(rc));
	else
		st->tops++;
}

/* The checking loop of reader process `idx` (never returns). */
static void reader_main(struct ri_writer *W, int idx)
{
	struct ri_stat *st = &ctl->r[idx];
	struct shm_snap rd;
	struct shm_snap_book s;
	char why[256];
	uint64_t rng = UINT64_C(0x2545f4914f6cdd1d) + (uint64_t)idx * 7919u;
	child_drop(W);
	memset(&s, 0, sizeof(s));
	int rc = shm_snap_open(&rd, inst, 0);
	if (rc) {
		violation(st->first, sizeof(st->first), &st->violations, "open: %s",
			  rd.err.msg);
		_exit(2);
	}
	store_release(&st->ready, 1u);      /* [QY3] test handshake; pairs with QY4 */
	while (!load_acquire(&ctl->stop)) { /* [QY4] pairs with QY3 (stop) */
		for (uint32_t sym = 0; sym < ctl->nsyms; sym++) {
			rc = shm_snap_book_read(&rd, sym, 0, true, &s);
			if (rc == SHMEX_EBUSY) {
				st->busy++;
				continue;
			}
			if (rc == 0)
				rc = shm_snap_book_check(&s, &rd.view, why, sizeof(why));
			else
				snprintf(why, sizeof(why), "snapshot: %s",
					 shmex_strerror(rc));
			if (rc) {
				violation(st->first, sizeof(st->first), &st->violations,
					  "%s", why);
				continue;
			}
			st->snaps++;
			st->levels += s.nlev;
			st->orders += s.nord;
			check_top_depth(&rd, sym, st);
		}
		check_statuses(&rd, st, &rng);
	}
	st->lost = rd.lost;
	shm_snap_book_free(&s);
	shm_snap_close(&rd);
	_exit(0);
}

static pid_t spawn_reader(struct ri_writer *W, int idx)
{
	memset(&ctl->r[idx], 0, sizeof(ctl->r[idx]));
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0)
		reader_main(W, idx);
	return pid;
}

/* Churns until every reader in [0, n) is registered and reading. */
static void wait_ready(struct ri_writer *W, int n)
{
	unsigned long long deadline = test_now_ns() + 20000000000ull;
	for (int i = 0; i < n; i++) {
		while (!load_acquire(&ctl->r[i].ready)) { /* [QY4] */
			ck_assert_msg(test_now_ns() < deadline,
				      "reader %d never started: %s", i, ctl->r[i].first);
			if (W)
				writer_batch(W, RI_BATCH);
			else
				usleep(1000);
		}
	}
}

/* Stops the readers, reaps them and checks what they found. */
static void finish_readers(const pid_t *pids, int n, uint64_t min_snaps)
{
	store_release(&ctl->stop, 1u); /* [QY3] */
	uint64_t snaps = 0, orders = 0, statuses = 0, busy = 0, tops = 0;
	for (int i = 0; i < n; i++) {
		int st = test_wait_pid(pids[i], 30000);
		ck_assert_msg(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0,
			      "reader %d status 0x%x: %s", i, st, ctl->r[i].first);
	}
	for (int i = 0; i < n; i++) {
		const struct ri_stat *r = &ctl->r[i];
		ck_assert_msg(r->violations == 0,
			      "reader %d: %" PRIu64 " violations, first: %s", i,
			      r->violations, r->first);
		snaps += r->snaps;
		orders += r->orders;
		statuses += r->statuses;
		busy += r->busy;
		tops += r->tops;
	}
	fprintf(stderr,
		"  %d readers: %" PRIu64 " book snapshots (%" PRIu64 " orders), %" PRIu64
		" tops+depths, %" PRIu64 " statuses checked, %" PRIu64
		" busy, 0 violations\n",
		n, snaps, orders, tops, statuses, busy);
	ck_assert_msg(snaps >= min_snaps, "only %" PRIu64 " snapshots checked", snaps);
	ck_assert_uint_gt(orders, 0);
	ck_assert_uint_gt(statuses, 0);
}

/* --- pinned reader -------------------------------------------------------- */

static void pin_check(struct shm_snap *rd, struct ri_pin *p)
{
	const struct shm_book_view *v = &rd->view;
	for (uint32_t i = 0; i < p->nlev; i++) {
		const struct shm_book_level_sh *l = shm_book_level_at(v, p->lev[i]);
		const struct shm_book_sym_sh *ss = shm_book_sym_at(v, p->lev_sym[i]);
		/* state and retire_epoch are two stores of one retirement:
		 * read them in a seqcount snapshot of the level's symbol (BK5
		 * pairs with BK4, BK6 with BK3), else a reader can see RETIRED
		 * with the epoch of before and mistake the real epoch, seen
		 * later, for a reuse.  Price, symbol and side change only when
		 * the record is reused, which the protocol forbids while we
		 * are pinned. */
		uint64_t s1;
		if (!shm_book_seq_begin(ss, &s1)) /* BK5 */
			continue;
		uint8_t state = load_relaxed(&l->state);
		uint64_t re = load_relaxed(&l->retire_epoch);
		if (!shm_book_seq_stable(ss, s1)) /* BK6 */
			continue; /* torn: check this level on the next pass */
		if (load_relaxed(&l->price) != p->lev_price[i] ||
		    load_relaxed(&l->sym) != p->lev_sym[i] ||
		    load_relaxed(&l->side) != p->lev_side[i] ||
		    (state != SHM_BOOK_LEVEL_LIVE && state != SHM_BOOK_LEVEL_RETIRED) ||
		    (p->lev_retired[i] &&
		     (state != SHM_BOOK_LEVEL_RETIRED || re != p->lev_retire_epoch[i]))) {
			violation(p->first, sizeof(p->first), &p->violations,
				  "level %u reused while pinned: state %u "
				  "price %" PRId64 " (was %" PRId64 ")",
				  p->lev[i], state, load_relaxed(&l->price),
				  p->lev_price[i]);
			continue;
		}
		if (state == SHM_BOOK_LEVEL_RETIRED && !p->lev_retired[i]) {
			p->lev_retired[i] = 1;
			p->lev_retire_epoch[i] = re;
			p->saw_retired++;
		}
	}
	for (uint32_t i = 0; i < p->nord; i++) {
		const struct shm_book_order_sh *o = shm_book_order_at(v, p->ord[i]);
		uint64_t id = load_relaxed(&o->id);
		if (id != p->ord_id[i]) {
			violation(p->first, sizeof(p->first), &p->violations,
				  "order record %u reused while pinned: id %" PRIu64
				  " (was %" PRIu64 ")",
				  p->ord[i], id, p->ord_id[i]);
			continue;
		}
		if (!p->ord_done[i] && load_relaxed(&o->state) == SHM_BOOK_ORDER_DONE) {
			p->ord_done[i] = 1;
			p->saw_done++;
		}
	}
	p->checks++;
}

/* The pinned reader (never returns): enter, record every level and order
 * of every symbol, check them until told to leave, leave, wait. */
static void pinned_main(struct ri_writer *W)
{
	struct ri_pin *p = &ctl->pin;
	struct shm_snap rd;
	struct shm_snap_book s;
	child_drop(W);
	memset(&s, 0, sizeof(s));
	if (shm_snap_open(&rd, inst, 0) != 0 || shm_rcu_enter(&rd.reader) != 0)
		_exit(2);
	p->epoch = rd.reader.epoch;
	for (uint32_t sym = 0; sym < ctl->nsyms; sym++) {
		/* Nested in our section: the snapshot does not leave it. */
		int rc = shm_snap_book_read(&rd, sym, 0, true, &s);
		if (rc)
			_exit(3);
		for (size_t i = 0; i < s.nlev && p->nlev < RI_PIN_LEVELS; i++) {
			uint32_t k = p->nlev++;
			p->lev[k] = s.levels[i].index;
			p->lev_price[k] = s.levels[i].price;
			p->lev_sym[k] = s.levels[i].sym;
			p->lev_side[k] = s.levels[i].side;
		}
		for (size_t i = 0; i < s.nord && p->nord < RI_PIN_ORDERS; i++) {
			p->ord[p->nord] = s.ords[i].index;
			p->ord_id[p->nord++] = s.ords[i].id;
		}
	}
	store_release(&p->state, 1u);       /* [QY3] recorded; pairs with QY4 */
	while (load_acquire(&p->phase) < 2) /* [QY4] pairs with QY3 */
		pin_check(&rd, p);
	pin_check(&rd, p);
	if (shm_rcu_leave(&rd.reader) != 0)
		_exit(4);
	store_release(&p->state, 2u);       /* left; [QY3] */
	while (load_acquire(&p->phase) < 3) /* [QY4] */
		usleep(1000);
	shm_snap_book_free(&s);
	shm_snap_close(&rd);
	_exit(0);
}

static pid_t spawn_pinned(struct ri_writer *W)
{
	memset(&ctl->pin, 0, sizeof(ctl->pin));
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0)
		pinned_main(W);
	unsigned long long deadline = test_now_ns() + 10000000000ull;
	while (load_acquire(&ctl->pin.state) < 1) { /* [QY4] */
		ck_assert_msg(test_now_ns() < deadline, "pinned reader did not start");
		usleep(1000);
	}
	return pid;
}

/* Recorded levels and orders the writer has reused by now. */
static void pin_reuse(struct ri_writer *W, uint32_t *lev_reused, uint32_t *ord_reused)
{
	const struct shm_book_view *v = eng_core_view(W->b);
	const struct ri_pin *p = &ctl->pin;
	*lev_reused = *ord_reused = 0;
	for (uint32_t i = 0; i < p->nlev; i++) {
		const struct shm_book_level_sh *l = &v->levels[p->lev[i]];
		bool same = l->price == p->lev_price[i] && l->sym == p->lev_sym[i] &&
			    l->side == p->lev_side[i];
		if (l->state == SHM_BOOK_LEVEL_FREE || !same ||
		    (p->lev_retired[i] && l->state == SHM_BOOK_LEVEL_LIVE))
			(*lev_reused)++;
	}
	for (uint32_t i = 0; i < p->nord; i++)
		if (v->orders[p->ord[i]].id != p->ord_id[i])
			(*ord_reused)++;
}

/* Fills the book to about target_live resting orders. */
static void warm_up(struct ri_writer *W)
{
	const struct shm_book_hdr_sh *h = eng_core_view(W->b)->hdr;
	for (int i = 0; i < 4000 && load_relaxed(&h->orders_live) < W->target_live; i++)
		writer_batch(W, RI_BATCH);
}

/* --- scenarios shared with stress_readers.c ------------------------------- */

/* Each program uses the scenarios it needs. */
#define RI_SCENARIO static __attribute__((unused))

/* n reader processes check every snapshot while the writer applies
 * `requests` random requests. */
RI_SCENARIO void scenario_churn(int nreaders, uint64_t requests, uint32_t nsyms)
{
	struct ri_writer W;
	pid_t pids[RI_MAX_READERS];
	new_instance();
	writer_open(&W, 2048, 4096, 32768, 32, nsyms);
	warm_up(&W);
	for (int i = 0; i < nreaders; i++)
		pids[i] = spawn_reader(&W, i);
	wait_ready(&W, nreaders);
	writer_run(&W, requests);
	/* A reader descheduled inside a section (a loaded 2-core machine)
	 * stalls reclamation and fills the small pools, so fewer requests are
	 * accepted (seen at 24 %, 40-50 % when the readers run freely): run
	 * on, up to four times as long, until the book was exercised as much
	 * as the bound below asks, while the readers go on checking. */
	uint64_t until = W.requests + 3 * requests;
	while (W.accepted <= requests / 4 && W.requests < until)
		writer_batch(&W, RI_BATCH);
	finish_readers(pids, nreaders, (uint64_t)nreaders * 10);
	struct eng_core_stats bs;
	eng_core_stats(W.b, &bs);
	fprintf(stderr,
		"  writer: %" PRIu64 " requests, %" PRIu64 " accepted, %" PRIu64
		" book full, %" PRIu64 " epochs (safe %" PRIu64
		"), levels %u live %u retired"
		" %u free, orders %u live %u done %u free %u unused, fills %u "
		"used\n",
		W.requests, W.accepted, W.full, shm_rcu_epoch(&W.w),
		shm_rcu_safe_epoch(&W.w), bs.levels_live, bs.levels_retired,
		bs.levels_free, bs.orders_live, bs.orders_done, bs.orders_free,
		bs.orders_unused, bs.fills_used);
	ck_assert_uint_gt(W.accepted, requests / 4);
	writer_close(&W);
}

/* A reader pinned in a section keeps what it saw from reuse; after it
 * leaves, the writer reuses those records. */
RI_SCENARIO void scenario_pinned(uint64_t pinned_requests)
{
	struct ri_writer W;
	struct ri_pin *p = &ctl->pin;
	uint32_t lev_reused, ord_reused;
	new_instance();
	writer_open(&W, 64, 256, 4096, 4, 2);
	W.target_live = 48;
	warm_up(&W);
	pid_t pid = spawn_pinned(&W);
	ck_assert_uint_gt(p->nlev, 0);
	ck_assert_uint_gt(p->nord, 0);
	store_release(&p->phase, 1u); /* [QY3] */

	/* Pinned: the writer keeps answering; records run out instead of
	 * being reused under the reader. */
	uint64_t full0 = W.full, req0 = W.requests;
	writer_run(&W, pinned_requests);
	ck_assert_uint_ge(W.requests - req0, pinned_requests);
	ck_assert_msg(W.full > full0, "no pressure: the pin withheld nothing");
	ck_assert_uint_le(shm_rcu_safe_epoch(&W.w), p->epoch);
	pin_reuse(&W, &lev_reused, &ord_reused);
	ck_assert_uint_eq(lev_reused, 0);
	ck_assert_uint_eq(ord_reused, 0);

	store_release(&p->phase, 2u);       /* [QY3] */
	while (load_acquire(&p->state) < 2) /* [QY4] */
		usleep(1000);
	fprintf(stderr,
		"  pinned at epoch %" PRIu64 ": %u levels, %u orders recorded, %" PRIu64
		" checks, %" PRIu64 " seen retired, %" PRIu64 " seen done, %" PRIu64
		" book-full rejects meanwhile\n",
		p->epoch, p->nlev, p->nord, p->checks, p->saw_retired, p->saw_done,
		W.full - full0);
	ck_assert_msg(p->violations == 0, "%" PRIu64 " violations: %s", p->violations,
		      p->first);
	ck_assert_uint_gt(p->checks, 0);
	ck_assert_uint_gt(p->saw_retired, 0);
	ck_assert_uint_gt(p->saw_done, 0);

	/* Left: reuse resumes. */
	uint64_t acc0 = W.accepted;
	writer_run(&W, 20000);
	ck_assert_uint_gt(shm_rcu_safe_epoch(&W.w), p->epoch);
	ck_assert_uint_gt(W.accepted, acc0);
	pin_reuse(&W, &lev_reused, &ord_reused);
	ck_assert_msg(lev_reused > 0 && ord_reused > 0, "reused %u levels, %u orders",
		      lev_reused, ord_reused);
	store_release(&p->phase, 3u); /* [QY3] */
	int st = test_wait_pid(pid, 10000);
	ck_assert_msg(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0, "status 0x%x",
		      st);
	writer_close(&W);
}

/* A reader killed inside its section: its slot is reaped by the writer's
 * poll and reclamation resumes; the writer answers all along. */
RI_SCENARIO void scenario_killed(bool reap_zombie)
{
	struct ri_writer W;
	struct ri_pin *p = &ctl->pin;
	struct shm_rcu_stats rs;
	uint32_t lev_reused, ord_reused;
	new_instance();
	writer_open(&W, 64, 256, 4096, 4, 2);
	W.target_live = 48;
	warm_up(&W);
	pid_t pid = spawn_pinned(&W);
	store_release(&p->phase, 1u); /* [QY3] */
	uint64_t full0 = W.full;
	writer_run(&W, 5000);
	ck_assert_msg(W.full > full0, "no pressure: the pin withheld nothing");
	kill(pid, SIGKILL);
	if (!reap_zombie)
		ck_assert_int_ne(test_wait_pid(pid, 10000), -1);

	/* The writer goes on; within a few reap intervals the slot is
	 * freed and the safe epoch passes the dead reader's. */
	unsigned long long deadline = test_now_ns() + 10000000000ull;
	uint64_t batches = 0;
	while (shm_rcu_safe_epoch(&W.w) <= p->epoch) {
		ck_assert_msg(test_now_ns() < deadline, "dead reader never reaped");
		writer_batch(&W, RI_BATCH);
		batches++;
	}
	shm_rcu_stats(&W.w, &rs);
	ck_assert_uint_ge(rs.reaped, 1);
	ck_assert_uint_eq(rs.registered, 0);
	uint64_t acc0 = W.accepted;
	writer_run(&W, 20000);
	ck_assert_uint_gt(W.accepted, acc0);
	pin_reuse(&W, &lev_reused, &ord_reused);
	ck_assert_msg(lev_reused > 0 && ord_reused > 0, "reused %u levels, %u orders",
		      lev_reused, ord_reused);
	fprintf(stderr,
		"  killed reader (%s) reaped after %" PRIu64 " more batches; %u levels, "
		"%u orders it pinned reused since\n",
		reap_zombie ? "zombie" : "reaped pid", batches, lev_reused, ord_reused);
	if (reap_zombie)
		ck_assert_int_ne(test_wait_pid(pid, 10000), -1);
	writer_close(&W);
}

/* A 16-slot table with 16 reader processes: a 17th reader (in this
 * process, and the real shmex-query) gets a clear error; the 16 go on. */
RI_SCENARIO void scenario_full_table(uint64_t requests)
{
	struct ri_writer W;
	pid_t pids[16];
	new_instance();
	writer_open(&W, 2048, 4096, 32768, 16, 4);
	warm_up(&W);
	for (int i = 0; i < 16; i++)
		pids[i] = spawn_reader(&W, i);
	wait_ready(&W, 16);

	struct shm_snap rd;
	int rc = shm_snap_open(&rd, inst, 0);
	ck_assert_int_eq(rc, SHMEX_ENOREADERSLOT);
	ck_assert_str_eq(rd.err.msg, "reader table of shard 0: reader table full");

	int fe = memfd_create("qerr", MFD_CLOEXEC);
	ck_assert_int_ge(fe, 0);
	pid_t q = fork();
	ck_assert_int_ge(q, 0);
	if (q == 0) {
		child_drop(&W);
		dup2(fe, 2);
		int devnull = open("/dev/null", O_WRONLY);
		dup2(devnull, 1);
		execl(test_bin("shmex-query"), "shmex-query", "--instance", inst, "book",
		      "S0", (char *)NULL);
		_exit(127);
	}
	/* The writer keeps going while the 17th tries. */
	while (waitpid(q, &rc, WNOHANG) == 0)
		writer_batch(&W, RI_BATCH);
	ck_assert_msg(WIFEXITED(rc) && WEXITSTATUS(rc) == 1, "shmex-query status 0x%x",
		      rc);
	char err[512];
	ssize_t n = pread(fe, err, sizeof(err) - 1, 0);
	err[n > 0 ? n : 0] = '\0';
	close(fe);
	ck_assert_str_eq(err,
			 "shmex-query: reader table of shard 0: reader table full\n");

	writer_run(&W, requests);
	finish_readers(pids, 16, 16);
	for (int i = 0; i < 16; i++) {
		ck_assert_msg(ctl->r[i].snaps > 0, "reader %d checked nothing", i);
		ck_assert_uint_eq(ctl->r[i].lost, 0);
	}
	writer_close(&W);
}

/* --- the same checks against a real shmex-matcher process ----------------- */

/*
 * This process plays the supervisor (creates control, rings and accounts,
 * starts `shmex-matcher --instance I --shard 0`) and gateway 0 (random
 * requests into the request ring, replies out of the reply ring, a window
 * of at most half the ring outstanding), while reader processes check the
 * matcher's book.
 */
struct ri_gw {
	struct shm_instance h;
	struct shm_accounts acc;
	struct shm_ring req, rep;
	struct shm_region book; /* read-only: the book's statistics */
	struct shm_book_view view;
	pid_t matcher;
	uint64_t next_req;
	uint64_t outstanding;
	uint64_t sent, replies, rejects, full;
	uint64_t ids[RI_IDS], owner[RI_IDS], nids;
	uint64_t rng;
};

static void gw_drain(struct ri_gw *G)
{
	struct shm_msg out[64];
	unsigned got;
	do {
		ck_assert_int_eq(shm_ring_dequeue_batch(&G->rep, out, 64, &got), 0);
		for (unsigned i = 0; i < got; i++) {
			const struct shm_msg *m = &out[i];
			ck_assert_int_eq(shm_msg_validate_reply(m), 0);
			G->replies++;
			G->outstanding--;
			if (m->status) {
				/* Cancels of orders that already ended; orders
				 * while readers hold back reuse (book full). */
				ck_assert_msg((m->req_type == SHM_MSG_CANCEL &&
					       (m->status == SHMEX_ENOTOPEN ||
						m->status == SHMEX_ENOORDER)) ||
						      (m->req_type == SHM_MSG_ORDER &&
						       m->status == SHMEX_EBOOKFULL),
					      "request type %u rejected: %s", m->req_type,
					      shmex_strerror(m->status));
				G->rejects++;
				G->full += m->status == SHMEX_EBOOKFULL;
				continue;
			}
			if (m->req_type == SHM_MSG_ORDER) {
				G->ids[G->nids % RI_IDS] = m->order_id;
				G->owner[G->nids % RI_IDS] = m->account;
				G->nids++;
				uint64_t n = load_relaxed(&ctl->nrecent);
				store_relaxed(&ctl->recent[n % RI_RECENT], m->order_id);
				store_relaxed(&ctl->nrecent, n + 1);
			}
		}
	} while (got);
}

static void gw_send(struct ri_gw *G, struct shm_msg *m)
{
	unsigned done = 0;
	m->req_id = ++G->next_req;
	while (G->outstanding >= G->req.capacity / 2)
		gw_drain(G);
	for (;;) {
		ck_assert_int_eq(shm_ring_enqueue_batch(&G->req, m, 1, &done), 0);
		if (done)
			break;
		gw_drain(G);
	}
	G->sent++;
	G->outstanding++;
}

static void gw_wait_all(struct ri_gw *G)
{
	unsigned long long deadline = test_now_ns() + 30000000000ull;
	while (G->outstanding) {
		ck_assert_msg(test_now_ns() < deadline, "%" PRIu64 " replies missing",
			      G->outstanding);
		gw_drain(G);
		if (G->outstanding)
			usleep(100);
	}
}

static void gw_symbol(struct shm_msg *m, uint32_t i)
{
	char name[8];
	int n = snprintf(name, sizeof(name), "S%u", i);
	ck_assert(shm_symbol_pack(m->u.symbol, name, (size_t)n));
}

static void gw_random(struct ri_gw *G, uint32_t nsyms)
{
	struct shm_msg m;
	uint64_t x = rnd(&G->rng);
	memset(&m, 0, sizeof(m));
	/* Relaxed: a statistic, only steering the mix (more cancels when
	 * the book is big). */
	uint32_t live = load_relaxed(&G->view.hdr->orders_live);
	if (x % 100 < (live > 1000 ? 60u : 25u) && G->nids) {
		uint64_t k = (x >> 8) % (G->nids < RI_IDS ? G->nids : RI_IDS);
		m.type = SHM_MSG_CANCEL;
		m.order_id = G->ids[k];
		m.account = G->owner[k];
	} else {
		m.type = SHM_MSG_ORDER;
		m.account = 1 + ((x >> 8) % 8);
		m.side = (uint8_t)((x >> 12) & 1);
		m.tif = (x >> 13) % 40 == 0 ? SHM_TIF_IOC : SHM_TIF_GTC;
		int64_t off = (int64_t)((x >> 20) % 16);
		m.price =
			(m.side == SHM_SIDE_BUY ? 994 + off : 991 + off) * SHM_PRICE_ONE;
		m.qty = (1 + (int64_t)((x >> 32) % 50)) * SHM_QTY_ONE;
		gw_symbol(&m, (uint32_t)((x >> 4) % nsyms));
	}
	gw_send(G, &m);
}

static void gw_start(struct ri_gw *G, uint32_t nsyms)
{
	struct shm_instance_cfg cfg;
	test_instance_cfg(&cfg, 1, 1, 1024);
	memset(G, 0, sizeof(*G));
	G->rng = UINT64_C(0x853c49e6748fea9b) ^ ((uint64_t)getpid() << 16) ^ ++ri_round;
	cfg.s.orders = 4096;
	cfg.s.levels = 1024;
	cfg.s.accounts = 64;
	cfg.s.readers = 32;
	cfg.s.fills = 65536;
	cfg.s.positions = 1024;
	cfg.s.symbols = 16;
	cfg.s.quiet = 1;
	ck_assert_int_eq(shm_instance_create(inst, &cfg, &G->h), 0);
	ck_assert_int_eq(shm_accounts_create(&G->acc, inst, 64, 0600), 0);
	G->matcher = fork();
	ck_assert_int_ge(G->matcher, 0);
	if (G->matcher == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		execl(test_bin("shmex-matcher"), "shmex-matcher", "--instance", inst,
		      "--shard", "0", (char *)NULL);
		_exit(127);
	}
	/* Ready exactly as the supervisor judges it. */
	unsigned long long deadline = test_now_ns() + 20000000000ull;
	for (;;) {
		if (shm_instance_matcher_ready(&G->h, 0, G->matcher) &&
		    shm_region_attach(&G->book, inst, "book.0", SHM_KIND_BOOK,
				      SHM_RDONLY) == 0)
			break;
		ck_assert_msg(test_now_ns() < deadline,
			      "shmex-matcher did not get ready");
		ck_assert_int_eq(waitpid(G->matcher, NULL, WNOHANG), 0);
		usleep(5000);
	}
	ck_assert_int_eq(shm_book_view_init(&G->view, shm_region_body(&G->book),
					    shm_region_body_size(&G->book)),
			 0);
	shm_instance_detach(&G->h);
	ck_assert_int_eq(shm_instance_attach(inst, SHM_ROLE_GATEWAY, 0, &G->h), 0);
	ck_assert_int_eq(shm_instance_request_ring(&G->h, 0, 0, &G->req), 0);
	ck_assert_int_eq(shm_instance_reply_ring(&G->h, 0, 0, &G->rep), 0);

	/* Eight rich accounts holding every symbol. */
	for (uint64_t a = 1; a <= 8; a++) {
		struct shm_msg m;
		memset(&m, 0, sizeof(m));
		m.type = SHM_MSG_CREATE_ACCOUNT;
		m.account = a;
		/* 10^10 each: no random walk of 8 traders drains it, and the
		 * total stays below the accounts' INT64_MAX bound. */
		m.price = INT64_C(10000000000) * SHM_CASH_ONE;
		gw_send(G, &m);
		for (uint32_t s = 0; s < nsyms; s++) {
			memset(&m, 0, sizeof(m));
			m.type = SHM_MSG_ADD_SHARES;
			m.account = a;
			m.qty = INT64_C(100000000000) * SHM_QTY_ONE;
			gw_symbol(&m, s);
			gw_send(G, &m);
		}
	}
	gw_wait_all(G);
	ck_assert_uint_eq(G->rejects, 0);
	ctl->nsyms = nsyms;
}

static void gw_stop(struct ri_gw *G)
{
	gw_wait_all(G);
	kill(G->matcher, SIGTERM);
	int st = test_wait_pid(G->matcher, 20000);
	ck_assert_msg(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0,
		      "shmex-matcher status 0x%x", st);
	shm_accounts_detach(&G->acc);
	shm_region_detach(&G->book);
	shm_instance_detach(&G->h);
	test_cleanup_instance(inst);
	ck_assert_int_eq(test_count_objects(inst), 0);
}

RI_SCENARIO void scenario_real_matcher(int nreaders, uint64_t requests)
{
	struct ri_gw G;
	pid_t pids[RI_MAX_READERS];
	new_instance();
	gw_start(&G, 4);
	for (int i = 0; i < nreaders; i++) {
		memset(&ctl->r[i], 0, sizeof(ctl->r[i]));
		pids[i] = fork();
		ck_assert_int_ge(pids[i], 0);
		if (pids[i] == 0) {
			munmap(G.h.control.base, G.h.control.map_size);
			munmap(G.h.rings.base, G.h.rings.map_size);
			munmap(G.acc.region.base, G.acc.region.map_size);
			munmap(G.book.base, G.book.map_size);
			reader_main(NULL, i);
		}
	}
	wait_ready(NULL, nreaders);
	for (uint64_t i = 0; i < requests; i++)
		gw_random(&G, 4);
	gw_wait_all(&G);
	finish_readers(pids, nreaders, (uint64_t)nreaders * 10);
	fprintf(stderr,
		"  shmex-matcher: %" PRIu64 " requests answered, %" PRIu64
		" cancels of ended orders rejected, %" PRIu64
		" orders rejected (book full)\n",
		G.replies, G.rejects - G.full, G.full);
	gw_stop(&G);
}

#ifndef RI_STRESS

START_TEST(invariants_under_churn)
{
	scenario_churn(4, 300000, 4);
}
END_TEST

START_TEST(pinned_reader_blocks_reuse)
{
	scenario_pinned(20000);
}
END_TEST

START_TEST(killed_reader_is_reaped)
{
	scenario_killed(false);
}
END_TEST

START_TEST(sixteen_readers_and_a_seventeenth)
{
	scenario_full_table(50000);
}
END_TEST

START_TEST(real_matcher)
{
	scenario_real_matcher(2, 100000);
}
END_TEST

static Suite *reader_invariants_suite(void)
{
	Suite *s = suite_create("reader_invariants");
	TCase *tc = tcase_create("readers");
	tcase_add_unchecked_fixture(tc, ctl_setup, ctl_teardown);
	tcase_add_checked_fixture(tc, ctl_reset, NULL);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, invariants_under_churn);
	tcase_add_test(tc, pinned_reader_blocks_reuse);
	tcase_add_test(tc, killed_reader_is_reaped);
	tcase_add_test(tc, sixteen_readers_and_a_seventeenth);
	tcase_add_test(tc, real_matcher);
	suite_add_tcase(s, tc);
	return s;
}

SHMEX_TEST_MAIN(reader_invariants_suite)

#endif
