/*
 * durability_suite: what a crash may not take away (docs/durability.md).
 * Each test starts the real `shmex` supervisor with its own data
 * directory, trades over TCP, kills processes with SIGKILL (one matcher,
 * or every process of the exchange at once), and checks that what clients
 * were told is still true afterwards: order statuses byte for byte (times
 * included), balances, reservations and positions, order ids never handed
 * out twice, cash and shares conserved.  The cross-shard test holds one
 * shard's journal back (SHMEX_FAULT_HOLD) to crash exactly between a
 * credit on one shard and a debit that would rely on it on the other.
 */
#include "tests/shmex_test.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "shm/shm_accounts.h"
#include "shm/shm_dec.h"
#include "shm/shm_instance.h"
#include "shm/shm_journal.h"
#include "shm/shm_msg.h"
#include "shm/shm_positions.h"
#include "shm/shm_shard.h"
#include "shm/shm_snap.h"
#include "tests/client.h"

#define T_MS 15000
#define CAPS                                                                           \
	"--orders", "8192", "--levels", "1024", "--fills", "32768", "--symbols", "64", \
		"--accounts", "4096", "--positions", "16384", "--quiet"

static char inst[64];
static char ddir[PATH_MAX];
static struct exchange ex;

/* As in gw_e2e: a failed assertion skips the checked teardown, so the
 * runner removes the instances its tests noted. */
static void note_instance(const char *name)
{
	test_note_instance("durability", name);
}

static void cleanup_noted(void)
{
	test_cleanup_noted("durability");
}

/* Up to 30 s: a SIGKILLed matcher inside fdatasync dies only when the
 * disk answers, which on a loaded machine can take seconds. */
static void wait_gone(pid_t pid)
{
	bool gone = test_pid_gone(pid);
	for (int t = 0; t < 3000 && !gone; t++) {
		usleep(10000);
		gone = test_pid_gone(pid);
	}
	ck_assert_msg(gone, "process %d did not die", (int)pid);
}

/* A fresh instance name and data directory. */
static void fresh(void)
{
	test_instance(inst, sizeof(inst));
	note_instance(inst);
	const char *root = getenv("SHMEX_TEST_DATA");
	snprintf(ddir, sizeof(ddir), "%s/%s", root && *root ? root : "/tmp", inst);
}

/* Starts shmex on the current instance and data directory. */
static void start(const char *const *more)
{
	char dd[PATH_MAX + 16];
	snprintf(dd, sizeof(dd), "--data-dir=%s", ddir);
	const char *argv[40] = {CAPS, dd};
	int n = 0;
	while (argv[n])
		n++;
	for (int i = 0; more && more[i] && n < 38; i++)
		argv[n++] = more[i];
	argv[n] = NULL;
	int rc = exchange_start(&ex, test_bin("shmex"), inst, argv, 30000);
	ck_assert_msg(rc == 0, "shmex did not start");
}

/* SIGTERM, exit 0, no child left, nothing in /dev/shm. */
static void stop_clean(void)
{
	pid_t all[64];
	int n = exchange_children(&ex, all, 64);
	int st = exchange_stop(&ex, 30000);
	ck_assert_msg(st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0,
		      "shmex exit status 0x%x", st);
	for (int i = 0; i < n; i++)
		wait_gone(all[i]);
	ck_assert_int_eq(test_count_objects(inst), 0);
}

/* SIGKILL of the supervisor and every child at the same moment. */
static void kill_everything(void)
{
	/* Up to 30 s each (see wait_gone). */
	int n = exchange_kill_all(&ex, 30000);
	ck_assert_msg(n > 0, "kill of everything: %s",
		      n < 0 ? "a process did not die" : "no children");
}

/* Round `round` of `rounds` that check the state a start recovers: the
 * first ends in a kill of everything, the others in a clean stop; every
 * round but the last starts the exchange again. */
static void crash_or_stop(int round, int rounds)
{
	if (round == 0)
		kill_everything();
	else
		stop_clean();
	if (round < rounds - 1)
		start(NULL);
}

static bool mounted; /* ddir is a tmpfs of the full-disk test */

static void teardown(void)
{
	unsetenv("SHMEX_FAULT_HOLD");
	if (ex.pid > 0) {
		pid_t all[64];
		int n = exchange_children(&ex, all, 64);
		kill(ex.pid, SIGKILL);
		waitpid(ex.pid, NULL, 0);
		for (int i = 0; i < n; i++)
			kill(all[i], SIGKILL);
		ex.pid = 0;
	}
	if (ex.out_fd >= 0)
		close(ex.out_fd);
	ex.out_fd = -1;
	usleep(50000);
	test_cleanup_instance(inst);
	if (mounted)
		(void)umount2(ddir, MNT_DETACH);
	mounted = false;
}

static void conn(struct client *c)
{
	ck_assert_int_eq(client_connect(c, "127.0.0.1", ex.port, T_MS), 0);
}

/* The reply to xml in canonical form, times included (a recovered
 * order must answer exactly as before).  Owned by the caller. */
static char *ask(struct client *c, const char *xml)
{
	const char *rep;
	size_t len;
	int rc = client_request(c, xml, &rep, &len, T_MS);
	ck_assert_msg(rc == 0, "request failed: %s", strerror(-rc));
	char *out = malloc(65536);
	ck_assert_ptr_nonnull(out);
	ck_assert_int_eq(xml_canon(rep, len, out, 65536, 0), 0);
	return out;
}

/* Sends xml and checks that every child of the reply is <created>. */
static void create(struct client *c, const char *xml, int nchildren)
{
	char *got = ask(c, xml);
	ck_assert_msg(strstr(got, "error") == NULL, "%s", got);
	int n = 0;
	for (const char *p = got; (p = strstr(p, "created[")) != NULL; p++)
		n++;
	ck_assert_msg(n == nchildren, "%s", got);
	free(got);
}

/* A symbol of shard k of 2. */
static const char *sym_on(uint32_t k)
{
	static char names[2][8];
	for (int i = 0; i < 1000; i++) {
		char s[8];
		snprintf(s, sizeof(s), "S%d", i);
		if (shm_shard_of_symbol(s, strlen(s), 2) == k) {
			snprintf(names[k], sizeof(names[k]), "%s", s);
			return names[k];
		}
	}
	ck_abort_msg("no symbol of shard %u", k);
	return NULL;
}

/* Places one order; its id (0 when the reply is not <opened>, with the
 * reply in *why when why is not NULL). */
static uint64_t order(struct client *c, int account, const char *sym, const char *amount,
		      const char *limit, char **why)
{
	char xml[512];
	snprintf(xml, sizeof(xml),
		 "<transactions id=\"%d\"><order sym=\"%s\" amount=\"%s\" "
		 "limit=\"%s\"/></transactions>",
		 account, sym, amount, limit);
	const char *rep;
	size_t len;
	ck_assert_int_eq(client_request(c, xml, &rep, &len, T_MS), 0);
	struct xdoc d;
	ck_assert_int_eq(xdoc_parse(&d, rep, len), 0);
	int k = xdoc_child(&d, 0, 0);
	uint64_t id = 0;
	if (k > 0 && !strcmp(d.nodes[k].name, "opened"))
		id = strtoull(xnode_attr(&d.nodes[k], "id"), NULL, 10);
	if (why)
		*why = id ? NULL : strndup(rep, len);
	else
		ck_assert_msg(id > 0, "order not opened: %.*s", (int)len, rep);
	xdoc_free(&d);
	return id;
}

/* The status of an order as its owner's <query> shows it. */
static char *status(struct client *c, int account, uint64_t id)
{
	char xml[256];
	snprintf(xml, sizeof(xml),
		 "<transactions id=\"%d\"><query id=\"%llu\"/></transactions>", account,
		 (unsigned long long)id);
	return ask(c, xml);
}

static struct shm_account_view account(uint64_t id)
{
	struct shm_accounts a;
	ck_assert_int_eq(shm_accounts_attach(&a, inst, SHM_RDONLY), 0);
	struct shm_account_view v;
	ck_assert_int_eq(shm_accounts_read(&a, id, &v), 0);
	shm_accounts_detach(&a);
	return v;
}

static struct shm_position_view position(uint64_t id, const char *sym)
{
	char name[16];
	ck_assert(shm_symbol_pack(name, sym, strlen(sym)));
	struct shm_positions p;
	uint32_t shard = shm_shard_of_symbol(sym, strlen(sym), 2);
	ck_assert_int_eq(shm_positions_attach(&p, inst, shard, SHM_RDONLY), 0);
	struct shm_position_view v;
	int rc = shm_positions_read(&p, id, name, &v);
	if (rc == SHMEX_ENOSHARES)
		memset(&v, 0, sizeof(v));
	else
		ck_assert_int_eq(rc, 0);
	shm_positions_detach(&p);
	return v;
}

static int64_t C(int64_t dollars)
{
	return dollars * SHM_CASH_ONE;
}

static int64_t Q(int64_t shares)
{
	return shares * SHM_QTY_ONE;
}

/* ---- one shard's matcher dies ---- */

/* Two traders on both shards: orders resting, filled, partly filled. */
struct scene {
	const char *a, *b; /* symbols of shard 0 and shard 1 */
	uint64_t id[4];
	int owner[4];
};

static void set_scene(struct client *c, struct scene *sc)
{
	sc->a = sym_on(0);
	sc->b = sym_on(1);
	char xml[512];
	snprintf(xml, sizeof(xml),
		 "<create><account id=\"1\" balance=\"100000\"/>"
		 "<account id=\"2\" balance=\"1000\"/>"
		 "<symbol sym=\"%s\"><account id=\"2\">500</account></symbol>"
		 "<symbol sym=\"%s\"><account id=\"2\">500</account></symbol></create>",
		 sc->a, sc->b);
	create(c, xml, 4);
	sc->id[0] = order(c, 2, sc->b, "-100", "10", NULL); /* rests */
	sc->id[1] = order(c, 1, sc->b, "60", "11", NULL);   /* 60 @ 10 */
	sc->id[2] = order(c, 1, sc->b, "20", "9", NULL);    /* rests */
	sc->id[3] = order(c, 2, sc->a, "-50", "20", NULL);  /* rests */
	sc->owner[0] = 2;
	sc->owner[1] = 1;
	sc->owner[2] = 1;
	sc->owner[3] = 2;
}

