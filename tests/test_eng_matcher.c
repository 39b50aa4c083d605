/*
 * eng_matcher_suite: the shmex-matcher process, tested as a process.
 *
 * Every test plays the supervisor and the gateways itself: it creates the
 * instance's control, rings and accounts regions, fork/execs real
 * shmex-matcher processes (test_bin), waits until they are ready the way
 * the supervisor does (member slot + book region published), then talks
 * to them over the real rings and reads the results back through the
 * shared regions (shm_snap for the books, shm_accounts / shm_positions
 * for money and shares).  Nothing here links the matcher's code.
 *
 * Units: Q() shares (QTY scale), P() prices (PRICE scale), C() cash.
 */
#include "tests/shmex_test.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "engine/eng_core.h"
#include "engine/replay/rpl_sha256.h"
#include "shm/shm_accounts.h"
#include "shm/shm_book.h"
#include "shm/shm_dec.h"
#include "shm/shm_error.h"
#include "shm/shm_instance.h"
#include "shm/shm_msg.h"
#include "shm/shm_positions.h"
#include "shm/shm_snap.h"
#include "shm/shm_region.h"
#include "shm/shm_ring.h"

#define Q(x) ((int64_t)(x)*SHM_QTY_ONE)
#define P(x) ((int64_t)(x)*SHM_PRICE_ONE)
#define C(x) ((int64_t)(x)*SHM_CASH_ONE)

#define MAXS 2
#define MAXG 2
#define REPLY_TIMEOUT_MS 10000

enum { BUY = SHM_SIDE_BUY, SELL = SHM_SIDE_SELL };

struct fx {
	char inst[64];
	uint32_t nshards, ngw;
	struct shm_instance si;
	bool si_ok;
	struct shm_accounts acc;
	bool acc_ok;
	pid_t pid[MAXS];
	struct shm_ring req[MAXG][MAXS]; /* gateway g -> shard s */
	struct shm_ring rep[MAXS][MAXG]; /* shard s -> gateway g */
	struct shm_snap rd[MAXS];
	bool rd_ok[MAXS];
	struct shm_positions pos[MAXS];
	bool pos_ok[MAXS];
	uint64_t next_req;
};

static struct fx F;

static void setup(void)
{
	memset(&F, 0, sizeof(F));
	test_instance(F.inst, sizeof(F.inst));
}

static void fx_detach(struct fx *f)
{
	for (uint32_t s = 0; s < MAXS; s++) {
		if (f->rd_ok[s])
			shm_snap_close(&f->rd[s]);
		f->rd_ok[s] = false;
		if (f->pos_ok[s])
			shm_positions_detach(&f->pos[s]);
		f->pos_ok[s] = false;
	}
	if (f->acc_ok)
		shm_accounts_detach(&f->acc);
	f->acc_ok = false;
	if (f->si_ok)
		shm_instance_detach(&f->si);
	f->si_ok = false;
}

static void teardown(void)
{
	for (uint32_t s = 0; s < MAXS; s++) {
		if (F.pid[s] > 0) {
			kill(F.pid[s], SIGKILL);
			waitpid(F.pid[s], NULL, 0);
			F.pid[s] = 0;
		}
	}
	fx_detach(&F);
	test_cleanup_instance(F.inst);
}

/* ---- processes ---- */

/* fork/exec of argv with stdout/stderr to files (NULL: inherited). */
static pid_t spawn(const char *const *argv, const char *out, const char *err)
{
	pid_t parent = getpid();
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		/* Never outlive the test, even when it fails. */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(126);
		if (out) {
			int fd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0600);
			if (fd < 0 || dup2(fd, 1) < 0)
				_exit(125);
			close(fd);
		}
		if (err) {
			int fd = open(err, O_WRONLY | O_CREAT | O_TRUNC, 0600);
			if (fd < 0 || dup2(fd, 2) < 0)
				_exit(125);
			close(fd);
		}
		execv(argv[0], (char *const *)argv);
		_exit(127);
	}
	return pid;
}

static char *slurp(const char *path)
{
	FILE *fp = fopen(path, "r");
	ck_assert_ptr_nonnull(fp);
	static char buf[1 << 16];
	size_t n = fread(buf, 1, sizeof(buf) - 1, fp);
	buf[n] = 0;
	fclose(fp);
	return buf;
}

static void tmp_path(char *buf, size_t len, const char *what)
{
	snprintf(buf, len, "/tmp/shmex-test-matcher-%d-%s", (int)getpid(), what);
}

/* Exit status of a program run to completion, its output in files. */
static int run_prog(const char *const *argv, const char *out, const char *err,
		    int timeout_ms)
{
	pid_t pid = spawn(argv, out, err);
	int st = test_wait_pid(pid, timeout_ms);
	ck_assert_msg(st != -1, "%s did not finish in time", argv[0]);
	ck_assert_msg(WIFEXITED(st), "%s died with status 0x%x", argv[0], st);
	return WEXITSTATUS(st);
}

/* ---- the fixture: instance, accounts, matchers ---- */

static uint64_t fx_orders = 65536, fx_stp;

static void fx_spawn(struct fx *f, uint32_t k)
{
	char shard[16];
	snprintf(shard, sizeof(shard), "%u", k);
	const char *argv[40];
	int n = 0;
	argv[n++] = test_bin("shmex-matcher");
	argv[n++] = "--instance";
	argv[n++] = f->inst;
	argv[n++] = "--shard";
	argv[n++] = shard;
	argv[n] = NULL;
	f->pid[k] = spawn(argv, NULL, NULL);
}

/* Ready exactly as the supervisor judges it (shm_instance_matcher_ready). */
static void fx_wait_ready(struct fx *f, uint32_t k)
{
	unsigned long long deadline = test_now_ns() + 10000000000ull;
	for (;;) {
		if (shm_instance_matcher_ready(&f->si, k, f->pid[k]))
			break;
		int st;
		ck_assert_msg(waitpid(f->pid[k], &st, WNOHANG) == 0,
			      "matcher %u exited during startup (0x%x)", k, st);
		ck_assert_msg(test_now_ns() < deadline, "matcher %u not ready", k);
		usleep(1000);
	}
	int rc = shm_snap_open(&f->rd[k], f->inst, k);
	ck_assert_msg(rc == 0, "shm_snap_open: %s", f->rd[k].err.msg);
	f->rd_ok[k] = true;
	ck_assert_int_eq(shm_positions_attach(&f->pos[k], f->inst, k, SHM_RDONLY), 0);
	f->pos_ok[k] = true;
}

static uint32_t ring_capacity = 1024;
static uint32_t fx_batch;                            /* 0: the default */
static uint32_t fx_window = SHM_DEFAULT_DONE_WINDOW; /* --done-window */

static void fx_create(struct fx *f, uint32_t nshards, uint32_t ngw)
{
	f->nshards = nshards;
	f->ngw = ngw;
	struct shm_instance_cfg cfg;
	test_instance_cfg(&cfg, nshards, ngw, ring_capacity);
	cfg.s.accounts = 256;
	cfg.s.orders = fx_orders;
	cfg.s.stp = fx_stp;
	cfg.s.quiet = 1;
	if (fx_batch)
		cfg.s.batch = fx_batch;
	cfg.s.done_window = fx_window;
	int rc = shm_instance_create(f->inst, &cfg, &f->si);
	ck_assert_msg(rc == 0, "instance: %s", f->si.err.msg);
	f->si_ok = true;
	ck_assert_int_eq(shm_accounts_create(&f->acc, f->inst, 256, 0600), 0);
	f->acc_ok = true;
	for (uint32_t g = 0; g < ngw; g++)
		for (uint32_t s = 0; s < nshards; s++) {
			ck_assert_int_eq(
				shm_instance_request_ring(&f->si, g, s, &f->req[g][s]),
				0);
			ck_assert_int_eq(
				shm_instance_reply_ring(&f->si, s, g, &f->rep[s][g]), 0);
		}
}

/* orders: order records per shard, 0 for the test default; stp: the
 * self-trade prevention mode.  Both go into the instance's settings. */
static void fx_start(struct fx *f, uint32_t nshards, uint32_t ngw, uint64_t orders,
		     uint64_t stp)
{
	fx_orders = orders ? orders : 65536;
	fx_stp = stp;
	fx_create(f, nshards, ngw);
	for (uint32_t k = 0; k < nshards; k++)
		fx_spawn(f, k);
	for (uint32_t k = 0; k < nshards; k++)
		fx_wait_ready(f, k);
}

/* SIGTERM every matcher: each must exit 0; then nothing may be left. */
static void fx_stop(struct fx *f)
{
	for (uint32_t k = 0; k < MAXS; k++) {
		if (f->pid[k] <= 0)
			continue;
		kill(f->pid[k], SIGTERM);
		int st = test_wait_pid(f->pid[k], 10000);
		f->pid[k] = 0;
		ck_assert_msg(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0,
			      "matcher %u: status 0x%x", k, st);
	}
	fx_detach(f);
	test_cleanup_instance(f->inst);
	ck_assert_int_eq(test_count_objects(f->inst), 0);
}