/* Connects c, sets the scene and keeps each order's status as its owner
 * sees it (before[i], owned by the caller). */
static void scene_and_statuses(struct client *c, struct scene *sc, char *before[4])
{
	conn(c);
	set_scene(c, sc);
	for (int i = 0; i < 4; i++)
		before[i] = status(c, sc->owner[i], sc->id[i]);
}

START_TEST(dead_matcher_comes_back_while_others_trade)
{
	fresh();
	start(NULL);
	struct client c;
	struct scene sc;
	char *before[4];
	scene_and_statuses(&c, &sc, before);

	pid_t m1 = exchange_child(&ex, "shmex-matcher", 1);
	ck_assert_int_gt(m1, 0);
	kill(m1, SIGKILL);
	wait_gone(m1);
	/* Shard 0 trades meanwhile (10 of the 50 @ 20). */
	uint64_t o5 = order(&c, 1, sc.a, "10", "20", NULL);
	/* An order for shard 1 waits in its ring until the shard is back. */
	uint64_t o6 = order(&c, 1, sc.b, "1", "5", NULL);
	pid_t m1b = exchange_child(&ex, "shmex-matcher", 1);
	ck_assert(m1b > 0 && m1b != m1);
	ck_assert_int_eq(kill(ex.pid, 0), 0); /* the exchange never stopped */

	/* Everything acknowledged on shard 1 before the crash answers as
	 * before (the shard 0 sell has since sold 10 to o5). */
	for (int i = 0; i < 4; i++) {
		char *now = status(&c, sc.owner[i], sc.id[i]);
		if (i < 3)
			ck_assert_str_eq(now, before[i]);
		else
			ck_assert_msg(strstr(now, "open[shares=40] executed[price=20 "
						  "shares=10"),
				      "%s", now);
		free(now);
		free(before[i]);
		ck_assert_uint_ne(o6, sc.id[i]); /* ids are never reused */
	}
	ck_assert_uint_ne(o5, o6);
	/* Cash: 1 paid 600 + 200, holds 180 + 5; 2 got 800. */
	struct shm_account_view v1 = account(1), v2 = account(2);
	ck_assert_int_eq(v1.balance, C(100000 - 600 - 200 - 180 - 5));
	ck_assert_int_eq(v1.reserved, C(180 + 5));
	ck_assert_int_eq(v2.balance, C(1000 + 600 + 200));
	ck_assert_int_eq(v2.reserved, 0);
	struct shm_position_view pb = position(2, sc.b), pa = position(2, sc.a);
	ck_assert_int_eq(pb.amount, Q(400));
	ck_assert_int_eq(pb.reserved, Q(40));
	ck_assert_int_eq(pa.amount, Q(450));
	ck_assert_int_eq(pa.reserved, Q(40));
	ck_assert_int_eq(position(1, sc.b).amount, Q(60));
	ck_assert_int_eq(position(1, sc.a).amount, Q(10));
	/* And it trades on: 5 more of the 40 left @ 10. */
	order(&c, 1, sc.b, "5", "10", NULL);
	ck_assert_int_eq(account(2).balance, C(1000 + 600 + 200 + 50));
	client_close(&c);
	stop_clean();
}
END_TEST

/* ---- the whole exchange dies ---- */

/* An account created with nothing in it is still an account after a
 * crash of everything (it used to be recreated only with a deposit). */
START_TEST(account_created_empty_survives_kill_of_everything)
{
	fresh();
	start(NULL);
	struct client c;
	conn(&c);
	const char *a = sym_on(0);
	char xml[512];
	snprintf(
		xml, sizeof(xml),
		"<create><account id=\"2\" balance=\"0\"/><account id=\"4\" balance=\"0\"/>"
		"<account id=\"1\" balance=\"1000\"/>"
		"<symbol sym=\"%s\"><account id=\"2\">10</account></symbol></create>",
		a);
	create(&c, xml, 4);
	(void)order(&c, 2, a, "-5", "10", NULL);
	(void)order(&c, 1, a, "5", "10", NULL);
	client_close(&c);
	kill_everything();
	start(NULL);
	struct shm_account_view v2 = account(2), v4 = account(4);
	ck_assert_int_eq(v2.balance, C(50));
	ck_assert_int_eq(v4.balance, 0);
	stop_clean();
}
END_TEST

START_TEST(everything_killed_recovers_exact_state)
{
	fresh();
	start(NULL);
	struct client c;
	struct scene sc;
	char *before[4];
	scene_and_statuses(&c, &sc, before);
	struct shm_account_view a1 = account(1), a2 = account(2);
	client_close(&c);

	/* Killed, then stopped cleanly: both starts recover the same. */
	for (int round = 0; round < 2; round++) {
		if (round == 0)
			kill_everything();
		else
			stop_clean();
		start(NULL);
		conn(&c);
		for (int i = 0; i < 4; i++) {
			char *now = status(&c, sc.owner[i], sc.id[i]);
			ck_assert_str_eq(now, before[i]);
			free(now);
		}
		struct shm_account_view b1 = account(1), b2 = account(2);
		ck_assert_int_eq(b1.balance, a1.balance);
		ck_assert_int_eq(b1.reserved, a1.reserved);
		ck_assert_int_eq(b2.balance, a2.balance);
		ck_assert_int_eq(b2.reserved, a2.reserved);
		ck_assert_int_eq(b1.deposited, a1.deposited);
		ck_assert_int_eq(position(2, sc.b).reserved, Q(40));
		/* The book kept time priority: the resting sell still fills
		 * first, at its price. */
		client_close(&c);
	}
	conn(&c);
	uint64_t o = order(&c, 1, sc.b, "1", "12", NULL);
	for (int i = 0; i < 4; i++)
		ck_assert_uint_ne(o, sc.id[i]);
	char *st = status(&c, 1, o);
	char want[128];
	snprintf(want, sizeof(want),
		 "results(status[id=%llu](executed[price=10 shares=1 ",
		 (unsigned long long)o);
	ck_assert_msg(strncmp(st, want, strlen(want)) == 0, "%s", st);
	free(st);
	for (int i = 0; i < 4; i++)
		free(before[i]);
	client_close(&c);
	stop_clean();
}
END_TEST

/* ---- 128-bit cash (issue 10 item 6) ---- */

static shm_cash_t D(int64_t dollars)
{
	return (shm_cash_t)dollars * SHM_CASH_ONE;
}

/* The account's cash as text, so that a mismatch names both values. */
static void cash_is(uint64_t id, shm_cash_t bal, shm_cash_t res)
{
	struct shm_account_view v = account(id);
	char g[SHM_DEC_CASH_BUF], w[SHM_DEC_CASH_BUF];
	ck_assert_int_gt(shm_dec_format_cash(g, sizeof(g), v.balance), 0);
	ck_assert_int_gt(shm_dec_format_cash(w, sizeof(w), bal), 0);
	ck_assert_msg(v.balance == bal, "account %llu balance %s, want %s",
		      (unsigned long long)id, g, w);
	ck_assert_int_gt(shm_dec_format_cash(g, sizeof(g), v.reserved), 0);
	ck_assert_int_gt(shm_dec_format_cash(w, sizeof(w), res), 0);
	ck_assert_msg(v.reserved == res, "account %llu reserved %s, want %s",
		      (unsigned long long)id, g, w);
}

/* Ten accounts of 10^10 dollars, then 10^15 and 10^18 (the old int64
 * total of all deposits stopped at 9.2 x 10^10: the tenth got "Numeric
 * overflow"); trades at those balances are exact to the cent, a sell
 * from the account at the maximum is accepted, and a kill of everything
 * and a clean restart (journal, then snapshot) bring back the exact
 * 128-bit balances. */
START_TEST(balances_of_1e15_trade_and_recover_exactly)
{
	fresh();
	start(NULL);
	struct client c;
	conn(&c);
	const char *b = sym_on(1);
	char xml[1024];
	for (int i = 0; i < 10; i++) {
		snprintf(xml, sizeof(xml),
			 "<create><account id=\"%d\" balance=\"10000000000\"/></create>",
			 100 + i);
		create(&c, xml, 1);
	}
	snprintf(xml, sizeof(xml),
		 "<create><account id=\"1\" balance=\"1000000000000000\"/>"
		 "<account id=\"2\" balance=\"1000000000000000\"/>"
		 "<account id=\"3\" balance=\"1000000000000000000\"/>"
		 "<symbol sym=\"%s\"><account id=\"2\">1000000</account>"
		 "<account id=\"3\">1000</account></symbol></create>",
		 b);
	create(&c, xml, 5);
	/* Above the documented maximum: a clear "out of range". */
	char *got = ask(&c, "<create><account id=\"4\" "
			    "balance=\"1000000000000000000.00000001\"/></create>");
	ck_assert_msg(strstr(got, "out of range") && !strstr(got, "Numeric overflow"),
		      "%s", got);
	free(got);

	order(&c, 2, b, "-1000000", "1000", NULL); /* rests */
	order(&c, 1, b, "500000", "1001", NULL);   /* 500000 @ 1000 */
	order(&c, 1, b, "10", "999.99", NULL);     /* rests: 9999.9 */
	char *why = NULL;
	uint64_t s3 = order(&c, 3, b, "-100", "1000", &why); /* at the max */
	ck_assert_msg(s3 > 0, "sell of the richest account refused: %s", why);
	free(why);
	order(&c, 1, b, "500100", "1000", NULL); /* the rest of 2, all of 3 */
	client_close(&c);

	const shm_cash_t held = D(9999) + SHM_CASH_ONE * 9 / 10;
	const shm_cash_t b1 = D(1000000000000000) - D(500000000) - D(500100000) - held;
	const shm_cash_t b2 = D(1000000000000000) + D(1000000000);
	const shm_cash_t b3 = D(1000000000000000000) + D(100000);
	for (int round = 0; round < 3; round++) {
		cash_is(1, b1, held);
		cash_is(2, b2, 0);
		cash_is(3, b3, 0);
		cash_is(109, D(10000000000), 0);
		ck_assert_int_eq(position(1, b).amount, Q(1000100));
		ck_assert_int_eq(position(3, b).amount, Q(900));
		crash_or_stop(round, 3);
	}
}
END_TEST