/* ---- requests ---- */

static uint32_t sym_shard(const char *sym, uint32_t nshards)
{
	return shm_shard_of_symbol(sym, strlen(sym), nshards);
}

/* The n-th symbol "S<i>" owned by shard s. */
static void pick_sym(char out[16], uint32_t s, uint32_t nshards, int n)
{
	for (int i = 0;; i++) {
		snprintf(out, 16, "S%d", i);
		if (sym_shard(out, nshards) == s && n-- == 0)
			return;
	}
}

static struct shm_msg m_account(uint64_t id, shm_cash_t balance)
{
	struct shm_msg m;
	memset(&m, 0, sizeof(m));
	m.type = SHM_MSG_CREATE_ACCOUNT;
	m.account = id;
	shm_msg_set_balance(&m, balance);
	return m;
}

static struct shm_msg m_shares(uint64_t id, const char *sym, int64_t qty)
{
	struct shm_msg m;
	memset(&m, 0, sizeof(m));
	m.type = SHM_MSG_ADD_SHARES;
	m.account = id;
	m.qty = qty;
	ck_assert(shm_symbol_pack(m.u.symbol, sym, strlen(sym)));
	return m;
}

static struct shm_msg m_order(uint64_t acct, const char *sym, int side, int64_t qty,
			      int64_t price, int tif)
{
	struct shm_msg m;
	memset(&m, 0, sizeof(m));
	m.type = SHM_MSG_ORDER;
	m.account = acct;
	m.side = (uint8_t)side;
	m.tif = (uint8_t)tif;
	m.qty = qty;
	m.price = price;
	ck_assert(shm_symbol_pack(m.u.symbol, sym, strlen(sym)));
	return m;
}

static struct shm_msg m_cancel(uint64_t acct, uint64_t id)
{
	struct shm_msg m;
	memset(&m, 0, sizeof(m));
	m.type = SHM_MSG_CANCEL;
	m.account = acct;
	m.order_id = id;
	return m;
}

static struct shm_msg m_modify(uint64_t acct, uint64_t id, int64_t price, int64_t qty)
{
	struct shm_msg m = m_cancel(acct, id);
	m.type = SHM_MSG_MODIFY;
	m.price = price;
	m.qty = qty;
	return m;
}

/* The shard a request belongs to. */
static uint32_t route(const struct fx *f, const struct shm_msg *m)
{
	switch (m->type) {
	case SHM_MSG_CREATE_ACCOUNT:
		return shm_shard_of_account(m->account, f->nshards);
	case SHM_MSG_ADD_SHARES:
	case SHM_MSG_ORDER:
		return sym_shard(m->u.symbol, f->nshards);
	default:
		return m->order_id ? shm_shard_of_order(m->order_id, f->nshards) : 0;
	}
}

static void ring_recv(struct shm_ring *r, struct shm_msg *a)
{
	unsigned long long deadline = test_now_ns() + REPLY_TIMEOUT_MS * 1000000ull;
	for (;;) {
		unsigned got = 0;
		ck_assert_int_eq(shm_ring_dequeue_batch(r, a, 1, &got), 0);
		if (got)
			return;
		ck_assert_msg(test_now_ns() < deadline, "no reply");
		int rc = shm_ring_wait(r, 100);
		ck_assert(rc == 0 || rc == SHMEX_ETIMEDOUT || rc == -EINTR);
	}
}

/* Sends m on (gateway 0, shard s), returns the validated reply. */
static struct shm_msg call_on(struct fx *f, uint32_t s, struct shm_msg m)
{
	m.req_id = ++f->next_req;
	unsigned done = 0;
	ck_assert_int_eq(shm_ring_enqueue_batch(&f->req[0][s], &m, 1, &done), 0);
	ck_assert_uint_eq(done, 1);
	struct shm_msg a;
	ring_recv(&f->rep[s][0], &a);
	ck_assert_uint_eq(a.req_id, m.req_id);
	ck_assert_uint_eq(a.type, SHM_MSG_REPLY);
	ck_assert_uint_eq(a.req_type, m.type);
	return a;
}

static struct shm_msg call(struct fx *f, struct shm_msg m)
{
	return call_on(f, route(f, &m), m);
}

/* Status of a request, with a readable failure message. */
#define ST(f, msg, want)                                                      \
	do {                                                                  \
		struct shm_msg a_ = call((f), (msg));                         \
		ck_assert_msg(a_.status == (want), "status %s, expected %s",  \
			      shmex_errname(a_.status), shmex_errname(want)); \
	} while (0)

static uint64_t order_ok(struct fx *f, struct shm_msg m)
{
	struct shm_msg a = call(f, m);
	ck_assert_msg(a.status == 0, "order: %s", shmex_errname(a.status));
	ck_assert_uint_ne(a.order_id, 0);
	return a.order_id;
}

/* ---- reading state back ---- */

static struct shm_account_view acct_of(struct fx *f, uint64_t id)
{
	struct shm_account_view v;
	ck_assert_int_eq(shm_accounts_read(&f->acc, id, &v), 0);
	return v;
}

static struct shm_position_view pos(struct fx *f, uint64_t id, const char *sym)
{
	char packed[16];
	ck_assert(shm_symbol_pack(packed, sym, strlen(sym)));
	struct shm_position_view v;
	memset(&v, 0, sizeof(v));
	int rc = shm_positions_read(&f->pos[sym_shard(sym, f->nshards)], id, packed, &v);
	ck_assert_msg(rc == 0 || rc == SHMEX_ENOSHARES, "%s", shmex_errname(rc));
	return v;
}

static struct shm_snap_fill fills_buf[64];

static struct shm_snap_order order(struct fx *f, uint64_t id, size_t *nf)
{
	struct shm_snap_order o;
	size_t n = 0;
	int rc = shm_snap_order(&f->rd[shm_shard_of_order(id, f->nshards)], id, &o,
				fills_buf, 64, &n);
	ck_assert_msg(rc == 0, "read order %llu: %s", (unsigned long long)id,
		      shmex_errname(rc));
	if (nf)
		*nf = n;
	return o;
}

static void hash_region(struct rpl_sha256 *h, const struct shm_region *r, size_t skip)
{
	size_t n = shm_region_body_size(r);
	ck_assert_uint_le(skip, n);
	rpl_sha256_update(h, (const char *)shm_region_body(r) + skip, n - skip);
}

/* Digest of everything a request may change: the accounts region, every
 * positions region, every book's pools (the book header's statistics and
 * the reader table's epoch move on every loop round and are left out;
 * the number of symbols is kept). */
static void digest(struct fx *f, char out[65])
{
	struct rpl_sha256 h;
	rpl_sha256_init(&h);
	hash_region(&h, &f->acc.region, 0);
	for (uint32_t s = 0; s < f->nshards; s++) {
		hash_region(&h, &f->pos[s].region, 0);
		hash_region(&h, &f->rd[s].book, sizeof(struct shm_book_hdr_sh));
		uint32_t nsym = shm_snap_nsymbols(&f->rd[s]);
		rpl_sha256_update(&h, &nsym, sizeof(nsym));
	}
	uint8_t d[32];
	rpl_sha256_final(&h, d);
	rpl_sha256_hex(d, out);
}

/*
 * The digest of what a request may change, taken after the matcher's
 * background reclamation has settled: records retired by earlier
 * requests go from RETIRED to FREE when the matcher next polls its
 * readers (eng_core_reclaim_due), which is not an effect of the request
 * being checked.  Waits past ENG_RECLAIM_NS and makes a round (a new
 * account), whose reclaim frees every retired record (no reader is in a
 * section).
 */
static void digest_settled(struct fx *f, char out[65])
{
	static uint64_t next_account = 900000;
	usleep(2 * ENG_RECLAIM_NS / 1000);
	struct shm_msg q = m_account(next_account++, 0);
	struct shm_msg a = call(f, q);
	ck_assert_int_eq(a.status, 0);
	digest(f, out);
}

/* ------------------------------------------------------------------ */

/* The handout's worked example, through the rings, read back through
 * shared memory: fills, statuses, depth, cash and positions. */