/* `shmex-query --json account id` of the current instance into out. */
static void query_account(uint64_t id, char *out, size_t cap)
{
	char cmd[PATH_MAX + 128];
	snprintf(cmd, sizeof(cmd), "'%s' --instance %s --json account %llu 2>&1",
		 test_bin("shmex-query"), inst, (unsigned long long)id);
	FILE *f = popen(cmd, "r");
	ck_assert_ptr_nonnull(f);
	size_t n = fread(out, 1, cap - 1, f);
	out[n] = 0;
	int st = pclose(f);
	ck_assert_msg(st == 0, "shmex-query status 0x%x: %s", st, out);
}

static void shares_are(uint64_t id, const char *sym, shm_shares_t amount,
		       shm_shares_t reserved)
{
	struct shm_position_view v = position(id, sym);
	char g[SHM_DEC_128_BUF], w[SHM_DEC_128_BUF];
	ck_assert_int_gt(shm_dec_format128(g, sizeof(g), v.amount, SHM_QTY_DIGITS), 0);
	ck_assert_int_gt(shm_dec_format128(w, sizeof(w), amount, SHM_QTY_DIGITS), 0);
	ck_assert_msg(v.amount == amount, "account %llu %s: %s shares, want %s",
		      (unsigned long long)id, sym, g, w);
	ck_assert_msg(v.reserved == reserved, "account %llu %s: reserved differs",
		      (unsigned long long)id, sym);
}

/* Two accounts granted 9 x 10^14 shares each of one symbol: together past
 * INT64_MAX units, the old cap of a symbol's total (main answered the
 * second grant "Numeric overflow").  A sale of 10^14 shares takes the
 * buyer past INT64_MAX units; positions are exact in shared memory and in
 * shmex-query, and kill -9 of everything and a clean restart give them
 * back. */
START_TEST(positions_past_int64_trade_and_recover_exactly)
{
	fresh();
	start(NULL);
	struct client c;
	conn(&c);
	const char *b = sym_on(0);
	char xml[1024];
	snprintf(xml, sizeof(xml),
		 "<create><account id=\"1\" balance=\"100000000000\"/>"
		 "<account id=\"2\" balance=\"0\"/>"
		 "<symbol sym=\"%s\"><account id=\"1\">900000000000000</account>"
		 "<account id=\"2\">900000000000000</account></symbol></create>",
		 b);
	create(&c, xml, 4);
	/* 10^14 shares at 0.0001: 10^10 dollars. */
	char *why = NULL;
	ck_assert_msg(order(&c, 2, b, "-100000000000000", "0.0001", &why) > 0, "%s", why);
	free(why);
	why = NULL;
	ck_assert_msg(order(&c, 1, b, "100000000000000", "0.0001", &why) > 0, "%s", why);
	free(why);
	client_close(&c);

	const shm_shares_t p1 = (shm_shares_t)1000000000000000 * SHM_QTY_ONE;
	const shm_shares_t p2 = (shm_shares_t)800000000000000 * SHM_QTY_ONE;
	ck_assert(p1 > INT64_MAX);
	char out[4096];
	for (int round = 0; round < 3; round++) {
		shares_are(1, b, p1, 0);
		shares_are(2, b, p2, 0);
		cash_is(1, D(100000000000) - D(10000000000), 0);
		cash_is(2, D(10000000000), 0);
		query_account(1, out, sizeof(out));
		ck_assert_msg(
			strstr(out, "\"amount\":\"1000000000000000\",\"reserved\":\"0\""),
			"%s", out);
		query_account(2, out, sizeof(out));
		ck_assert_msg(
			strstr(out, "\"amount\":\"800000000000000\",\"reserved\":\"0\""),
			"%s", out);
		crash_or_stop(round, 3);
	}
}
END_TEST

/* ---- a crash between two shards' records ---- */

static void touch(const char *path)
{
	int fd = open(path, O_CREAT | O_WRONLY, 0600);
	ck_assert_int_ge(fd, 0);
	close(fd);
}

/*
 * Seller 3 has shares of b (shard 1) and no cash.  Its sale to buyer 1 on
 * shard 1 credits it 500, but shard 1's journal is held back, so that
 * credit is not durable.  Seller 3's buy on shard 0 that needs the credit
 * must be refused; then shard 1's matcher dies before its record reached
 * the disk.  Afterwards the sale never happened, the seller has what it
 * had, nothing is overdrawn, and the seller's client heard "not
 * executed".
 */
START_TEST(credit_on_one_shard_is_not_spendable_before_it_is_durable)
{
	fresh();
	setenv("SHMEX_FAULT_HOLD", "1", 1);
	start(NULL);
	const char *a = sym_on(0), *b = sym_on(1);
	struct client c, cs;
	conn(&c);
	conn(&cs);
	char xml[512];
	snprintf(xml, sizeof(xml),
		 "<create><account id=\"1\" balance=\"10000\"/>"
		 "<account id=\"2\" balance=\"0\"/><account id=\"3\" balance=\"0\"/>"
		 "<symbol sym=\"%s\"><account id=\"3\">100</account></symbol>"
		 "<symbol sym=\"%s\"><account id=\"2\">100</account></symbol></create>",
		 b, a);
	create(&c, xml, 5);
	uint64_t bid = order(&c, 1, b, "10", "50", NULL); /* reserves 500 */
	order(&c, 2, a, "-1", "100", NULL);               /* an ask for 3 to take */

	char hold[PATH_MAX + 32];
	snprintf(hold, sizeof(hold), "%s/shard-1/hold", ddir);
	touch(hold);
	snprintf(xml, sizeof(xml),
		 "<transactions id=\"3\"><order sym=\"%s\" amount=\"-10\" "
		 "limit=\"50\"/></transactions>",
		 b);
	ck_assert_int_eq(client_send(&cs, xml, T_MS), 0);
	/* The sale is matched (the book, read directly, shows the bid
	 * filled), but its credit waits for shard 1's journal. */
	struct shm_snap rd;
	ck_assert_int_eq(shm_snap_open(&rd, inst, 1), 0);
	struct shm_snap_order so = {0};
	for (int t = 0; t < 1000; t++) {
		size_t nf;
		if (shm_snap_order(&rd, bid, &so, NULL, 0, &nf) == 0 && so.open == 0)
			break;
		usleep(5000);
	}
	shm_snap_close(&rd);
	ck_assert_int_eq(so.open, 0);
	ck_assert_int_eq(account(3).balance, 0);
	char *why = NULL;
	ck_assert_uint_eq(order(&c, 3, a, "1", "100", &why), 0);
	ck_assert_msg(why && strstr(why, "Insufficient funds"), "%s", why);
	free(why);

	pid_t m1 = exchange_child(&ex, "shmex-matcher", 1);
	kill(m1, SIGKILL);
	wait_gone(m1);
	unlink(hold);
	const char *rep;
	size_t len;
	ck_assert_int_eq(client_recv(&cs, &rep, &len, T_MS), 0);
	ck_assert_msg(strstr(rep, "Not executed: the matcher restarted"), "%.*s",
		      (int)len, rep);

	/* The sale never happened: the bid rests whole again. */
	char *st = status(&c, 1, bid);
	char want[128];
	snprintf(want, sizeof(want), "results(status[id=%llu](open[shares=10]))",
		 (unsigned long long)bid);
	ck_assert_str_eq(st, want);
	free(st);
	struct shm_account_view v1 = account(1), v3 = account(3);
	ck_assert_int_eq(v1.balance, C(10000 - 500));
	ck_assert_int_eq(v1.reserved, C(500));
	ck_assert_int_eq(v3.balance, 0);
	ck_assert_int_eq(v3.reserved, 0);
	ck_assert_int_eq(position(3, b).amount, Q(100));
	ck_assert_int_eq(position(3, b).reserved, 0);
	/* Once durable, the same credit can be spent on the other shard. */
	order(&c, 3, b, "-10", "50", NULL);
	order(&c, 3, a, "1", "100", NULL);
	ck_assert_int_eq(account(3).balance, C(500 - 100));
	client_close(&c);
	client_close(&cs);
	stop_clean();
}
END_TEST

/* ---- kills under load ---- */

#define LOAD_ACCOUNTS 6
#define LOAD_CLIENTS 3

/* One load client: random orders and cancels of accounts 1..6 on both
 * symbols until the deadline, reconnecting when its gateway dies.  Writes
 * "id account" for every order it was told is open to `out`. */
static void load_client(int port, const char *a, const char *b, int seed, FILE *out,
			unsigned long long until)
{
	struct client c;
	bool up = false;
	uint64_t x = 0x9e3779b97f4a7c15ull * (uint64_t)(seed + 1);
	for (int sent = 0; sent < 4000 && test_now_ns() < until; sent++) {
		if (!up) {
			up = client_connect(&c, "127.0.0.1", port, 2000) == 0;
			if (!up) {
				usleep(10000);
				continue;
			}
		}
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		int acct = 1 + (int)(x % LOAD_ACCOUNTS);
		int amt = 1 + (int)((x >> 8) % 5);
		int px = 95 + (int)((x >> 16) % 11);
		bool sell = (x >> 24) & 1;
		char xml[256];
		snprintf(xml, sizeof(xml),
			 "<transactions id=\"%d\"><order sym=\"%s\" amount=\"%s%d\" "
			 "limit=\"%d\"/></transactions>",
			 acct, (x >> 32) & 1 ? a : b, sell ? "-" : "", amt, px);
		const char *rep;
		size_t len;
		if (client_request(&c, xml, &rep, &len, 5000) != 0) {
			client_close(&c);
			up = false;
			continue;
		}
		const char *p = strstr(rep, "<opened ");
		const char *q = p ? strstr(p, " id=\"") : NULL;
		if (q)
			fprintf(out, "%llu %d\n", strtoull(q + 5, NULL, 10), acct);
	}
	if (up)
		client_close(&c);
	fflush(out);
}

/* Accounts 1..LOAD_ACCOUNTS with 100000 cash and 1000 shares of a and b. */
static void create_load_accounts(const char *a, const char *b)
{
	struct client c;
	conn(&c);
	char xml[2048];
	int n = snprintf(xml, sizeof(xml), "<create>");
	for (int i = 1; i <= LOAD_ACCOUNTS; i++)
		n += snprintf(xml + n, sizeof(xml) - (size_t)n,
			      "<account id=\"%d\" balance=\"100000\"/>", i);
	for (int k = 0; k < 2; k++) {
		n += snprintf(xml + n, sizeof(xml) - (size_t)n, "<symbol sym=\"%s\">",
			      k ? b : a);
		for (int i = 1; i <= LOAD_ACCOUNTS; i++)
			n += snprintf(xml + n, sizeof(xml) - (size_t)n,
				      "<account id=\"%d\">1000</account>", i);
		n += snprintf(xml + n, sizeof(xml) - (size_t)n, "</symbol>");
	}
	snprintf(xml + n, sizeof(xml) - (size_t)n, "</create>");
	create(&c, xml, 3 * LOAD_ACCOUNTS);
	client_close(&c);
}

START_TEST(kills_under_load_lose_nothing_acknowledged)
{
	fresh();
	/* Room for every order of the run: a finished order's record is
	 * only reused once the pool is exhausted (then it is forgotten,
	 * which is another matter than a crash). */
	/* ... nor trimmed to a done window (0: every finished order stays
	 * while the pool has room). */
	static const char *const big[] = {"--orders",      "65536", "--fills", "262144",
					  "--done-window", "0",     NULL};
	start(big);
	const char *a = sym_on(0), *b = sym_on(1);
	struct client c;
	create_load_accounts(a, b);

	char path[LOAD_CLIENTS][PATH_MAX + 16];
	pid_t kid[LOAD_CLIENTS];
	unsigned long long until = test_now_ns() + 2500000000ull;
	for (int i = 0; i < LOAD_CLIENTS; i++) {
		snprintf(path[i], sizeof(path[i]), "%s.acked.%d", ddir, i);
		kid[i] = fork();
		ck_assert_int_ge(kid[i], 0);
		if (kid[i] == 0) {
			FILE *out = fopen(path[i], "w");
			if (!out)
				_exit(1);
			load_client(ex.port, a, b, i, out, until);
			fclose(out);
			_exit(0);
		}
	}
	/* One matcher, the other, a gateway, then everything at once. */
	static const struct {
		int at_ms;
		const char *prog;
		int id;
	} chaos[] = {
		{500, "shmex-matcher", 1},
		{1100, "shmex-matcher", 0},
		{1700, "shmex-gateway", 0},
	};
	unsigned long long t0 = test_now_ns();
	for (size_t k = 0; k < sizeof(chaos) / sizeof(chaos[0]); k++) {
		while (test_now_ns() <
		       t0 + (unsigned long long)chaos[k].at_ms * 1000000ull)
			usleep(1000);
		pid_t v = exchange_child(&ex, chaos[k].prog, chaos[k].id);
		ck_assert_int_gt(v, 0);
		kill(v, SIGKILL);
	}
	for (int i = 0; i < LOAD_CLIENTS; i++) {
		int st = test_wait_pid(kid[i], 20000);
		ck_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	}
	kill_everything();
	start(big);

	/* Every order a client was told is open still has its status. */
	conn(&c);
	int checked = 0, lost = 0;
	for (int i = 0; i < LOAD_CLIENTS; i++) {
		FILE *f = fopen(path[i], "r");
		ck_assert_ptr_nonnull(f);
		unsigned long long id;
		int acct;
		while (fscanf(f, "%llu %d", &id, &acct) == 2) {
			char *st = status(&c, acct, id);
			if (strncmp(st, "results(status[", 15) != 0 && lost++ < 10)
				fprintf(stderr,
					"acknowledged order %llu (shard %u) of account %d: %s\n",
					id, shm_shard_of_order(id, 2), acct, st);
			free(st);
			checked++;
		}
		fclose(f);
		unlink(path[i]);
	}
	ck_assert_msg(lost == 0, "%d of %d acknowledged orders lost", lost, checked);
	ck_assert_int_gt(checked, 50);
	/* Cash and shares are conserved exactly. */
	int64_t cash = 0, sa = 0, sb = 0;
	for (int i = 1; i <= LOAD_ACCOUNTS; i++) {
		struct shm_account_view v = account((uint64_t)i);
		cash += v.balance + v.reserved;
		struct shm_position_view pa = position((uint64_t)i, a);
		struct shm_position_view pb = position((uint64_t)i, b);
		sa += pa.amount + pa.reserved;
		sb += pb.amount + pb.reserved;
	}
	ck_assert_int_eq(cash, C(100000) * LOAD_ACCOUNTS);
	ck_assert_int_eq(sa, Q(1000) * LOAD_ACCOUNTS);
	ck_assert_int_eq(sb, Q(1000) * LOAD_ACCOUNTS);
	fprintf(stderr, "kills under load: %d acknowledged orders checked\n", checked);
	client_close(&c);
	stop_clean();
}
END_TEST

/* ---- determinism ---- */

/* `shmex-query --json stats` (with --state-hash when `hash`) of the
 * current instance into out; its exit status. */
static int query_stats(char *out, size_t cap, bool hash)
{
	char cmd[PATH_MAX + 128];
	snprintf(cmd, sizeof(cmd), "'%s' --instance %s --json stats%s 2>&1",
		 test_bin("shmex-query"), inst, hash ? " --state-hash" : "");
	FILE *f = popen(cmd, "r");
	ck_assert_ptr_nonnull(f);
	size_t n = fread(out, 1, cap - 1, f);
	out[n] = 0;
	return pclose(f);
}

/* The state hash of the current instance (out: the whole output). */
static uint64_t state_hash(char *out, size_t cap)
{
	int st = query_stats(out, cap, true);
	ck_assert_msg(st == 0, "shmex-query status 0x%x: %s", st, out);
	const char *h = strstr(out, "\"state_hash\":\"");
	ck_assert_msg(h, "no state_hash in %s", out);
	return strtoull(h + 14, NULL, 16);
}

/* Waits until shard k's matcher is a live process other than `old`
 * and has its book laid out (shmex-query's matcher_pid, matcher_alive
 * and available say so). */
static void wait_new_matcher(uint32_t k, int old)
{
	char out[16384], key[32];
	snprintf(key, sizeof(key), "{\"shard\":%u,\"matcher_pid\":", k);
	for (int t = 0; t < 1500; t++) {
		/* While it recovers, stats still shows the shard's matcher;
		 * while the whole exchange starts over (a matcher killed
		 * during the matchers' recovery) the instance is briefly not
		 * there at all: shmex-query says it is not running. */
		int st = query_stats(out, sizeof(out), false);
		if (st != 0 && strstr(out, "is not running")) {
			usleep(10000);
			continue;
		}
		ck_assert_msg(st == 0, "shmex-query status 0x%x: %s", st, out);
		const char *p = strstr(out, key);
		ck_assert_ptr_nonnull(p);
		int pid = atoi(p + strlen(key));
		if (pid > 0 && pid != old &&
		    strncmp(strchr(p + strlen(key), ','),
			    ",\"matcher_alive\":true,\"available\":true", 38) == 0)
			return;
		usleep(10000);
	}
	ck_abort_msg("shard %u: no new live matcher in shmex-query stats: %s", k, out);
}

/* kill -9 of everything, a start, a clean stop and a start: each start
 * recovers the state hash h0. */
static void crash_stop_and_hash(const char *const *args, uint64_t h0)
{
	char out[16384];
	kill_everything();
	start(args);
	ck_assert_uint_eq(state_hash(out, sizeof(out)), h0);
	stop_clean();
	start(args);
	ck_assert_uint_eq(state_hash(out, sizeof(out)), h0);
}

/*
 * The state after recovery is the state before, to the byte: the state
 * hash (every book, order with its fills, position and account) is the
 * same after a kill of everything, after a clean stop, and after one
 * matcher's restart; and it is not blind: one more order changes it.
 */
START_TEST(recovered_state_hashes_the_same)
{
	fresh();
	/* A small done window: every round trims finished orders, and the
	 * recoveries below replay those RECYCLE records. */
	static const char *const big[] = {"--orders",      "65536", "--fills", "262144",
					  "--done-window", "16",    NULL};
	start(big);
	const char *a = sym_on(0), *b = sym_on(1);
	create_load_accounts(a, b);
	FILE *devnull = fopen("/dev/null", "w");
	ck_assert_ptr_nonnull(devnull);
	load_client(ex.port, a, b, 7, devnull, test_now_ns() + 700000000ull);
	fclose(devnull);
	char out[16384];
	uint64_t h0 = state_hash(out, sizeof(out));
	crash_stop_and_hash(big, h0);

	pid_t m1 = exchange_child(&ex, "shmex-matcher", 1);
	ck_assert_int_gt(m1, 0);
	kill(m1, SIGKILL);
	wait_new_matcher(1, (int)m1);
	ck_assert_uint_eq(state_hash(out, sizeof(out)), h0);

	struct client c;
	conn(&c);
	order(&c, 1, b, "1", "50", NULL);
	client_close(&c);
	ck_assert_uint_ne(state_hash(out, sizeof(out)), h0);
	stop_clean();
}
END_TEST

/*
 * Post-only orders are journaled with their flag and replay the same: a
 * resting one and a refused one (which leaves no record) recover to the
 * same state hash after a kill of everything and after a clean stop, and
 * the refused one is refused again after the recovery.
 */