START_TEST(handout_example_through_rings)
{
	fx_start(&F, 1, 1, 0, SHM_BOOK_STP_NONE);
	ST(&F, m_account(100, C(1000000)), 0);
	ST(&F, m_account(200, 0), 0);
	ST(&F, m_account(300, 0), 0);
	ST(&F, m_shares(200, "X", Q(2000)), 0);
	ST(&F, m_shares(300, "X", Q(400)), 0);
	uint64_t o1 = order_ok(&F, m_order(100, "X", BUY, Q(300), P(125), SHM_TIF_GTC));
	uint64_t o2 = order_ok(&F, m_order(200, "X", SELL, Q(100), P(130), SHM_TIF_GTC));
	uint64_t o3 = order_ok(&F, m_order(100, "X", BUY, Q(200), P(127), SHM_TIF_GTC));
	uint64_t o4 = order_ok(&F, m_order(200, "X", SELL, Q(500), P(128), SHM_TIF_GTC));
	uint64_t o5 = order_ok(&F, m_order(200, "X", SELL, Q(200), P(140), SHM_TIF_GTC));
	uint64_t o6 = order_ok(&F, m_order(100, "X", BUY, Q(400), P(125), SHM_TIF_GTC));
	struct shm_msg a7 =
		call(&F, m_order(300, "X", SELL, Q(400), P(124), SHM_TIF_GTC));
	ck_assert_int_eq(a7.status, 0);
	ck_assert_int_eq(a7.qty, Q(400)); /* executed at once */
	uint64_t o7 = a7.order_id;
	ck_assert(o1 != o2 && o2 != o3 && o3 != o4 && o4 != o5 && o5 != o6 && o6 != o7);

	size_t nf;
	struct shm_snap_order o = order(&F, o7, &nf);
	ck_assert_uint_eq(o.state, SHM_BOOK_ORDER_DONE);
	ck_assert_uint_eq(o.done_reason, SHM_BOOK_DONE_FILLED);
	ck_assert_int_eq(o.open, 0);
	ck_assert_int_eq(o.executed, Q(400));
	ck_assert_uint_eq(nf, 2);
	ck_assert_int_eq(fills_buf[0].qty, Q(200));
	ck_assert_int_eq(fills_buf[0].price, P(127));
	ck_assert_uint_eq(fills_buf[0].counterparty, o3);
	ck_assert_int_eq(fills_buf[1].qty, Q(200));
	ck_assert_int_eq(fills_buf[1].price, P(125));
	ck_assert_uint_eq(fills_buf[1].counterparty, o1);
	ck_assert(!fills_buf[0].maker && !fills_buf[1].maker);
	ck_assert_uint_eq(fills_buf[0].time_ns, a7.u.r.time_ns);

	o = order(&F, o1, &nf); /* keeps 100 open, with its priority */
	ck_assert_uint_eq(o.state, SHM_BOOK_ORDER_LIVE);
	ck_assert_int_eq(o.open, Q(100));
	ck_assert_int_eq(o.executed, Q(200));
	ck_assert_uint_eq(nf, 1);
	ck_assert(fills_buf[0].maker);
	ck_assert_int_eq(fills_buf[0].price, P(125));
	o = order(&F, o3, &nf);
	ck_assert_uint_eq(o.state, SHM_BOOK_ORDER_DONE);
	ck_assert_int_eq(o.executed, Q(200));
	o = order(&F, o6, &nf);
	ck_assert_int_eq(o.open, Q(400));
	ck_assert_int_eq(o.executed, 0);

	struct shm_snap_level bids[8], asks[8];
	struct shm_snap_depth d = {.bids = bids, .asks = asks, .max = 8};
	uint32_t sym;
	ck_assert_int_eq(shm_snap_symbol_find(&F.rd[0], "X", 1, &sym), 0);
	ck_assert_int_eq(shm_snap_depth(&F.rd[0], sym, &d), 0);
	ck_assert_uint_eq(d.nbids, 1);
	ck_assert_int_eq(bids[0].price, P(125));
	ck_assert_int_eq(bids[0].qty, Q(500));
	ck_assert_uint_eq(bids[0].count, 2);
	ck_assert_uint_eq(d.nasks, 3);
	ck_assert_int_eq(asks[0].price, P(128));
	ck_assert_int_eq(asks[1].price, P(130));
	ck_assert_int_eq(asks[2].price, P(140));

	struct shm_account_view v = acct_of(&F, 300);
	ck_assert_int_eq(v.balance, C(200 * 127 + 200 * 125));
	ck_assert_int_eq(v.reserved, 0);
	v = acct_of(&F, 100);
	ck_assert_int_eq(v.reserved, C(100 * 125 + 400 * 125));
	ck_assert_int_eq(v.balance, C(1000000 - 300 * 125 - 200 * 127 - 400 * 125));
	struct shm_position_view p = pos(&F, 100, "X");
	ck_assert_int_eq(p.amount, Q(400));
	p = pos(&F, 200, "X");
	ck_assert_int_eq(p.amount, Q(1200));
	ck_assert_int_eq(p.reserved, Q(800));
	p = pos(&F, 300, "X");
	ck_assert_int_eq(p.amount, 0);
	ck_assert_int_eq(p.reserved, 0);
	fx_stop(&F);
}
END_TEST

/* Every business rejection, each answered with its reason and leaving
 * the whole state digest unchanged. */
START_TEST(rejections_change_nothing)
{
	fx_start(&F, 1, 1, 0, SHM_BOOK_STP_NONE);
	ST(&F, m_account(100, C(1000)), 0);
	ST(&F, m_account(200, 0), 0);
	ST(&F, m_shares(200, "X", Q(50)), 0);
	uint64_t sell = order_ok(&F, m_order(200, "X", SELL, Q(10), P(90), SHM_TIF_GTC));
	char d0[65], d1[65];
	digest_settled(&F, d0);

	ST(&F, m_account(100, C(5)), SHMEX_EACCOUNTEXISTS);
	ST(&F, m_order(100, "X", BUY, Q(11), P(91), SHM_TIF_GTC), SHMEX_ENOFUNDS);
	ST(&F, m_order(100, "X", SELL, Q(1), P(90), SHM_TIF_GTC), SHMEX_ENOSHARES);
	ST(&F, m_order(200, "X", SELL, Q(41), P(90), SHM_TIF_GTC), SHMEX_ENOSHARES);
	ST(&F, m_order(999, "X", BUY, Q(1), P(1), SHM_TIF_GTC), SHMEX_ENOACCOUNT);
	ST(&F, m_order(100, "NOPE", BUY, Q(1), P(1), SHM_TIF_GTC), SHMEX_ENOSYMBOL);
	ST(&F, m_shares(999, "X", Q(1)), SHMEX_ENOACCOUNT);
	ST(&F, m_cancel(100, sell), SHMEX_ENOTOWNER);
	ST(&F, m_modify(100, sell, P(95), Q(1)), SHMEX_ENOTOWNER);
	ST(&F, m_cancel(100, sell + 1000), SHMEX_ENOORDER);
	digest(&F, d1);
	ck_assert_str_eq(d0, d1);

	struct shm_msg a = call(&F, m_cancel(200, sell));
	ck_assert_int_eq(a.status, 0);
	ck_assert_int_eq(a.qty, Q(10));
	digest_settled(&F, d0);
	ST(&F, m_cancel(200, sell), SHMEX_ENOTOPEN);
	ST(&F, m_modify(200, sell, P(80), Q(5)), SHMEX_ENOTOPEN);
	digest(&F, d1);
	ck_assert_str_eq(d0, d1);
	ck_assert_int_eq(pos(&F, 200, "X").amount, Q(50));
	ck_assert_int_eq(pos(&F, 200, "X").reserved, 0);
	fx_stop(&F);
}
END_TEST

/* A core rejection after the reservation (no order record left) gives
 * the reservation back: nothing changes. */
START_TEST(book_full_releases_reservation)
{
	fx_start(&F, 1, 1, 2, SHM_BOOK_STP_NONE); /* two order records */
	ST(&F, m_account(100, C(1000)), 0);
	ST(&F, m_account(200, 0), 0);
	ST(&F, m_shares(200, "X", Q(50)), 0);
	order_ok(&F, m_order(100, "X", BUY, Q(1), P(10), SHM_TIF_GTC));
	order_ok(&F, m_order(100, "X", BUY, Q(1), P(11), SHM_TIF_GTC));
	char d0[65], d1[65];
	digest_settled(&F, d0);
	ST(&F, m_order(100, "X", BUY, Q(1), P(12), SHM_TIF_GTC), SHMEX_EBOOKFULL);
	ST(&F, m_order(200, "X", SELL, Q(5), P(50), SHM_TIF_GTC), SHMEX_EBOOKFULL);
	digest(&F, d1);
	ck_assert_str_eq(d0, d1);
	ck_assert_int_eq(acct_of(&F, 100).reserved, C(21));
	ck_assert_int_eq(acct_of(&F, 100).balance, C(1000 - 21));
	ck_assert_int_eq(pos(&F, 200, "X").reserved, 0);
	fx_stop(&F);
}
END_TEST

/*
 * The done window: after a round the matcher frees the finished orders
 * beyond the last --done-window ones that are past their grace period,
 * which it learns when it polls the readers (after a round, every
 * ENG_RECLAIM_EVERY requests or ENG_RECLAIM_NS, sooner when a pool runs
 * low; and at an idle tick); so an old finished order is forgotten while
 * the pool still has room, a few rounds after a poll interval, and the
 * last ones stay queryable.
 */
START_TEST(done_window_keeps_the_last_finished_orders)
{
	fx_window = 4;
	fx_start(&F, 1, 1, 0, SHM_BOOK_STP_NONE);
	fx_window = SHM_DEFAULT_DONE_WINDOW;
	ST(&F, m_account(1, C(100000)), 0);
	ST(&F, m_account(2, 0), 0);
	ST(&F, m_shares(2, "X", Q(1)), 0); /* the symbol exists */
	uint64_t id[16];
	for (int i = 0; i < 16; i++) {
		id[i] = order_ok(&F, m_order(1, "X", BUY, Q(1), P(10 + i), SHM_TIF_GTC));
		ST(&F, m_cancel(1, id[i]), 0);
	}
	/* Rounds after a poll trim the old ones. */
	struct shm_snap_order o;
	size_t n;
	int rc = 0;
	for (int k = 0; k < 100 && rc != SHMEX_ENOORDER; k++) {
		ST(&F, m_account(3 + (uint64_t)k, 0), 0);
		rc = shm_snap_order(&F.rd[0], id[0], &o, fills_buf, 64, &n);
		if (rc != SHMEX_ENOORDER)
			usleep(2 * 1000); /* > ENG_RECLAIM_NS */
	}
	ck_assert_int_eq(rc, SHMEX_ENOORDER);
	for (int i = 12; i < 16; i++)
		ck_assert_uint_eq(order(&F, id[i], NULL).done_reason,
				  SHM_BOOK_DONE_CANCEL);
	ST(&F, m_cancel(1, id[0]), SHMEX_ENOORDER);
	ST(&F, m_cancel(1, id[15]), SHMEX_ENOTOPEN);
	fx_stop(&F);
}
END_TEST

/* A buy that executes below its limit gets the difference back. */
START_TEST(price_improvement_refund)
{
	fx_start(&F, 1, 1, 0, SHM_BOOK_STP_NONE);
	ST(&F, m_account(1, C(10000)), 0);
	ST(&F, m_account(2, 0), 0);
	ST(&F, m_shares(2, "X", Q(10)), 0);
	order_ok(&F, m_order(2, "X", SELL, Q(10), P(100), SHM_TIF_GTC));
	struct shm_msg a = call(&F, m_order(1, "X", BUY, Q(10), P(130), SHM_TIF_GTC));
	ck_assert_int_eq(a.status, 0);
	ck_assert_int_eq(a.qty, Q(10));
	ck_assert_int_eq(acct_of(&F, 1).balance, C(9000));
	ck_assert_int_eq(acct_of(&F, 1).reserved, 0);
	ck_assert_int_eq(acct_of(&F, 2).balance, C(1000));
	ck_assert_int_eq(pos(&F, 1, "X").amount, Q(10));
	ck_assert_int_eq(pos(&F, 2, "X").amount, 0);
	ck_assert_int_eq(pos(&F, 2, "X").reserved, 0);
	/* An IOC buy with nothing to match: its hold comes back at once. */
	a = call(&F, m_order(1, "X", BUY, Q(5), P(200), SHM_TIF_IOC));
	ck_assert_int_eq(a.status, 0);
	ck_assert_int_eq(a.qty, 0);
	ck_assert_int_eq(acct_of(&F, 1).balance, C(9000));
	ck_assert_int_eq(acct_of(&F, 1).reserved, 0);
	ck_assert_uint_eq(order(&F, a.order_id, NULL).done_reason, SHM_BOOK_DONE_IOC);
	fx_stop(&F);
}
END_TEST

/* A cancel gives back exactly what the open part holds, once. */
START_TEST(cancel_refunds_open_part)
{
	fx_start(&F, 1, 1, 0, SHM_BOOK_STP_NONE);
	ST(&F, m_account(1, C(10000)), 0);
	ST(&F, m_account(2, 0), 0);
	ST(&F, m_shares(2, "X", Q(100)), 0);
	uint64_t buy = order_ok(&F, m_order(1, "X", BUY, Q(100), P(50), SHM_TIF_GTC));
	struct shm_msg a = call(&F, m_order(2, "X", SELL, Q(30), P(50), SHM_TIF_GTC));
	ck_assert_int_eq(a.qty, Q(30));
	ck_assert_int_eq(acct_of(&F, 1).reserved, C(70 * 50));
	ck_assert_int_eq(acct_of(&F, 1).balance, C(10000 - 5000));
	a = call(&F, m_cancel(1, buy));
	ck_assert_int_eq(a.status, 0);
	ck_assert_int_eq(a.qty, Q(70));
	ck_assert_int_eq(a.price, P(50));
	ck_assert_int_eq(acct_of(&F, 1).reserved, 0);
	ck_assert_int_eq(acct_of(&F, 1).balance, C(10000 - 1500));
	struct shm_snap_order o = order(&F, buy, NULL);
	ck_assert_int_eq(o.cancelled, Q(70));
	ck_assert_int_eq(o.executed, Q(30));
	ck_assert_int_eq(o.open, 0);
	ck_assert_uint_eq(o.cancel_time_ns, a.u.r.time_ns);
	ST(&F, m_cancel(1, buy), SHMEX_ENOTOPEN);
	ck_assert_int_eq(acct_of(&F, 1).balance, C(10000 - 1500));

	/* The sell side gives shares back. */
	uint64_t sell = order_ok(&F, m_order(2, "X", SELL, Q(40), P(60), SHM_TIF_GTC));
	ck_assert_int_eq(pos(&F, 2, "X").amount, Q(30));
	ck_assert_int_eq(pos(&F, 2, "X").reserved, Q(40));
	a = call(&F, m_cancel(2, sell));
	ck_assert_int_eq(a.qty, Q(40));
	ck_assert_int_eq(pos(&F, 2, "X").amount, Q(70));
	ck_assert_int_eq(pos(&F, 2, "X").reserved, 0);
	fx_stop(&F);
}
END_TEST

/* A modify reserves more, gives back less, is refused when short, trades
 * at the maker's price when it crosses, and cancels at zero. */
START_TEST(modify_adjusts_reservation)
{
	fx_start(&F, 1, 1, 0, SHM_BOOK_STP_NONE);
	ST(&F, m_account(1, C(10000)), 0);
	ST(&F, m_account(2, 0), 0);
	ST(&F, m_shares(2, "X", Q(100)), 0);
	uint64_t b = order_ok(&F, m_order(1, "X", BUY, Q(10), P(50), SHM_TIF_GTC));
	ck_assert_int_eq(acct_of(&F, 1).reserved, C(500));
	ST(&F, m_modify(1, b, P(60), Q(20)), 0);
	ck_assert_int_eq(acct_of(&F, 1).reserved, C(1200));
	ck_assert_int_eq(acct_of(&F, 1).balance, C(10000 - 1200));
	ST(&F, m_modify(1, b, P(40), Q(5)), 0);
	ck_assert_int_eq(acct_of(&F, 1).reserved, C(200));
	ck_assert_int_eq(acct_of(&F, 1).balance, C(10000 - 200));
	char d0[65], d1[65];
	digest_settled(&F, d0);
	ST(&F, m_modify(1, b, P(40), Q(1000)), SHMEX_ENOFUNDS);
	digest(&F, d1);
	ck_assert_str_eq(d0, d1);

	order_ok(&F, m_order(2, "X", SELL, Q(5), P(45), SHM_TIF_GTC));
	struct shm_msg a = call(&F, m_modify(1, b, P(50), Q(5)));
	ck_assert_int_eq(a.status, 0);
	ck_assert_int_eq(a.qty, 0); /* nothing left open: it traded */
	ck_assert_int_eq(acct_of(&F, 1).reserved, 0);
	ck_assert_int_eq(acct_of(&F, 1).balance, C(10000 - 5 * 45));
	ck_assert_int_eq(acct_of(&F, 2).balance, C(5 * 45));
	ck_assert_int_eq(pos(&F, 1, "X").amount, Q(5));

	uint64_t b2 = order_ok(&F, m_order(1, "X", BUY, Q(10), P(30), SHM_TIF_GTC));
	ST(&F, m_modify(1, b2, P(30), 0), 0);
	ck_assert_int_eq(acct_of(&F, 1).reserved, 0);
	ck_assert_int_eq(acct_of(&F, 1).balance, C(10000 - 5 * 45));
	ck_assert_uint_eq(order(&F, b2, NULL).done_reason, SHM_BOOK_DONE_MODIFY);

	uint64_t s = order_ok(&F, m_order(2, "X", SELL, Q(10), P(70), SHM_TIF_GTC));
	ST(&F, m_modify(2, s, P(70), Q(20)), 0);
	ck_assert_int_eq(pos(&F, 2, "X").reserved, Q(20));
	ck_assert_int_eq(pos(&F, 2, "X").amount, Q(75));
	ST(&F, m_modify(2, s, P(70), Q(1000)), SHMEX_ENOSHARES);
	ck_assert_int_eq(pos(&F, 2, "X").reserved, Q(20));
	fx_stop(&F);
}
END_TEST

/* Self-trades are allowed by default; with --stp the cancels of the
 * prevention give their holds back like any cancel. */