START_TEST(post_only_orders_recover_the_same)
{
	fresh();
	start(NULL);
	const char *a = sym_on(0);
	struct client c;
	conn(&c);
	char xml[1024];
	snprintf(xml, sizeof(xml),
		 "<create><account id=\"1\" balance=\"1000\"/>"
		 "<account id=\"2\" balance=\"1\"/>"
		 "<symbol sym=\"%s\"><account id=\"2\">10</account></symbol></create>",
		 a);
	create(&c, xml, 3);
	order(&c, 2, a, "-2", "50", NULL);
	static const char *const want_cross = "Post-only order would cross the book";
	snprintf(xml, sizeof(xml),
		 "<transactions id=\"1\"><order sym=\"%s\" amount=\"1\" limit=\"50\" "
		 "postonly=\"yes\"/><order sym=\"%s\" amount=\"3\" limit=\"40\" "
		 "postonly=\"yes\"/></transactions>",
		 a, a);
	char *got = ask(&c, xml);
	ck_assert_msg(strstr(got, want_cross) && strstr(got, "opened["), "%s", got);
	free(got);
	client_close(&c);
	char out[16384];
	uint64_t h0 = state_hash(out, sizeof(out));
	crash_stop_and_hash(NULL, h0);
	conn(&c);
	got = ask(&c, xml);
	ck_assert_msg(strstr(got, want_cross), "%s", got);
	free(got);
	client_close(&c);
	stop_clean();
}
END_TEST

/* ---- the data directory ---- */

/* Runs shmex with args and returns its exit status and stderr. */
static int run_shmex(const char *const *args, char *err, size_t cap)
{
	int p[2];
	ck_assert_int_eq(pipe(p), 0);
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		const char *argv[40] = {"shmex", "--no-fix"};
		int n = 2;
		for (int i = 0; args[i] && n < 39; i++)
			argv[n++] = args[i];
		argv[n] = NULL;
		int devnull = open("/dev/null", O_WRONLY);
		dup2(devnull, 1);
		dup2(p[1], 2);
		close(p[0]);
		execv(test_bin("shmex"), (char *const *)argv);
		_exit(127);
	}
	close(p[1]);
	size_t got = 0;
	ssize_t r;
	while (got + 1 < cap && (r = read(p[0], err + got, cap - 1 - got)) > 0)
		got += (size_t)r;
	err[got] = 0;
	close(p[0]);
	return test_wait_pid(pid, T_MS);
}

START_TEST(data_dir_of_a_live_exchange_and_other_shards_refused)
{
	fresh();
	start(NULL);
	char dd[PATH_MAX + 16], other[80], err[4096];
	snprintf(dd, sizeof(dd), "--data-dir=%s", ddir);
	snprintf(other, sizeof(other), "%sx", inst);
	note_instance(other);
	const char *second[] = {"--instance", other, "--port", "0", dd, "--quiet", NULL};
	int st = run_shmex(second, err, sizeof(err));
	ck_assert(WIFEXITED(st) && WEXITSTATUS(st) == 1);
	ck_assert_msg(strstr(err, ddir) && strstr(err, "in use"), "%s", err);
	ck_assert_int_eq(test_count_objects(other), 0);
	stop_clean();

	/* The journals route symbols to 2 shards: 1 is refused, nothing
	 * is created, and the right count still starts. */
	const char *one[] = {"--instance", inst, "--port",  "0", dd,
			     "--shards",   "1",  "--quiet", NULL};
	st = run_shmex(one, err, sizeof(err));
	ck_assert(WIFEXITED(st) && WEXITSTATUS(st) == 1);
	ck_assert_msg(strstr(err, "holds an exchange of 2 shards"), "%s", err);
	ck_assert_int_eq(test_count_objects(inst), 0);
	start(NULL);
	stop_clean();
}
END_TEST

/* ---- what can be wrong on disk ---- */

/* The newest journal segment of shard k (its path in out). */
static void newest_segment(uint32_t k, char *out, size_t cap)
{
	char dir[PATH_MAX + 16];
	snprintf(dir, sizeof(dir), "%s/shard-%u", ddir, k);
	DIR *d = opendir(dir);
	ck_assert_ptr_nonnull(d);
	char best[256] = "";
	struct dirent *e;
	while ((e = readdir(d)) != NULL)
		if (!strncmp(e->d_name, "journal-", 8) && strcmp(e->d_name, best) > 0)
			snprintf(best, sizeof(best), "%s", e->d_name);
	closedir(d);
	ck_assert_msg(best[0], "no segment in %s", dir);
	snprintf(out, cap, "%s/%s", dir, best);
}

static off_t file_size(const char *path)
{
	struct stat st;
	ck_assert_int_eq(stat(path, &st), 0);
	return st.st_size;
}

/* Everything the exchange's processes write to stderr goes to path
 * until stderr_back (the supervisor and its children inherit it). */
static int stderr_to(const char *path)
{
	fflush(stderr);
	int saved = dup(2);
	int fd = open(path, O_CREAT | O_TRUNC | O_WRONLY, 0600);
	ck_assert_int_ge(fd, 0);
	dup2(fd, 2);
	close(fd);
	return saved;
}

static void stderr_back(int saved)
{
	fflush(stderr);
	dup2(saved, 2);
	close(saved);
}

static char *slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "r");
	ck_assert_ptr_nonnull(f);
	char *buf = malloc(1 << 20);
	ck_assert_ptr_nonnull(buf);
	size_t n = fread(buf, 1, (1 << 20) - 1, f);
	fclose(f);
	buf[n] = 0;
	if (len)
		*len = n;
	return buf;
}

/* Trades a little on both shards and stops cleanly; the orders' ids and
 * statuses in sc and before[]. */
/* The scene, then every process killed: no snapshot is written, so the
 * journal alone holds the state (the tests of damaged journals). */
static void trade_and_crash(struct scene *sc, char *before[4])
{
	struct client c;
	conn(&c);
	set_scene(&c, sc);
	for (int i = 0; i < 4; i++)
		before[i] = status(&c, sc->owner[i], sc->id[i]);
	client_close(&c);
	kill_everything();
}

static void statuses_are(const struct scene *sc, char *before[4])
{
	struct client c;
	conn(&c);
	for (int i = 0; i < 4; i++) {
		char *now = status(&c, sc->owner[i], sc->id[i]);
		ck_assert_str_eq(now, before[i]);
		free(now);
	}
	client_close(&c);
}

START_TEST(torn_tail_is_cut_off_with_a_message)
{
	fresh();
	start(NULL);
	struct scene sc;
	char *before[4];
	trade_and_crash(&sc, before);
	char seg[PATH_MAX + 64];
	newest_segment(1, seg, sizeof(seg));
	off_t good = file_size(seg);
	/* Half a record: what a crash in the middle of a write leaves. */
	FILE *f = fopen(seg, "a");
	ck_assert_ptr_nonnull(f);
	static const unsigned char half[20] = {64, 0, 0, 0, 1, 2, 3};
	ck_assert_uint_eq(fwrite(half, 1, sizeof(half), f), sizeof(half));
	fclose(f);
	char log[PATH_MAX + 16];
	snprintf(log, sizeof(log), "%s.stderr", ddir);
	int saved = stderr_to(log);
	start(NULL);
	stderr_back(saved);
	char *msg = slurp(log, NULL);
	ck_assert_msg(strstr(msg, seg) && strstr(msg, "torn") && strstr(msg, "cutting"),
		      "%s", msg);
	free(msg);
	unlink(log);
	ck_assert_int_eq(file_size(seg), good);
	statuses_are(&sc, before);
	for (int i = 0; i < 4; i++)
		free(before[i]);
	stop_clean();
}
END_TEST

/* Offset of the first record of `type` in a segment. */
static off_t record_of_type(const char *seg, uint16_t type)
{
	size_t size;
	char *buf = slurp(seg, &size);
	size_t off = 64;
	for (;;) {
		uint32_t l;
		uint16_t t;
		ck_assert_msg(off + 32 <= size, "no record of type %u in %s", type, seg);
		memcpy(&l, buf + off, 4);
		memcpy(&t, buf + off + 24, 2);
		ck_assert(l >= 32 && off + l <= size);
		if (t == type)
			break;
		off += l;
	}
	free(buf);
	return (off_t)off;
}

START_TEST(corrupt_record_stops_start_until_truncate_corrupt)
{
	fresh();
	start(NULL);
	struct scene sc;
	char *before[4];
	trade_and_crash(&sc, before);
	char seg[PATH_MAX + 64];
	newest_segment(1, seg, sizeof(seg));
	/* Shard 1's first order record gets one wrong bit in its time:
	 * the records after it are intact. */
	off_t at = record_of_type(seg, SHM_JREC_ORDER);
	int fd = open(seg, O_RDWR);
	ck_assert_int_ge(fd, 0);
	unsigned char byte;
	ck_assert_int_eq(pread(fd, &byte, 1, at + 17), 1);
	byte ^= 0x10;
	ck_assert_int_eq(pwrite(fd, &byte, 1, at + 17), 1);
	close(fd);
	size_t size0;
	char *content = slurp(seg, &size0);

	char dd[PATH_MAX + 16], err[8192];
	snprintf(dd, sizeof(dd), "--data-dir=%s", ddir);
	const char *args[] = {"--instance", inst, "--port", "0", dd, "--quiet", NULL};
	int st = run_shmex(args, err, sizeof(err));
	ck_assert(WIFEXITED(st) && WEXITSTATUS(st) == 1);
	char where[PATH_MAX + 96];
	snprintf(where, sizeof(where), "%s: byte %jd", seg, (intmax_t)at);
	ck_assert_msg(strstr(err, where), "wanted '%s' in: %s", where, err);
	ck_assert_int_eq(test_count_objects(inst), 0);
	/* Nothing on disk changed. */
	size_t size1;
	char *after = slurp(seg, &size1);
	ck_assert(size1 == size0 && memcmp(after, content, size0) == 0);
	free(after);
	free(content);

	/* --truncate-corrupt: shard 1 starts from the records before it;
	 * shard 0 is untouched. */
	static const char *const trunc[] = {"--truncate-corrupt", NULL};
	start(trunc);
	ck_assert_int_eq(file_size(seg), at);
	struct client c;
	conn(&c);
	char *now = status(&c, sc.owner[3], sc.id[3]);
	ck_assert_str_eq(now, before[3]);
	free(now);
	now = status(&c, sc.owner[0], sc.id[0]);
	ck_assert_msg(strstr(now, "Order does not exist"), "%s", now);
	free(now);
	/* Shard 1's cash and shares are back to before its lost orders. */
	ck_assert_int_eq(account(2).balance, C(1000));
	ck_assert_int_eq(position(2, sc.b).amount, Q(500));
	ck_assert_int_eq(position(2, sc.b).reserved, 0);
	client_close(&c);
	for (int i = 0; i < 4; i++)
		free(before[i]);
	stop_clean();
}
END_TEST