START_TEST(self_trade_modes_settle)
{
	fx_start(&F, 1, 1, 0, SHM_BOOK_STP_NONE);
	ST(&F, m_account(1, C(1000)), 0);
	ST(&F, m_shares(1, "X", Q(10)), 0);
	order_ok(&F, m_order(1, "X", SELL, Q(10), P(50), SHM_TIF_GTC));
	struct shm_msg a = call(&F, m_order(1, "X", BUY, Q(4), P(50), SHM_TIF_GTC));
	ck_assert_int_eq(a.qty, Q(4)); /* traded with itself */
	ck_assert_int_eq(acct_of(&F, 1).balance, C(1000));
	ck_assert_int_eq(acct_of(&F, 1).reserved, 0);
	ck_assert_int_eq(pos(&F, 1, "X").amount, Q(4));
	ck_assert_int_eq(pos(&F, 1, "X").reserved, Q(6));
	fx_stop(&F);

	test_instance(F.inst, sizeof(F.inst));
	fx_start(&F, 1, 1, 0, SHM_BOOK_STP_CANCEL_OLDEST);
	ST(&F, m_account(1, C(1000)), 0);
	ST(&F, m_shares(1, "X", Q(10)), 0);
	uint64_t old = order_ok(&F, m_order(1, "X", SELL, Q(10), P(50), SHM_TIF_GTC));
	a = call(&F, m_order(1, "X", BUY, Q(4), P(50), SHM_TIF_GTC));
	ck_assert_int_eq(a.status, 0);
	ck_assert_int_eq(a.qty, 0);
	ck_assert_uint_eq(order(&F, old, NULL).done_reason, SHM_BOOK_DONE_STP);
	ck_assert_int_eq(pos(&F, 1, "X").amount, Q(10)); /* the sell's shares back */
	ck_assert_int_eq(pos(&F, 1, "X").reserved, 0);
	ck_assert_int_eq(acct_of(&F, 1).reserved, C(200)); /* the buy rests */
	ck_assert_int_eq(acct_of(&F, 1).balance, C(800));
	fx_stop(&F);
}
END_TEST

/* Hostile ring messages: each gets its reject, none changes anything. */
START_TEST(hostile_messages_rejected_without_change)
{
	fx_start(&F, 2, 1, 0, SHM_BOOK_STP_NONE);
	char s0[16], s1[16];
	pick_sym(s0, 0, 2, 0);
	pick_sym(s1, 1, 2, 0);
	uint64_t a0 = 2, a1 = 3; /* home shards 0 and 1 */
	ST(&F, m_account(a0, C(1000)), 0);
	ST(&F, m_account(a1, C(1000)), 0);
	ST(&F, m_shares(a0, s0, Q(100)), 0);
	ST(&F, m_shares(a1, s1, Q(100)), 0);
	uint64_t rest = order_ok(&F, m_order(a0, s0, SELL, Q(10), P(20), SHM_TIF_GTC));
	uint64_t other = order_ok(&F, m_order(a1, s1, SELL, Q(10), P(20), SHM_TIF_GTC));
	order_ok(&F, m_order(a1, s0, BUY, Q(1), P(10), SHM_TIF_GTC));
	char d0[65], d1[65];
	digest_settled(&F, d0);

	struct shm_msg bad[32];
	int want[32];
	int n = 0;
	struct shm_msg m;
	memset(&m, 0, sizeof(m));
	m.type = 99;
	bad[n] = m, want[n++] = SHMEX_EBADMSG;
	m.type = SHM_MSG_NONE;
	bad[n] = m, want[n++] = SHMEX_EBADMSG;
	m = m_order(a0, s0, BUY, Q(1), P(25), SHM_TIF_GTC);
	m.side = 7;
	bad[n] = m, want[n++] = SHMEX_EBADMSG;
	m = m_order(a0, s0, BUY, Q(1), P(25), SHM_TIF_GTC);
	m.tif = 9;
	bad[n] = m, want[n++] = SHMEX_EBADTIF;
	bad[n] = m_order(a0, s0, BUY, Q(1), -5, SHM_TIF_GTC), want[n++] = SHMEX_EBADPRICE;
	bad[n] = m_order(a0, s0, BUY, Q(1), 0, SHM_TIF_GTC), want[n++] = SHMEX_EBADPRICE;
	bad[n] = m_order(a0, s0, BUY, Q(10), INT64_MAX, SHM_TIF_GTC),
	want[n++] = SHMEX_EOVERFLOW;
	bad[n] = m_order(a0, s0, BUY, -1, P(25), SHM_TIF_GTC),
	want[n++] = SHMEX_EBADAMOUNT;
	bad[n] = m_order(a0, s0, SELL, 0, P(25), SHM_TIF_GTC),
	want[n++] = SHMEX_EBADAMOUNT;
	bad[n] = m_order(a0, s1, BUY, Q(1), P(25), SHM_TIF_GTC),
	want[n++] = SHMEX_EWRONGSHARD;
	bad[n] = m_order(77, s0, BUY, Q(1), P(25), SHM_TIF_GTC),
	want[n++] = SHMEX_ENOACCOUNT;
	m = m_order(a0, s0, BUY, Q(1), P(25), SHM_TIF_GTC);
	memcpy(m.u.symbol, "AB$%", 4);
	bad[n] = m, want[n++] = SHMEX_EBADSYMBOL;
	memset(m.u.symbol, 'A', 16); /* no terminator */
	bad[n] = m, want[n++] = SHMEX_EBADSYMBOL;
	memset(m.u.symbol, 0, 16);
	memcpy(m.u.symbol, "AB\0CD", 5); /* bytes after the end */
	bad[n] = m, want[n++] = SHMEX_EBADSYMBOL;
	memset(m.u.symbol, 0, 16); /* empty */
	bad[n] = m, want[n++] = SHMEX_EBADSYMBOL;
	bad[n] = m_account(a1 + 2, C(1)), want[n++] = SHMEX_EWRONGSHARD;
	bad[n] = m_account(a0 + 2, -1), want[n++] = SHMEX_EBADBALANCE;
	bad[n] = m_account(a0 + 2, SHM_CASH_INPUT_MAX + 1), want[n++] = SHMEX_ECASHRANGE;
	bad[n] = m_cancel(a0, 0), want[n++] = SHMEX_ENOORDER;
	bad[n] = m_cancel(a1, other), want[n++] = SHMEX_EWRONGSHARD;
	bad[n] = m_modify(a0, rest, P(20), -1), want[n++] = SHMEX_EBADAMOUNT;
	bad[n] = m_modify(a0, rest, -1, Q(1)), want[n++] = SHMEX_EBADPRICE;
	bad[n] = m_shares(a0, s0, 0), want[n++] = SHMEX_EBADAMOUNT;
	bad[n] = m_shares(a0, s1, Q(1)), want[n++] = SHMEX_EWRONGSHARD;
	for (int i = 0; i < n; i++)
		bad[i].req_id = 1000 + (uint64_t)i;
	/* All at once, in one batch, on shard 0's ring. */
	unsigned done = 0;
	ck_assert_int_eq(shm_ring_enqueue_batch(&F.req[0][0], bad, (unsigned)n, &done),
			 0);
	ck_assert_uint_eq(done, (unsigned)n);
	for (int i = 0; i < n; i++) {
		struct shm_msg a;
		ring_recv(&F.rep[0][0], &a);
		ck_assert_uint_eq(a.req_id, 1000 + (uint64_t)i);
		ck_assert_msg(a.status == want[i], "message %d: %s, expected %s", i,
			      shmex_errname(a.status), shmex_errname(want[i]));
		ck_assert_uint_eq(a.type, SHM_MSG_REPLY);
		ck_assert_uint_eq(a.req_type, bad[i].type);
	}
	digest(&F, d1);
	ck_assert_str_eq(d0, d1);
	/* Still serving. */
	struct shm_msg a = call(&F, m_order(a0, s0, BUY, Q(2), P(20), SHM_TIF_GTC));
	ck_assert_int_eq(a.status, 0);
	ck_assert_int_eq(a.qty, Q(2));
	fx_stop(&F);
}
END_TEST

/* ---- two producer processes, random flow, then conservation ---- */

#define NACCT 8
#define NSYM 4
#define PRODUCER_REQS 3000

static char syms[NSYM][16];

static uint64_t rnd(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

/* Child: gateway g sends random requests, one at a time per request, and
 * checks every reply.  Exit 0 when all is well. */
static int producer(const char *inst, uint32_t g, uint32_t nshards)
{
	struct shm_instance h;
	if (shm_instance_attach(inst, SHM_ROLE_GATEWAY, g, &h) != 0)
		return 10;
	struct shm_ring req[MAXS], rep[MAXS];
	for (uint32_t s = 0; s < nshards; s++)
		if (shm_instance_request_ring(&h, g, s, &req[s]) ||
		    shm_instance_reply_ring(&h, s, g, &rep[s]))
			return 11;
	uint64_t seed = 0x9e3779b97f4a7c15ull * (g + 1);
	uint64_t ids[PRODUCER_REQS];
	uint64_t owner[PRODUCER_REQS];
	int nids = 0;
	for (int i = 0; i < PRODUCER_REQS; i++) {
		struct shm_msg m;
		uint64_t r = rnd(&seed) % 100;
		uint64_t a = 1 + rnd(&seed) % NACCT;
		const char *sym = syms[rnd(&seed) % NSYM];
		int64_t qty = Q(1 + (int64_t)(rnd(&seed) % 50));
		int64_t px = P(90 + (int64_t)(rnd(&seed) % 21));
		if (r < 60 || nids == 0) {
			int tif = rnd(&seed) % 10 == 0   ? SHM_TIF_IOC
				  : rnd(&seed) % 10 == 0 ? SHM_TIF_FOK
							 : SHM_TIF_GTC;
			m = m_order(a, sym, (int)(rnd(&seed) % 2), qty, px, tif);
		} else {
			int k = (int)(rnd(&seed) % (uint64_t)nids);
			uint64_t who = rnd(&seed) % 8 == 0 ? a : owner[k];
			m = r < 85 ? m_cancel(who, ids[k])
				   : m_modify(who, ids[k], px, qty);
		}
		uint32_t s = m.type == SHM_MSG_ORDER
				     ? sym_shard(m.u.symbol, nshards)
				     : shm_shard_of_order(m.order_id, nshards);
		m.req_id = (uint64_t)i + 1;
		unsigned done = 0;
		if (shm_ring_enqueue_batch(&req[s], &m, 1, &done) || done != 1)
			return 12;
		struct shm_msg rp;
		unsigned long long deadline =
			test_now_ns() + REPLY_TIMEOUT_MS * 1000000ull;
		for (;;) {
			unsigned got = 0;
			if (shm_ring_dequeue_batch(&rep[s], &rp, 1, &got))
				return 13;
			if (got)
				break;
			if (test_now_ns() > deadline)
				return 14;
			(void)!shm_ring_wait(&rep[s], 100);
		}
		if (rp.req_id != m.req_id || shm_msg_validate_reply(&rp))
			return 15;
		switch (rp.status) {
		case 0:
			if (m.type == SHM_MSG_ORDER) {
				ids[nids] = rp.order_id;
				owner[nids++] = m.account;
			}
			break;
		case SHMEX_ENOFUNDS:
		case SHMEX_ENOSHARES:
		case SHMEX_ENOTOWNER:
		case SHMEX_ENOTOPEN:
			break;
		default:
			fprintf(stderr, "producer %u: request %d: %s\n", g, i,
				shmex_errname(rp.status));
			return 16;
		}
	}
	shm_instance_detach(&h);
	return 0;
}

/* Reserved cash per account and reserved shares per (account, symbol)
 * recomputed from the books' live orders (quiescent: plain reads). */
static void check_holds(struct fx *f)
{
	int64_t cash[NACCT + 1] = {0};
	int64_t shares[NACCT + 1][NSYM];
	memset(shares, 0, sizeof(shares));
	for (uint32_t s = 0; s < f->nshards; s++) {
		const struct shm_book_view *v = &f->rd[s].view;
		for (uint32_t i = 0; i < v->cap_orders; i++) {
			const struct shm_book_order_sh *o = &v->orders[i];
			if (o->state != SHM_BOOK_ORDER_LIVE)
				continue;
			ck_assert(o->account >= 1 && o->account <= NACCT);
			ck_assert_uint_lt(o->sym, v->cap_symbols);
			if (o->side == BUY) {
				int64_t c;
				ck_assert_int_eq(shm_dec_cash(o->open, o->price, &c), 0);
				cash[o->account] += c;
				continue;
			}
			int k;
			for (k = 0; k < NSYM; k++)
				if (!memcmp(v->symbols[o->sym].name, syms[k],
					    strlen(syms[k]) + 1))
					break;
			ck_assert_int_lt(k, NSYM);
			shares[o->account][k] += o->open;
		}
	}
	for (uint64_t a = 1; a <= NACCT; a++) {
		ck_assert_int_eq(acct_of(f, a).reserved, cash[a]);
		for (int k = 0; k < NSYM; k++)
			ck_assert_int_eq(pos(f, a, syms[k]).reserved, shares[a][k]);
	}
}

START_TEST(conservation_two_producers)
{
	fx_start(&F, 2, 2, 0, SHM_BOOK_STP_NONE);
	for (int k = 0; k < NSYM; k++)
		pick_sym(syms[k], (uint32_t)k % 2, 2, k / 2);
	for (uint64_t a = 1; a <= NACCT; a++) {
		ST(&F, m_account(a, C(100000)), 0);
		for (int k = 0; k < NSYM; k++)
			ST(&F, m_shares(a, syms[k], Q(1000)), 0);
	}
	pid_t kids[2];
	for (uint32_t g = 0; g < 2; g++) {
		kids[g] = fork();
		ck_assert_int_ge(kids[g], 0);
		if (kids[g] == 0)
			_exit(producer(F.inst, g, 2));
	}
	for (int g = 0; g < 2; g++) {
		int st = test_wait_pid(kids[g], 50000);
		ck_assert_msg(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0,
			      "producer %d: status 0x%x", g, st);
	}
	struct shm_accounts_totals t;
	ck_assert_int_eq(shm_accounts_totals(&F.acc, &t), 0);
	ck_assert_uint_eq(t.accounts, NACCT);
	ck_assert_int_eq(t.deposited, C(100000) * NACCT);
	ck_assert_int_eq(t.total_deposited, t.deposited);
	ck_assert_int_eq(t.balance + t.reserved, t.deposited);
	int64_t traded = 0;
	for (int k = 0; k < NSYM; k++) {
		uint32_t s = sym_shard(syms[k], 2), sidx;
		char packed[16];
		ck_assert(shm_symbol_pack(packed, syms[k], strlen(syms[k])));
		ck_assert_int_eq(shm_positions_symbol_find(&F.pos[s], packed, &sidx), 0);
		struct shm_positions_totals pt;
		ck_assert_int_eq(shm_positions_totals(&F.pos[s], sidx, &pt), 0);
		ck_assert_int_eq(pt.created, Q(1000) * NACCT);
		ck_assert_int_eq(pt.amount + pt.reserved, pt.created);
		struct shm_snap_top top;
		uint32_t bsym;
		ck_assert_int_eq(
			shm_snap_symbol_find(&F.rd[s], syms[k], strlen(syms[k]), &bsym),
			0);
		ck_assert_int_eq(shm_snap_top(&F.rd[s], bsym, &top), 0);
		traded += (int64_t)top.trades;
	}
	ck_assert_int_gt(traded, 100); /* the flow really traded */
	check_holds(&F);
	fx_stop(&F);
}
END_TEST

/* Two shards buy for one account at the same time: the global balance is
 * never overdrawn and every reservation is accounted for. */
static int buyer(const char *inst, uint32_t g, const char *sym, int n, int wfd)
{
	struct shm_instance h;
	struct shm_ring req, rep;
	if (shm_instance_attach(inst, SHM_ROLE_GATEWAY, g, &h) ||
	    shm_instance_request_ring(&h, g, g, &req) ||
	    shm_instance_reply_ring(&h, g, g, &rep))
		return 10;
	struct shm_msg batch[64], rp[64];
	int sent = 0, got_n = 0, ok = 0, poor = 0;
	while (got_n < n) {
		int k = 0;
		while (sent < n && k < 64) {
			batch[k] = m_order(7, sym, BUY, Q(1), P(10), SHM_TIF_GTC);
			batch[k].req_id = (uint64_t)++sent;
			k++;
		}
		unsigned done = 0;
		if (k && (shm_ring_enqueue_batch(&req, batch, (unsigned)k, &done) ||
			  done != (unsigned)k))
			return 11;
		int want = sent - got_n;
		unsigned long long deadline =
			test_now_ns() + REPLY_TIMEOUT_MS * 1000000ull;
		while (want > 0) {
			unsigned got = 0;
			if (shm_ring_dequeue_batch(&rep, rp, 64, &got))
				return 12;
			for (unsigned i = 0; i < got; i++) {
				if (rp[i].status == 0)
					ok++;
				else if (rp[i].status == SHMEX_ENOFUNDS)
					poor++;
				else
					return 13;
			}
			got_n += (int)got;
			want -= (int)got;
			if (!got) {
				if (test_now_ns() > deadline)
					return 14;
				(void)!shm_ring_wait(&rep, 100);
			}
		}
	}
	int res[2] = {ok, poor};
	if (write(wfd, res, sizeof(res)) != (ssize_t)sizeof(res))
		return 15;
	shm_instance_detach(&h);
	return 0;
}

START_TEST(shared_account_never_overdrawn)
{
	fx_start(&F, 2, 2, 0, SHM_BOOK_STP_NONE);
	char s0[16], s1[16];
	pick_sym(s0, 0, 2, 0);
	pick_sym(s1, 1, 2, 0);
	ST(&F, m_account(7, C(5000)), 0);
	ST(&F, m_account(8, 0), 0);
	ST(&F, m_shares(8, s0, Q(1)), 0);
	ST(&F, m_shares(8, s1, Q(1)), 0);
	int fds[2];
	ck_assert_int_eq(pipe(fds), 0);
	pid_t kids[2];
	for (uint32_t g = 0; g < 2; g++) {
		kids[g] = fork();
		ck_assert_int_ge(kids[g], 0);
		if (kids[g] == 0)
			_exit(buyer(F.inst, g, g ? s1 : s0, 600, fds[1]));
	}
	int ok = 0, poor = 0;
	for (int g = 0; g < 2; g++) {
		int st = test_wait_pid(kids[g], 30000);
		ck_assert_msg(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0,
			      "buyer %d: status 0x%x", g, st);
		int res[2];
		ck_assert_int_eq(read(fds[0], res, sizeof(res)), (ssize_t)sizeof(res));
		ok += res[0];
		poor += res[1];
	}
	close(fds[0]);
	close(fds[1]);
	/* $5000 buys exactly 500 orders of $10, whoever got there first. */
	ck_assert_int_eq(ok, 500);
	ck_assert_int_eq(poor, 700);
	struct shm_account_view v = acct_of(&F, 7);
	ck_assert_int_eq(v.balance, 0);
	ck_assert_int_eq(v.reserved, C(5000));
	fx_stop(&F);
}
END_TEST

/* ---- process behaviour ---- */

static unsigned long long cpu_ticks(pid_t pid)
{
	char path[64], buf[1024];
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	FILE *fp = fopen(path, "r");
	ck_assert_ptr_nonnull(fp);
	size_t n = fread(buf, 1, sizeof(buf) - 1, fp);
	fclose(fp);
	buf[n] = 0;
	const char *p = strrchr(buf, ')');
	ck_assert_ptr_nonnull(p);
	unsigned long long ut = 0, st = 0;
	/* Fields after the command: state is field 3, utime 14, stime 15. */
	int k = sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu",
		       &ut, &st);
	ck_assert_int_eq(k, 2);
	return ut + st;
}