START_TEST(empty_segment_and_missing_directory)
{
	fresh();
	/* A data directory three levels down that does not exist yet. */
	ck_assert(strlen(ddir) + 5 < sizeof(ddir));
	strcat(ddir, "/a/b");
	start(NULL);
	struct scene sc;
	char *before[4];
	trade_and_crash(&sc, before);
	/* A crash right after a new segment was created: an empty file
	 * after the last one. */
	char seg[PATH_MAX + 64], empty[PATH_MAX + 64];
	newest_segment(0, seg, sizeof(seg));
	snprintf(empty, sizeof(empty), "%s/shard-0/journal-7fffffffffffffff.log", ddir);
	touch(empty);
	start(NULL);
	statuses_are(&sc, before);
	for (int i = 0; i < 4; i++)
		free(before[i]);
	stop_clean();
}
END_TEST

START_TEST(unwritable_data_directory_is_a_clear_error)
{
	fresh();
	ck_assert_int_eq(mkdir(ddir, 0755), 0);
	char dd[PATH_MAX + 16], err[8192];
	snprintf(dd, sizeof(dd), "--data-dir=%s/sub", ddir);
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		/* root writes anywhere: try as nobody instead. */
		if (geteuid() == 0 && setuid(65534) != 0)
			_exit(99);
		if (geteuid() != 0)
			(void)chmod(ddir, 0555);
		const char *args[] = {"--instance", inst,      "--port", "0",
				      dd,           "--quiet", NULL};
		int st = run_shmex(args, err, sizeof(err));
		bool ok = WIFEXITED(st) && WEXITSTATUS(st) == 1 && strstr(err, "sub") &&
			  strstr(err, "Permission denied");
		if (!ok)
			fprintf(stderr, "status 0x%x: %s\n", st, err);
		_exit(ok ? 0 : 1);
	}
	int st = test_wait_pid(pid, T_MS);
	ck_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	ck_assert_int_eq(test_count_objects(inst), 0);
	chmod(ddir, 0755);
}
END_TEST

/* A full disk (the data directory on a 512 KB tmpfs): the exchange
 * refuses orders with a clear error instead of acknowledging what it
 * could not write, and everything it did acknowledge is there after a
 * crash and a restart with room again. */
START_TEST(full_disk_refuses_orders_and_keeps_what_it_acknowledged)
{
	fresh();
	ck_assert_int_eq(mkdir(ddir, 0755), 0);
	if (mount("tmpfs", ddir, "tmpfs", 0, "size=512k") != 0) {
		/* Only root (CAP_SYS_ADMIN) mounts; CI runs as root. */
		ck_assert_msg(errno == EPERM, "mount tmpfs on %s: %s", ddir,
			      strerror(errno));
		fprintf(stderr, "full_disk: skipped, mounting a tmpfs needs root\n");
		return;
	}
	mounted = true;
	const char *a = sym_on(0);
	start(NULL);
	struct client c;
	conn(&c);
	char xml[256];
	snprintf(xml, sizeof(xml),
		 "<create><account id=\"1\" balance=\"1000000\"/><symbol sym=\"%s\">"
		 "<account id=\"1\">1</account></symbol></create>",
		 a);
	create(&c, xml, 2);
	static uint64_t acked[40000];
	int nacked = 0, refused = 0;
	for (int i = 0; i < 40000 && refused < 20; i++) {
		char *why = NULL;
		uint64_t id = order(&c, 1, a, "1", "1", &why);
		if (id) {
			ck_assert_int_eq(refused,
					 0); /* nothing after the first refusal */
			acked[nacked++] = id;
			continue;
		}
		ck_assert_msg(
			strstr(why,
			       "Not executed: the exchange cannot write its journal"),
			"%s", why);
		free(why);
		refused++;
	}
	ck_assert_int_gt(nacked, 100);
	ck_assert_int_eq(refused, 20);
	client_close(&c);
	kill_everything();

	/* Room again (an operator freed space), and a restart. */
	ck_assert_int_eq(mount("tmpfs", ddir, "tmpfs", MS_REMOUNT, "size=8m"), 0);
	start(NULL);
	conn(&c);
	for (int i = 0; i < nacked; i++) {
		char *st = status(&c, 1, acked[i]);
		ck_assert_msg(strncmp(st, "results(status[", 15) == 0, "order %llu: %s",
			      (unsigned long long)acked[i], st);
		free(st);
	}
	/* Exactly the acknowledged orders hold cash. */
	struct shm_account_view v = account(1);
	ck_assert_int_eq(v.reserved, C(1) * nacked);
	ck_assert_int_eq(v.balance + v.reserved, C(1000000));
	order(&c, 1, a, "1", "1", NULL);
	client_close(&c);
	stop_clean();
	ck_assert_int_eq(umount(ddir), 0);
	mounted = false;
}
END_TEST

/* ---- snapshots ---- */

/* Names in shard k's directory that start with prefix, sorted; count. */
#define FNAME (PATH_MAX + 320)
static int shard_files(uint32_t k, const char *prefix, char (*names)[FNAME], int max)
{
	char dir[PATH_MAX + 16];
	snprintf(dir, sizeof(dir), "%s/shard-%u", ddir, k);
	DIR *d = opendir(dir);
	ck_assert_ptr_nonnull(d);
	int n = 0;
	struct dirent *e;
	while ((e = readdir(d)) != NULL && n < max)
		if (!strncmp(e->d_name, prefix, strlen(prefix)))
			snprintf(names[n++], FNAME, "%s/%s", dir, e->d_name);
	closedir(d);
	qsort(names, (size_t)n, FNAME, (int (*)(const void *, const void *))strcmp);
	return n;
}

/* Flips one byte in the middle of a file. */
static void flip_middle(const char *path)
{
	off_t at = file_size(path) / 2;
	int fd = open(path, O_RDWR);
	ck_assert_int_ge(fd, 0);
	unsigned char b;
	ck_assert_int_eq(pread(fd, &b, 1, at), 1);
	b ^= 0x40;
	ck_assert_int_eq(pwrite(fd, &b, 1, at), 1);
	close(fd);
}

/*
 * Periodic snapshots under load (--snapshot-mb 1, 1 MB segments): the
 * shard keeps two snapshots, the segments they cover are removed, and a
 * crash after them recovers snapshot + journal to the same state hash,
 * as does a clean stop (a snapshot at stop) and a start from it.
 */
START_TEST(snapshots_under_load_recover_the_same_state)
{
	fresh();
	static const char *const snap[] = {
		"--orders", "65536",        "--fills", "262144",        "--snapshot-mb",
		"1",        "--segment-mb", "1",       "--done-window", "256",
		NULL};
	start(snap);
	const char *a = sym_on(0), *b = sym_on(1);
	create_load_accounts(a, b);
	FILE *devnull = fopen("/dev/null", "w");
	ck_assert_ptr_nonnull(devnull);
	/* A bound, not a speed: on a machine busy with other work (or a
	 * sanitizer build) the journal grows slowly. */
	unsigned long long until = test_now_ns() + 75000000000ull;
	static char names[64][FNAME];
	int nsnap = 0, nseg = 0;
	/* Until both shards have written two snapshots and removed what they
	 * cover (75 s at most; about 3 s on a quiet machine). */
	for (;;) {
		load_client(ex.port, a, b, 11, devnull, test_now_ns() + 300000000ull);
		int done = 0;
		for (uint32_t k = 0; k < 2; k++) {
			nsnap = shard_files(k, "snapshot-", names, 64);
			nseg = shard_files(k, "journal-", names, 64);
			done += nsnap == 2 &&
				strstr(names[0], "journal-0000000000000001") == NULL &&
				nseg >= 1;
		}
		if (done == 2)
			break;
		ck_assert_msg(
			test_now_ns() < until,
			"no periodic snapshots after 75 s: %d snapshots, %d segments "
			"from %s",
			nsnap, nseg, names[0]);
	}
	fclose(devnull);
	char out[16384];
	/* The stop writes a snapshot of everything: the journal after it
	 * holds only the next start's record. */
	crash_stop_and_hash(snap, state_hash(out, sizeof(out)));
	for (uint32_t k = 0; k < 2; k++)
		ck_assert_int_le(shard_files(k, "snapshot-", names, 64), 2);
	stop_clean();
}
END_TEST

/* Two snapshots (two clean stops) with trading before each. */
static void two_snapshots(struct scene *sc, char *before[4], uint64_t *h)
{
	start(NULL);
	struct client c;
	conn(&c);
	set_scene(&c, sc);
	client_close(&c);
	stop_clean();
	start(NULL);
	conn(&c);
	order(&c, 1, sc->b, "2", "10", NULL);
	for (int i = 0; i < 4; i++)
		before[i] = status(&c, sc->owner[i], sc->id[i]);
	client_close(&c);
	char out[16384];
	*h = state_hash(out, sizeof(out));
	stop_clean();
}

/*
 * A damaged newest snapshot is said (file, byte, why) and the older one
 * plus the journal after it recover the same state; with both damaged
 * the journal no longer reaches back (its first segment was removed) and
 * the start fails, saying which records are missing.
 */