/* An idle matcher sleeps on the futex: almost no CPU. */
START_TEST(idle_matcher_sleeps)
{
	fx_start(&F, 1, 1, 0, SHM_BOOK_STP_NONE);
	ST(&F, m_account(1, C(10)), 0);
	/* It announces its sleep on the shard's doorbell (it wakes briefly
	 * on every idle tick, so look a few times). */
	struct shm_doorbell_stats ds;
	for (int i = 0; i < 100; i++) {
		shm_doorbell_stats(shm_instance_shard_doorbell(&F.si, 0), &ds);
		if (ds.sleeping)
			break;
		usleep(10000);
	}
	ck_assert(ds.sleeping);
	ck_assert_uint_gt(ds.sleeps, 0);
	usleep(300000);
	unsigned long long t0 = cpu_ticks(F.pid[0]);
	usleep(1000000);
	unsigned long long t1 = cpu_ticks(F.pid[0]);
	long hz = sysconf(_SC_CLK_TCK);
	/* Less than 5% of one CPU over that second (a spinning loop would
	 * show ~100%). */
	ck_assert_msg((long long)(t1 - t0) * 20 <= hz, "%llu ticks in 1 s", t1 - t0);
	/* And it wakes up for work. */
	ST(&F, m_account(2, C(10)), 0);
	fx_stop(&F);
}
END_TEST

/* SIGTERM with a full batch queued: every request is answered, exit 0. */
START_TEST(sigterm_drains_and_exits_zero)
{
	fx_start(&F, 1, 1, 0, SHM_BOOK_STP_NONE);
	ST(&F, m_account(1, C(1000000)), 0);
	ST(&F, m_account(2, 0), 0);
	ST(&F, m_shares(2, "X", Q(100000)), 0);
	enum { N = 600 };
	static struct shm_msg q[N];
	for (int i = 0; i < N; i++) {
		q[i] = i % 2 ? m_order(1, "X", BUY, Q(1), P(10 + i % 7), SHM_TIF_GTC)
			     : m_order(2, "X", SELL, Q(1), P(12 + i % 5), SHM_TIF_GTC);
		q[i].req_id = 5000 + (uint64_t)i;
	}
	unsigned done = 0;
	ck_assert_int_eq(shm_ring_enqueue_batch(&F.req[0][0], q, N, &done), 0);
	ck_assert_uint_eq(done, N);
	kill(F.pid[0], SIGTERM);
	int st = test_wait_pid(F.pid[0], 10000);
	F.pid[0] = 0;
	ck_assert_msg(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0, "status 0x%x",
		      st);
	/* The member slot is cleared on the way out. */
	int32_t pid;
	uint64_t start;
	shm_instance_member(&F.si, SHM_ROLE_MATCHER, 0, &pid, &start);
	ck_assert_int_eq(pid, 0);
	for (int i = 0; i < N; i++) {
		struct shm_msg a;
		unsigned got = 0;
		ck_assert_int_eq(shm_ring_dequeue_batch(&F.rep[0][0], &a, 1, &got), 0);
		ck_assert_msg(got == 1, "only %d replies", i);
		ck_assert_uint_eq(a.req_id, 5000 + (uint64_t)i);
		ck_assert_int_eq(a.status, 0);
	}
	unsigned got = 1;
	struct shm_msg extra;
	ck_assert_int_eq(shm_ring_dequeue_batch(&F.rep[0][0], &extra, 1, &got), 0);
	ck_assert_uint_eq(got, 0);
	/* Conservation after the drain. */
	struct shm_accounts_totals t;
	ck_assert_int_eq(shm_accounts_totals(&F.acc, &t), 0);
	ck_assert_int_eq(t.balance + t.reserved, C(1000000));
	struct shm_position_view p1 = pos(&F, 1, "X"), p2 = pos(&F, 2, "X");
	ck_assert_int_eq(p1.amount + p1.reserved + p2.amount + p2.reserved, Q(100000));
	ck_assert_int_gt(p1.amount, 0);
	fx_stop(&F);
}
END_TEST

/* A gateway that does not read its replies: the matcher parks them, stops
 * taking that gateway's requests, keeps serving the other gateway, and
 * delivers everything, in order, once replies are read. */
START_TEST(full_reply_ring_parks_replies)
{
	/* Batches of 4: the matcher parks at most 4 batches (16 replies)
	 * per gateway before it stops reading that gateway's ring. */
	ring_capacity = 16;
	fx_batch = 4;
	fx_start(&F, 1, 2, 0, SHM_BOOK_STP_NONE);
	ST(&F, m_account(1, C(1000000)), 0);
	enum { N = 48 };
	struct shm_msg q[16];
	uint64_t next = 100;
	int sent = 0;
	/* Keep gateway 0's request ring full until N are sent. */
	unsigned long long deadline = test_now_ns() + 10000000000ull;
	while (sent < N) {
		int k = 0;
		while (k < 16 && sent + k < N) {
			q[k] = m_order(1, "X", BUY, Q(1), P(1), SHM_TIF_GTC);
			q[k].req_id = next + (uint64_t)(sent + k);
			k++;
		}
		unsigned done = 0;
		ck_assert_int_eq(
			shm_ring_enqueue_batch(&F.req[0][0], q, (unsigned)k, &done), 0);
		sent += (int)done;
		if (done < (unsigned)k) {
			ck_assert_msg(test_now_ns() < deadline, "matcher took only %d",
				      sent);
			usleep(1000);
		}
	}
	/* 16 replies fill the reply ring, 16 more are parked, 16 requests
	 * wait in the request ring: the matcher stopped taking them. */
	usleep(200000);
	struct shm_ring_stats rs;
	shm_ring_stats(&F.req[0][0], &rs);
	ck_assert_uint_eq(rs.depth, 16);
	shm_ring_stats(&F.rep[0][0], &rs);
	ck_assert_uint_eq(rs.depth, 16);
	/* The other gateway is served meanwhile. */
	struct shm_msg m = m_account(2, C(1));
	m.req_id = 7;
	unsigned done = 0;
	ck_assert_int_eq(shm_ring_enqueue_batch(&F.req[1][0], &m, 1, &done), 0);
	struct shm_msg a;
	ring_recv(&F.rep[0][1], &a);
	ck_assert_uint_eq(a.req_id, 7);
	ck_assert_int_eq(a.status, 0);
	/* Now read: all N replies, in order, once each; the symbol does not
	 * exist, so each is SHMEX_ENOSYMBOL and nothing was reserved. */
	for (int i = 0; i < N; i++) {
		ring_recv(&F.rep[0][0], &a);
		ck_assert_uint_eq(a.req_id, next + (uint64_t)i);
		ck_assert_int_eq(a.status, SHMEX_ENOSYMBOL);
	}
	unsigned got = 1;
	ck_assert_int_eq(shm_ring_dequeue_batch(&F.rep[0][0], &a, 1, &got), 0);
	ck_assert_uint_eq(got, 0);
	ck_assert_int_eq(acct_of(&F, 1).balance, C(1000000));
	fx_stop(&F);
}
END_TEST

/* Startup: stale leftovers are removed, a live owner is refused, a bad
 * shard is refused, and errors name the object. */
START_TEST(startup_protocol)
{
	fx_create(&F, 1, 1);
	/* A leftover book.0 whose creator died. */
	pid_t k = fork();
	ck_assert_int_ge(k, 0);
	if (k == 0) {
		struct shm_region r;
		_exit(shm_region_create(&r, F.inst, "book.0", SHM_KIND_BOOK, 4096, NULL,
					0, 0600)
			      ? 1
			      : 0);
	}
	int st = test_wait_pid(k, 5000);
	ck_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	/* control, rings, ledger.0, accounts, the leftover book.0 */
	ck_assert_int_eq(test_count_objects(F.inst), 5);
	fx_spawn(&F, 0);
	fx_wait_ready(&F, 0);
	ck_assert_int_eq(test_count_objects(F.inst), 7); /* + positions, readers */

	char err[256];
	tmp_path(err, sizeof(err), "err");
	const char *twin[] = {
		test_bin("shmex-matcher"), "--instance", F.inst, "--shard", "0", NULL};
	ck_assert_int_eq(run_prog(twin, NULL, err, 10000), 1);
	ck_assert_ptr_nonnull(strstr(slurp(err), "in use by live process"));
	/* The live matcher was not disturbed. */
	int32_t pid;
	uint64_t start;
	shm_instance_member(&F.si, SHM_ROLE_MATCHER, 0, &pid, &start);
	ck_assert_int_eq(pid, F.pid[0]);
	ST(&F, m_account(1, C(1)), 0);

	const char *range[] = {
		test_bin("shmex-matcher"), "--instance", F.inst, "--shard", "3", NULL};
	ck_assert_int_eq(run_prog(range, NULL, err, 10000), 1);
	ck_assert_ptr_nonnull(strstr(slurp(err), "out of range"));
	unlink(err);
	fx_stop(&F);
}
END_TEST

START_TEST(command_line)
{
	char out[256], err[256], want[256];
	tmp_path(out, sizeof(out), "out");
	tmp_path(err, sizeof(err), "err");
	const char *help[] = {test_bin("shmex-matcher"), "--help", NULL};
	ck_assert_int_eq(run_prog(help, out, err, 5000), 0);
	ck_assert_ptr_nonnull(strstr(slurp(out), "usage: shmex-matcher"));
	const char *ver[] = {test_bin("shmex-matcher"), "--version", NULL};
	ck_assert_int_eq(run_prog(ver, out, err, 5000), 0);
	char lay[32];
	snprintf(lay, sizeof(lay), "layout %u ", SHM_LAYOUT_VERSION);
	ck_assert_ptr_nonnull(strstr(slurp(out), lay));
	const char *bogus[] = {test_bin("shmex-matcher"), "--bogus", NULL};
	ck_assert_int_eq(run_prog(bogus, out, err, 5000), 2);
	const char *none[] = {test_bin("shmex-matcher"), NULL};
	ck_assert_int_eq(run_prog(none, out, err, 5000), 2);
	const char *badnum[] = {
		test_bin("shmex-matcher"), "--instance", "x", "--shard", "1x", NULL};
	ck_assert_int_eq(run_prog(badnum, out, err, 5000), 2);
	const char *extra[] = {test_bin("shmex-matcher"),
			       "--instance",
			       "x",
			       "--shard",
			       "0",
			       "junk",
			       NULL};
	ck_assert_int_eq(run_prog(extra, out, err, 5000), 2);
	const char *missing[] = {
		test_bin("shmex-matcher"), "--instance", F.inst, "--shard", "0", NULL};
	ck_assert_int_eq(run_prog(missing, out, err, 5000), 1);
	snprintf(want, sizeof(want),
		 "shm_open /shmex.%s.control: No such file or directory", F.inst);
	ck_assert_msg(strstr(slurp(err), want), "stderr: %s", slurp(err));
	ck_assert_int_eq(test_count_objects(F.inst), 0);
	unlink(out);
	unlink(err);
}
END_TEST

/* ---- shmex-replay --through-shm gives the in-process report ---- */

static void replay_same(const char *const *args_a, const char *const *args_b)
{
	char out_a[256], out_b[256], err[256];
	tmp_path(out_a, sizeof(out_a), "ra");
	tmp_path(out_b, sizeof(out_b), "rb");
	tmp_path(err, sizeof(err), "re");
	ck_assert_int_eq(run_prog(args_a, out_a, err, 60000), 0);
	ck_assert_int_eq(run_prog(args_b, out_b, err, 60000), 0);
	char *a = strdup(slurp(out_a));
	char *b = slurp(out_b);
	ck_assert_uint_gt(strlen(a), 0);
	ck_assert_msg(!strcmp(a, b), "reports differ:\n%.300s\n---\n%.300s", a, b);
	free(a);
	unlink(out_a);
	unlink(out_b);
	unlink(err);
}

static int replay_objects_left(void)
{
	/* shmex-replay names its instance replay-<its pid>; none may stay. */
	char cmd[] = "ls /dev/shm 2>/dev/null | grep -c '^shmex\\.replay-' ";
	FILE *p = popen(cmd, "r");
	int n = 0;
	if (p) {
		if (fscanf(p, "%d", &n) != 1)
			n = 0;
		pclose(p);
	}
	return n;
}

START_TEST(replay_through_shm_matches_batteries)
{
	static const char *const files[] = {"flash1-edge-cases/cases.json",
					    "liquibook-ioc-fok/cases.json"};
	int before = replay_objects_left();
	for (int i = 0; i < 2; i++) {
		const char *f = test_conformance(files[i]);
		/* Full report lines (every case, in order). */
		const char *a[] = {test_bin("shmex-replay"), f, NULL};
		const char *b[] = {test_bin("shmex-replay"), "--through-shm", f, NULL};
		replay_same(a, b);
		/* And every case passes its expected reports, hash and book
		 * states, read from the shared book. */
		const char *c[] = {test_bin("shmex-replay"), "--through-shm", "--check",
				   f, NULL};
		ck_assert_int_eq(run_prog(c, "/dev/null", "/dev/null", 60000), 0);
	}
	ck_assert_int_eq(replay_objects_left(), before);
}
END_TEST

START_TEST(replay_through_shm_matches_workload)
{
	const char *f =
		test_conformance("flash1-workloads/orders_normal_s23_n1000000.bin.xz");
	/* A prefix by default (seconds); the whole 2M messages with
	 * SHMEX_TEST_FULL=1. */
	const char *limit = getenv("SHMEX_TEST_FULL") ? "0" : "300000";
	if (!strcmp(limit, "0")) {
		const char *b[] = {
			test_bin("shmex-replay"),
			"--through-shm",
			"--counts",
			"--expect",
			"e9b2e3926854410b01a035aeb25dd05f1e597c233be8263de9eb49b6713d367e",
			f,
			NULL};
		ck_assert_int_eq(run_prog(b, "/dev/null", "/dev/null", 120000), 0);
		return;
	}
	const char *a[] = {test_bin("shmex-replay"),
			   "--sha256",
			   "--counts",
			   "--limit",
			   limit,
			   f,
			   NULL};
	const char *b[] = {test_bin("shmex-replay"),
			   "--through-shm",
			   "--sha256",
			   "--counts",
			   "--limit",
			   limit,
			   f,
			   NULL};
	replay_same(a, b);
}
END_TEST

static Suite *eng_matcher_suite(void)
{
	Suite *s = suite_create("eng_matcher");
	TCase *tc = tcase_create("rules");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, handout_example_through_rings);
	tcase_add_test(tc, rejections_change_nothing);
	tcase_add_test(tc, book_full_releases_reservation);
	tcase_add_test(tc, done_window_keeps_the_last_finished_orders);
	tcase_add_test(tc, price_improvement_refund);
	tcase_add_test(tc, cancel_refunds_open_part);
	tcase_add_test(tc, modify_adjusts_reservation);
	tcase_add_test(tc, self_trade_modes_settle);
	tcase_add_test(tc, hostile_messages_rejected_without_change);
	suite_add_tcase(s, tc);

	tc = tcase_create("processes");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, conservation_two_producers);
	tcase_add_test(tc, shared_account_never_overdrawn);
	tcase_add_test(tc, idle_matcher_sleeps);
	tcase_add_test(tc, sigterm_drains_and_exits_zero);
	tcase_add_test(tc, full_reply_ring_parks_replies);
	tcase_add_test(tc, startup_protocol);
	tcase_add_test(tc, command_line);
	suite_add_tcase(s, tc);

	tc = tcase_create("replay");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 150);
	tcase_add_test(tc, replay_through_shm_matches_batteries);
	tcase_add_test(tc, replay_through_shm_matches_workload);
	suite_add_tcase(s, tc);
	return s;
}

SHMEX_TEST_MAIN(eng_matcher_suite)