START_TEST(damaged_snapshot_falls_back_to_the_older_one)
{
	fresh();
	struct scene sc;
	char *before[4];
	uint64_t h0;
	two_snapshots(&sc, before, &h0);
	static char snaps[8][FNAME];
	ck_assert_int_eq(shard_files(1, "snapshot-", snaps, 8), 2);
	flip_middle(snaps[1]);
	char log[PATH_MAX + 16];
	snprintf(log, sizeof(log), "%s.stderr", ddir);
	int saved = stderr_to(log);
	start(NULL);
	stderr_back(saved);
	char *msg = slurp(log, NULL);
	ck_assert_msg(strstr(msg, snaps[1]) && strstr(msg, "checksum") &&
			      strstr(msg, "an older snapshot"),
		      "%s", msg);
	free(msg);
	char out[16384];
	ck_assert_uint_eq(state_hash(out, sizeof(out)), h0);
	statuses_are(&sc, before);
	/* That start and its stop wrote a new snapshot and removed the bad
	 * one; damage both that remain. */
	kill_everything();
	ck_assert_int_eq(shard_files(1, "snapshot-", snaps, 8), 2);
	flip_middle(snaps[0]);
	flip_middle(snaps[1]);
	char dd[PATH_MAX + 16], err[8192];
	snprintf(dd, sizeof(dd), "--data-dir=%s", ddir);
	const char *args[] = {"--instance", inst, "--port", "0", dd, "--quiet", NULL};
	int st = run_shmex(args, err, sizeof(err));
	ck_assert(WIFEXITED(st) && WEXITSTATUS(st) != 0);
	ck_assert_msg(strstr(err, "the journal alone") && strstr(err, "are missing"),
		      "%s", err);
	for (int i = 0; i < 4; i++)
		free(before[i]);
}
END_TEST

/* A snapshot taken with other capacities is skipped with a message; the
 * journal (still complete: one snapshot removes nothing) recovers. */
START_TEST(snapshot_of_other_capacities_is_skipped)
{
	fresh();
	start(NULL);
	struct scene sc;
	struct client c;
	conn(&c);
	set_scene(&c, &sc);
	char *before[4];
	for (int i = 0; i < 4; i++)
		before[i] = status(&c, sc.owner[i], sc.id[i]);
	client_close(&c);
	stop_clean();
	char log[PATH_MAX + 16];
	snprintf(log, sizeof(log), "%s.stderr", ddir);
	static const char *const more[] = {"--orders", "16384", NULL};
	int saved = stderr_to(log);
	start(more);
	stderr_back(saved);
	char *msg = slurp(log, NULL);
	ck_assert_msg(strstr(msg, "other capacities") && strstr(msg, "the journal alone"),
		      "%s", msg);
	free(msg);
	statuses_are(&sc, before);
	for (int i = 0; i < 4; i++)
		free(before[i]);
	stop_clean();
}
END_TEST

/*
 * A snapshot whose checksums are right but whose contents do not fit the
 * shard (a symbol mapped past the positions table) is refused by name and
 * the journal recovers the same state; a snapshot its writer never
 * finished (a .tmp file) is removed at start.
 */
START_TEST(consistent_checksums_do_not_make_a_snapshot_trusted)
{
	fresh();
	start(NULL);
	struct scene sc;
	struct client c;
	conn(&c);
	set_scene(&c, &sc);
	char *before[4];
	for (int i = 0; i < 4; i++)
		before[i] = status(&c, sc.owner[i], sc.id[i]);
	client_close(&c);
	stop_clean();
	static char snaps[8][FNAME];
	ck_assert_int_eq(shard_files(1, "snapshot-", snaps, 8), 1);
	/* The MATCHER section is the first: its header at 128 (kind, crc,
	 * len), then the matcher's counters (48 bytes), then the symbol map. */
	int fd = open(snaps[0], O_RDWR);
	ck_assert_int_ge(fd, 0);
	struct shm_jsnap_sect sh;
	ck_assert_int_eq(pread(fd, &sh, sizeof(sh), 128), (ssize_t)sizeof(sh));
	ck_assert_uint_eq(sh.kind, SHM_JSNAP_MATCHER);
	unsigned char *body = malloc(sh.len);
	ck_assert_int_eq(pread(fd, body, sh.len, 128 + sizeof(sh)), (ssize_t)sh.len);
	uint32_t bad = 1u << 30;
	memcpy(body + 48, &bad, sizeof(bad));
	sh.crc = shm_crc32c(0, body, sh.len);
	ck_assert_int_eq(pwrite(fd, body, sh.len, 128 + sizeof(sh)), (ssize_t)sh.len);
	ck_assert_int_eq(pwrite(fd, &sh, sizeof(sh), 128), (ssize_t)sizeof(sh));
	close(fd);
	free(body);
	char tmp[FNAME + 8];
	snprintf(tmp, sizeof(tmp), "%s.tmp", snaps[0]);
	tmp[strlen(tmp) - 9] = 0; /* snapshot-<seq>.snap.tmp of a seq after it */
	strcat(tmp, "f.snap.tmp");
	int t = open(tmp, O_CREAT | O_WRONLY, 0600);
	ck_assert_int_ge(t, 0);
	ck_assert_int_eq(write(t, "half", 4), 4);
	close(t);

	char log[PATH_MAX + 16];
	snprintf(log, sizeof(log), "%s.stderr", ddir);
	int saved = stderr_to(log);
	start(NULL);
	stderr_back(saved);
	char *msg = slurp(log, NULL);
	ck_assert_msg(strstr(msg, snaps[0]) &&
			      strstr(msg, "maps to positions symbol slot") &&
			      strstr(msg, "the journal alone"),
		      "%s", msg);
	free(msg);
	ck_assert_int_eq(access(tmp, F_OK), -1);
	statuses_are(&sc, before);
	for (int i = 0; i < 4; i++)
		free(before[i]);
	stop_clean();
}
END_TEST

/* ---- finished orders that left the book ---- */

/* The status of `id` until it is not busy (a record recycled in the
 * current round is written at its end). */
static char *settled_status(struct client *c, int account, uint64_t id)
{
	for (int t = 0; t < 200; t++) {
		char *got = status(c, account, id);
		if (!strstr(got, "busy"))
			return got;
		free(got);
		usleep(10000);
	}
	ck_abort_msg("order %llu stays busy", (unsigned long long)id);
	return NULL;
}

static void same_status(struct client *c, const uint64_t *id, const int *owner,
			char *const *want, int n, const char *when)
{
	for (int i = 0; i < n; i++) {
		char *got = settled_status(c, owner[i], id[i]);
		ck_assert_msg(!strcmp(got, want[i]), "%s: order %llu answers %s, was %s",
			      when, (unsigned long long)id[i], got, want[i]);
		free(got);
	}
}

/* A gateway that starts while a shard's restarted matcher is still
 * recovering serves the other shards and waits for that one; it used to
 * exit ("region is not ready") and crash-loop until the matcher was up. */
START_TEST(gateway_starts_while_a_matcher_recovers)
{
	fresh();
	start(NULL);
	struct client c;
	conn(&c);
	struct scene sc;
	set_scene(&c, &sc);
	client_close(&c);
	/* Shard 0 stopped: the successor of shard 1 cannot finish its
	 * recovery (it pauses the other matchers) until shard 0 goes on. */
	pid_t m0 = exchange_child(&ex, "shmex-matcher", 0);
	pid_t m1 = exchange_child(&ex, "shmex-matcher", 1);
	ck_assert(m0 > 0 && m1 > 0);
	kill(m0, SIGSTOP);
	kill(m1, SIGKILL);
	pid_t g0 = exchange_child(&ex, "shmex-gateway", 0);
	ck_assert_int_gt(g0, 0);
	kill(g0, SIGKILL);
	pid_t ng = 0;
	for (int t = 0; t < 500 && (ng <= 0 || ng == g0); t++) {
		usleep(10000);
		ng = exchange_child(&ex, "shmex-gateway", 0);
	}
	ck_assert_msg(ng > 0 && ng != g0, "gateway 0 was not restarted");
	/* It stays up while shard 1 is unavailable. */
	usleep(1500000);
	ck_assert_int_eq(exchange_child(&ex, "shmex-gateway", 0), ng);
	ck_assert(!test_pid_gone(ng));
	kill(m0, SIGCONT);
	wait_new_matcher(1, m1);
	/* Both shards answer through whichever gateway takes us. */
	conn(&c);
	for (int i = 0; i < 4; i++) {
		char *got = settled_status(&c, sc.owner[i], sc.id[i]);
		ck_assert_msg(strstr(got, "status"), "%s", got);
		free(got);
	}
	client_close(&c);
	stop_clean();
}
END_TEST

/* Whether matcher pid of shard k is ready, as the supervisor judges it. */
static bool matcher_ready(uint32_t k, pid_t pid)
{
	struct shm_instance h;
	if (shm_instance_attach(inst, SHM_ROLE_OBSERVER, 0, &h) != 0)
		return false;
	bool ready = shm_instance_matcher_ready(&h, k, pid);
	shm_instance_detach(&h);
	return ready;
}

/* A matcher killed while every matcher recovers the whole exchange (the
 * start after both died) makes the recovery start over; it used to leave
 * the other matcher waiting for it until the start timed out and the
 * exchange stopped. */
START_TEST(matcher_killed_during_a_whole_recovery)
{
	fresh();
	start(NULL);
	struct client c;
	struct scene sc;
	char *before[4];
	scene_and_statuses(&c, &sc, before);
	client_close(&c);
	bool caught = false;
	for (int attempt = 0; attempt < 20 && !caught; attempt++) {
		pid_t m0 = exchange_child(&ex, "shmex-matcher", 0);
		pid_t m1 = exchange_child(&ex, "shmex-matcher", 1);
		ck_assert(m0 > 0 && m1 > 0);
		kill(m0, SIGKILL);
		kill(m1, SIGKILL);
		/* The first new matcher of shard 1, as soon as it exists. */
		pid_t n1 = 0;
		for (int t = 0; t < 20000 && (n1 <= 0 || n1 == m1); t++) {
			n1 = exchange_child(&ex, "shmex-matcher", 1);
			if (n1 <= 0 || n1 == m1)
				usleep(200);
		}
		ck_assert_msg(n1 > 0 && n1 != m1, "no new matcher of shard 1");
		/* Caught before it was ready (else the attempt is repeated). */
		caught = !matcher_ready(1, n1);
		kill(n1, SIGKILL);
		wait_new_matcher(0, m0);
		wait_new_matcher(1, n1);
	}
	ck_assert_msg(caught, "never caught a matcher before it was ready");
	conn(&c);
	for (int i = 0; i < 4; i++) {
		char *got = settled_status(&c, sc.owner[i], sc.id[i]);
		ck_assert_msg(!strcmp(got, before[i]), "%s vs %s", got, before[i]);
		free(got);
		free(before[i]);
	}
	client_close(&c);
	stop_clean();
}
END_TEST

/* A stop asked (SIGTERM) while every matcher recovers the whole exchange
 * is a clean stop like any other: exit 0, nothing left behind.  It used
 * to end as "stopped after a failure" (exit 1). */
START_TEST(stop_during_a_whole_recovery_is_clean)
{
	fresh();
	for (int round = 0; round < 4; round++) {
		start(NULL);
		pid_t m0 = exchange_child(&ex, "shmex-matcher", 0);
		pid_t m1 = exchange_child(&ex, "shmex-matcher", 1);
		ck_assert(m0 > 0 && m1 > 0);
		kill(m0, SIGKILL);
		kill(m1, SIGKILL);
		/* Both dead: the supervisor starts every matcher over from the
		 * journals.  The stop comes once the new ones exist, while they
		 * recover (or, at worst, just after). */
		pid_t n0 = 0, n1 = 0;
		for (int t = 0; t < 20000 && (n0 <= 0 || n0 == m0 || n1 <= 0 || n1 == m1);
		     t++) {
			n0 = exchange_child(&ex, "shmex-matcher", 0);
			n1 = exchange_child(&ex, "shmex-matcher", 1);
			usleep(200);
		}
		ck_assert_msg(n0 != m0 && n1 != m1, "no new matchers after the kill");
		stop_clean();
	}
}
END_TEST

START_TEST(finished_orders_answer_from_history)
{
	fresh();
	const char *win[] = {"--done-window=2", NULL};
	start(win);
	struct client c;
	conn(&c);
	const char *a = sym_on(0);
	char xml[512];
	snprintf(xml, sizeof(xml),
		 "<create><account id=\"1\" balance=\"100000\"/>"
		 "<account id=\"2\" balance=\"0\"/>"
		 "<symbol sym=\"%s\"><account id=\"2\">10000</account></symbol></create>",
		 a);
	create(&c, xml, 3);
	/* A sell filled by two buys, a cancelled buy: fills, a cancel. */
	uint64_t id[4];
	int owner[4] = {2, 1, 1, 1};
	id[0] = order(&c, 2, a, "-10", "10", NULL);
	id[1] = order(&c, 1, a, "4", "10", NULL);
	id[2] = order(&c, 1, a, "6", "11", NULL);
	id[3] = order(&c, 1, a, "5", "9", NULL);
	snprintf(xml, sizeof(xml),
		 "<transactions id=\"1\"><cancel id=\"%llu\"/></transactions>",
		 (unsigned long long)id[3]);
	free(ask(&c, xml));
	char *want[4];
	for (int i = 0; i < 4; i++)
		want[i] = settled_status(&c, owner[i], id[i]);
	ck_assert_msg(strstr(want[0], "executed") && strstr(want[3], "canceled"), "%s %s",
		      want[0], want[3]);
	/* Far more finished orders than the window (and the pool reuses the
	 * records): the four leave shared memory. */
	for (int i = 0; i < 300; i++) {
		(void)order(&c, 2, a, "-1", "10", NULL);
		(void)order(&c, 1, a, "1", "10", NULL);
	}
	same_status(&c, id, owner, want, 4, "after leaving the book");
	/* shmex-query reads it there too. */
	char cmd[PATH_MAX + 128], qout[4096];
	snprintf(cmd, sizeof(cmd), "'%s' --instance %s --json order %llu 2>&1",
		 test_bin("shmex-query"), inst, (unsigned long long)id[0]);
	FILE *qf = popen(cmd, "r");
	ck_assert_ptr_nonnull(qf);
	size_t qn = fread(qout, 1, sizeof(qout) - 1, qf);
	qout[qn] = 0;
	ck_assert_int_eq(pclose(qf), 0);
	ck_assert_msg(strstr(qout, "\"executed\":\"10\"") && strstr(qout, "\"fills\":[{"),
		      "%s", qout);
	/* An id of shard 0 that was never issued still does not exist. */
	char *never = status(&c, 1, UINT64_C(1999999999) * 2 + 1);
	ck_assert_msg(strstr(never, "does not exist"), "%s", never);
	free(never);
	/* Another account may not read them. */
	char *other = settled_status(&c, 1, id[0]);
	ck_assert_msg(strstr(other, "another account"), "%s", other);
	free(other);
	/* A cancel gets the answer it got while the order was in the book. */
	snprintf(xml, sizeof(xml),
		 "<transactions id=\"1\"><cancel id=\"%llu\"/></transactions>",
		 (unsigned long long)id[1]);
	char *cx = ask(&c, xml);
	ck_assert_msg(strstr(cx, "nothing open"), "%s", cx);
	free(cx);
	snprintf(xml, sizeof(xml),
		 "<transactions id=\"2\"><cancel id=\"%llu\"/></transactions>",
		 (unsigned long long)id[1]);
	cx = ask(&c, xml);
	ck_assert_msg(strstr(cx, "another account"), "%s", cx);
	free(cx);
	client_close(&c);

	/* The shard's matcher SIGKILLed and restarted. */
	pid_t m0 = exchange_child(&ex, "shmex-matcher", 0);
	ck_assert_int_gt(m0, 0);
	kill(m0, SIGKILL);
	wait_new_matcher(0, m0);
	conn(&c);
	same_status(&c, id, owner, want, 4, "after a matcher restart");
	client_close(&c);
	/* Everything killed, then a clean stop (a snapshot) and a start. */
	kill_everything();
	start(win);
	conn(&c);
	same_status(&c, id, owner, want, 4, "after kill -9 of everything");
	client_close(&c);
	stop_clean();
	start(win);
	conn(&c);
	same_status(&c, id, owner, want, 4, "after a snapshot");
	client_close(&c);
	stop_clean();

	/* A damaged history file: the start says so, nothing crashes, and
	 * the orders it held are not answered with made-up states. */
	char path[PATH_MAX + 32];
	snprintf(path, sizeof(path), "%s/shard-0/history", ddir);
	int fd = open(path, O_RDWR);
	ck_assert_int_ge(fd, 0);
	unsigned char b;
	ck_assert_int_eq(pread(fd, &b, 1, 40), 1);
	b ^= 0x5a;
	ck_assert_int_eq(pwrite(fd, &b, 1, 40), 1);
	close(fd);
	start(win);
	conn(&c);
	char *got = status(&c, 2, id[0]);
	ck_assert_msg(strstr(got, "error") && strcmp(got, want[0]), "%s", got);
	free(got);
	client_close(&c);
	stop_clean();
	for (int i = 0; i < 4; i++)
		free(want[i]);
}
END_TEST

static Suite *durability_suite(void)
{
	Suite *s = suite_create("durability");
	TCase *tc = tcase_create("crashes");
	tcase_add_checked_fixture(tc, NULL, teardown);
	tcase_add_unchecked_fixture(tc, NULL, cleanup_noted);
	tcase_set_timeout(tc, 90);
	tcase_add_test(tc, dead_matcher_comes_back_while_others_trade);
	tcase_add_test(tc, everything_killed_recovers_exact_state);
	tcase_add_test(tc, balances_of_1e15_trade_and_recover_exactly);
	tcase_add_test(tc, positions_past_int64_trade_and_recover_exactly);
	tcase_add_test(tc, account_created_empty_survives_kill_of_everything);
	tcase_add_test(tc, credit_on_one_shard_is_not_spendable_before_it_is_durable);
	tcase_add_test(tc, kills_under_load_lose_nothing_acknowledged);
	tcase_add_test(tc, recovered_state_hashes_the_same);
	tcase_add_test(tc, post_only_orders_recover_the_same);
	tcase_add_test(tc, data_dir_of_a_live_exchange_and_other_shards_refused);
	suite_add_tcase(s, tc);
	TCase *td = tcase_create("disk");
	tcase_add_checked_fixture(td, NULL, teardown);
	tcase_add_unchecked_fixture(td, NULL, cleanup_noted);
	tcase_set_timeout(td, 60);
	tcase_add_test(td, torn_tail_is_cut_off_with_a_message);
	tcase_add_test(td, corrupt_record_stops_start_until_truncate_corrupt);
	tcase_add_test(td, empty_segment_and_missing_directory);
	tcase_add_test(td, unwritable_data_directory_is_a_clear_error);
	tcase_add_test(td, full_disk_refuses_orders_and_keeps_what_it_acknowledged);
	suite_add_tcase(s, td);
	TCase *ts = tcase_create("snapshots");
	tcase_add_checked_fixture(ts, NULL, teardown);
	tcase_add_unchecked_fixture(ts, NULL, cleanup_noted);
	tcase_set_timeout(ts, 150);
	tcase_add_test(ts, snapshots_under_load_recover_the_same_state);
	tcase_add_test(ts, damaged_snapshot_falls_back_to_the_older_one);
	tcase_add_test(ts, snapshot_of_other_capacities_is_skipped);
	tcase_add_test(ts, consistent_checksums_do_not_make_a_snapshot_trusted);
	suite_add_tcase(s, ts);
	TCase *th = tcase_create("history");
	tcase_add_checked_fixture(th, NULL, teardown);
	tcase_add_unchecked_fixture(th, NULL, cleanup_noted);
	tcase_set_timeout(th, 90);
	tcase_add_test(th, finished_orders_answer_from_history);
	tcase_add_test(th, gateway_starts_while_a_matcher_recovers);
	tcase_add_test(th, matcher_killed_during_a_whole_recovery);
	tcase_add_test(th, stop_during_a_whole_recovery_is_clean);
	suite_add_tcase(s, th);
	return s;
}

SHMEX_TEST_MAIN(durability_suite)
