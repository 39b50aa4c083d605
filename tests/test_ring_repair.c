/*
 * ring_repair_suite: a stray ring writer does not kill a gateway-to-shard
 * path (docs/ring.md, "Corruption and repair").  Each test starts the real
 * `shmex` supervisor (one XML gateway, two shards, a journal), trades over
 * TCP, then a forked stray process maps the rings region and publishes
 * into gateway 0's request ring of shard 0, ahead of the gateway's own
 * private head.  The next request the gateway publishes moves head back,
 * which the matcher reports as corruption.  The tests check that the
 * corruption is reported (counter and generation in shared memory, and in
 * `shmex-query stats`), that the supervisor repairs the ring with both
 * ends so that new requests on that path succeed, that a gateway killed
 * with SIGKILL on a corrupt ring is restarted and serves (no crash loop),
 * and that nothing acknowledged before is lost.
 */
#include "tests/shmex_test.h"

#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "shm/shm_accounts.h"
#include "shm/shm_atomic.h"
#include "shm/shm_dec.h"
#include "shm/shm_instance.h"
#include "shm/shm_msg.h"
#include "shm/shm_ring.h"
#include "shm/shm_shard.h"
#include "tests/client.h"

#define T_MS 30000
#define CAPS                                                                           \
	"--orders", "8192", "--levels", "1024", "--fills", "32768", "--symbols", "64", \
		"--accounts", "4096", "--positions", "16384", "--gateways", "1",       \
		"--shards", "2", "--answer-ms", "20000", "--quiet"

static char inst[64];
static char ddir[PATH_MAX];
static struct exchange ex;

static void fresh(void)
{
	test_instance(inst, sizeof(inst));
	test_note_instance("ring_repair", inst);
	const char *root = getenv("SHMEX_TEST_DATA");
	snprintf(ddir, sizeof(ddir), "%s/%s", root && *root ? root : "/tmp", inst);
}

static void cleanup_noted(void)
{
	test_cleanup_noted("ring_repair");
}

static void start_with(const char *more)
{
	char dd[PATH_MAX + 16];
	snprintf(dd, sizeof(dd), "--data-dir=%s", ddir);
	const char *argv[40] = {CAPS, dd, more, NULL};
	int rc = exchange_start(&ex, test_bin("shmex"), inst, argv, 30000);
	ck_assert_msg(rc == 0, "shmex did not start");
}

static void start(void)
{
	start_with(NULL);
}

static void teardown(void)
{
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
}

static void conn(struct client *c)
{
	ck_assert_int_eq(client_connect(c, "127.0.0.1", ex.port, T_MS), 0);
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

/* The reply to xml, owned by the caller; NULL when the connection failed. */
static char *ask(struct client *c, const char *xml)
{
	const char *rep;
	size_t len;
	int rc = client_request(c, xml, &rep, &len, T_MS);
	if (rc != 0)
		return NULL;
	return strndup(rep, len);
}

/* Places one order: its id, or 0 with the reply in *why. */
static uint64_t order(struct client *c, int account, const char *sym, const char *amount,
		      const char *limit, char **why)
{
	char xml[512];
	snprintf(xml, sizeof(xml),
		 "<transactions id=\"%d\"><order sym=\"%s\" amount=\"%s\" "
		 "limit=\"%s\"/></transactions>",
		 account, sym, amount, limit);
	char *rep = ask(c, xml);
	*why = NULL;
	if (!rep) {
		*why = strdup("(no reply: connection failed)");
		return 0;
	}
	uint64_t id = 0;
	const char *p = strstr(rep, "<opened ");
	if (p) {
		const char *q = strstr(p, "id=\"");
		if (q)
			id = strtoull(q + 4, NULL, 10);
	}
	if (!id)
		*why = rep;
	else
		free(rep);
	return id;
}

static char *status(struct client *c, int account, uint64_t id)
{
	char xml[256];
	snprintf(xml, sizeof(xml),
		 "<transactions id=\"%d\"><query id=\"%llu\"/></transactions>", account,
		 (unsigned long long)id);
	char *rep = ask(c, xml);
	ck_assert_ptr_nonnull(rep);
	return rep;
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

/* Statistics of request ring gateway g -> shard 0, read-only. */
static void req_ring_stats_of(uint32_t g, struct shm_ring_stats *st)
{
	struct shm_instance h;
	ck_assert_int_eq(shm_instance_attach(inst, SHM_ROLE_OBSERVER, 0, &h), 0);
	struct shm_ring r;
	int rc = shm_instance_request_ring(&h, g, 0, &r);
	ck_assert_msg(rc == 0 || rc == SHMEX_ERINGCORRUPT, "%s", shmex_strerror(rc));
	shm_ring_stats(&r, st);
	shm_instance_detach(&h);
}

static void req_ring_stats(struct shm_ring_stats *st)
{
	req_ring_stats_of(0, st);
}

/*
 * The stray: a forked process that maps the rings region as any process
 * of the exchange's group could, and publishes `n` messages of its own
 * (zeroed, so a matcher rejects them) into request ring g0 -> s0 through a
 * producer handle of its own, which leaves the real gateway's private
 * head behind.
 */
static void stray_publishes(unsigned n)
{
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		struct shm_instance h;
		if (shm_instance_attach(inst, SHM_ROLE_SUPERVISOR, 0, &h) != 0)
			_exit(2);
		struct shm_ring r;
		if (shm_instance_request_ring(&h, 0, 0, &r) != 0)
			_exit(3);
		struct shm_msg junk[8];
		memset(junk, 0, sizeof(junk));
		unsigned done = 0;
		if (shm_ring_enqueue_batch(&r, junk, n > 8 ? 8 : n, &done) != 0 || !done)
			_exit(4);
		/* Until the matcher took them: the real producer's head is
		 * then behind the consumer's tail. */
		uint64_t want = shm_ring_produced(&r);
		for (int t = 0; t < 2000; t++) {
			struct shm_ring_stats st;
			shm_ring_stats(&r, &st);
			if (st.tail == want)
				break;
			usleep(10000);
		}
		shm_instance_detach(&h);
		_exit(0);
	}
	int st = 0;
	ck_assert_int_eq(waitpid(pid, &st, 0), pid);
	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "stray failed: 0x%x", st);
}

/* Orders on shard 0 until one is opened (within ~60 s); the answers
 * before it must each be one of the truthful errors. */
static uint64_t order_until_opened(struct client *c, const char *sym)
{
	for (int i = 0; i < 120; i++) {
		char *why = NULL;
		uint64_t id = order(c, 1, sym, "1", "1", &why);
		if (id)
			return id;
		ck_assert_msg(why && (strstr(why, "Outcome unknown") ||
				      strstr(why, "Not executed") ||
				      strstr(why, "busy") || strstr(why, "no reply")),
			      "unexpected answer on a repaired path: %s", why);
		bool lost = strstr(why, "no reply") != NULL;
		free(why);
		if (lost) {
			client_close(c);
			usleep(200000);
			if (client_connect(c, "127.0.0.1", ex.port, T_MS) != 0)
				continue;
		}
		usleep(250000);
	}
	ck_abort_msg("the gateway 0 -> shard 0 path never served again");
	return 0;
}

/* `shmex-query stats` mentions the repair of ring g0 -> s0. */
static bool stats_show_repair(void)
{
	char cmd[PATH_MAX + 128];
	snprintf(cmd, sizeof(cmd), "%s stats --instance %s 2>&1", test_bin("shmex-query"),
		 inst);
	FILE *p = popen(cmd, "r");
	ck_assert_ptr_nonnull(p);
	char line[1024];
	bool seen = false;
	while (fgets(line, sizeof(line), p))
		if (strstr(line, "g0") && strstr(line, "repaired"))
			seen = true;
	pclose(p);
	return seen;
}

START_TEST(stray_writer_is_reported_and_repaired)
{
	fresh();
	start();
	const char *a = sym_on(0), *b = sym_on(1);
	struct client c;
	conn(&c);
	char xml[512];
	snprintf(xml, sizeof(xml),
		 "<create><account id=\"1\" balance=\"100000\"/>"
		 "<account id=\"2\" balance=\"1000\"/>"
		 "<symbol sym=\"%s\"><account id=\"2\">500</account></symbol>"
		 "<symbol sym=\"%s\"><account id=\"2\">500</account></symbol></create>",
		 a, b);
	char *rep = ask(&c, xml);
	ck_assert_ptr_nonnull(rep);
	ck_assert_msg(!strstr(rep, "error"), "%s", rep);
	free(rep);
	char *why = NULL;
	uint64_t sell = order(&c, 2, a, "-100", "10", &why); /* rests on shard 0 */
	ck_assert_msg(sell, "%s", why);
	uint64_t buy = order(&c, 1, a, "30", "10", &why); /* 30 @ 10 */
	ck_assert_msg(buy, "%s", why);
	uint64_t other = order(&c, 1, b, "5", "3", &why); /* rests on shard 1 */
	ck_assert_msg(other, "%s", why);
	char *before[3] = {status(&c, 2, sell), status(&c, 1, buy), status(&c, 1, other)};
	struct shm_ring_stats st0;
	req_ring_stats(&st0);

	/* The stray publishes; the gateway's next request on shard 0 moves
	 * head back behind the matcher's tail.  The matcher never took it,
	 * and the client is told so once the ring is repaired (well before
	 * --answer-ms would call it "Outcome unknown"). */
	stray_publishes(8);
	uint64_t lost = order(&c, 1, a, "1", "1", &why);
	ck_assert_msg(lost == 0 && why && strstr(why, "Not executed") &&
			      strstr(why, "repaired"),
		      "the request lost in the corrupt ring: %s", why ? why : "opened");
	free(why);

	/* (a) reported: the consumer counted it, and (b) repaired: the ring
	 * is in a new generation and requests on the path succeed again. */
	uint64_t again = order_until_opened(&c, a);
	struct shm_ring_stats st1;
	req_ring_stats(&st1);
	ck_assert_uint_gt(st1.corrupt, st0.corrupt);
	ck_assert_uint_gt(st1.gen, st0.gen);
	ck_assert(!st1.corrupt_now);
	ck_assert(stats_show_repair());

	/* Shard 1 was never affected; nothing acknowledged is lost. */
	uint64_t more = order(&c, 1, b, "1", "3", &why);
	ck_assert_msg(more, "%s", why);
	char *after[3] = {status(&c, 2, sell), status(&c, 1, buy), status(&c, 1, other)};
	for (int i = 0; i < 3; i++) {
		ck_assert_str_eq(after[i], before[i]);
		free(after[i]);
	}
	char *s2 = status(&c, 1, again);
	ck_assert_msg(strstr(s2, "<open shares=\"1\""), "%s", s2);
	free(s2);

	/* Cash: 1 paid 300 for 30 @ 10 and holds 1 + 1 x 1 (the rejected or
	 * repaired ones hold nothing) + 15 + 3; conserved either way. */
	struct shm_account_view v1 = account(1), v2 = account(2);
	ck_assert_int_eq(v2.balance, 1300 * SHM_CASH_ONE);
	ck_assert_int_eq(v1.balance + v1.reserved, (100000 - 300) * SHM_CASH_ONE);
	ck_assert_int_eq(v1.deposited + v2.deposited, 101000 * SHM_CASH_ONE);
	for (int i = 0; i < 3; i++)
		free(before[i]);
	client_close(&c);
	int xs = exchange_stop(&ex, 30000);
	ck_assert_msg(xs >= 0 && WIFEXITED(xs) && WEXITSTATUS(xs) == 0, "exit 0x%x", xs);
}
END_TEST

START_TEST(gateway_killed_on_a_corrupt_ring_comes_back)
{
	fresh();
	start();
	const char *a = sym_on(0);
	struct client c;
	conn(&c);
	char xml[256];
	snprintf(xml, sizeof(xml),
		 "<create><account id=\"1\" balance=\"1000\"/><symbol sym=\"%s\">"
		 "<account id=\"1\">10</account></symbol></create>",
		 a);
	char *rep = ask(&c, xml);
	ck_assert_ptr_nonnull(rep);
	ck_assert_msg(!strstr(rep, "error"), "%s", rep);
	free(rep);
	char *why = NULL;
	uint64_t first = order(&c, 1, a, "2", "5", &why);
	ck_assert_msg(first, "%s", why);
	char *before = status(&c, 1, first);
	struct shm_ring_stats st0, st1;
	req_ring_stats(&st0);
	/* The supervisor is held, so that nothing is repaired before the
	 * gateway dies: its successor finds the ring corrupt (head behind
	 * tail), as every restarted gateway did before. */
	ck_assert_int_eq(kill(ex.pid, SIGSTOP), 0);
	stray_publishes(8);
	/* Head goes back: corrupt.  Not waited for: the gateway dies with
	 * the request outstanding, and the client sees its connection end. */
	snprintf(xml, sizeof(xml),
		 "<transactions id=\"1\"><order sym=\"%s\" amount=\"1\" "
		 "limit=\"1\"/></transactions>",
		 a);
	ck_assert_int_eq(client_send(&c, xml, T_MS), 0);
	for (int t = 0; t < 1000; t++) {
		req_ring_stats(&st1);
		if (st1.corrupt_now && st1.corrupt > st0.corrupt)
			break; /* and the matcher saw it */
		usleep(10000);
	}
	ck_assert_msg(st1.corrupt_now, "the ring never became corrupt");
	ck_assert_uint_gt(st1.corrupt, st0.corrupt);
	pid_t g0 = exchange_child(&ex, "shmex-gateway", 0);
	ck_assert_int_gt(g0, 0);
	kill(g0, SIGKILL);
	ck_assert_int_eq(kill(ex.pid, SIGCONT), 0);
	client_close(&c);

	/* Its successors must attach and serve, not crash-loop. */
	pid_t g1 = -1;
	for (int t = 0; t < 300; t++) {
		g1 = exchange_child(&ex, "shmex-gateway", 0);
		if (g1 > 0 && g1 != g0)
			break;
		usleep(100000);
	}
	ck_assert_msg(g1 > 0 && g1 != g0, "gateway 0 was not restarted");
	conn(&c);
	uint64_t again = order_until_opened(&c, a);
	ck_assert_uint_ne(again, first);
	/* The restarted gateway is the one that served: no crash loop. */
	ck_assert_int_eq(exchange_child(&ex, "shmex-gateway", 0), g1);
	req_ring_stats(&st1);
	ck_assert_uint_gt(st1.gen, st0.gen);
	ck_assert(!st1.corrupt_now);
	char *now = status(&c, 1, first);
	ck_assert_str_eq(now, before);
	free(now);
	free(before);
	struct shm_account_view v = account(1);
	ck_assert_int_eq(v.balance + v.reserved, 1000 * SHM_CASH_ONE);
	client_close(&c);
	int xs = exchange_stop(&ex, 30000);
	ck_assert_msg(xs >= 0 && WIFEXITED(xs) && WEXITSTATUS(xs) == 0, "exit 0x%x", xs);
}
END_TEST

/* The FIX gateway (gateway 1 here) takes part in repairs as the XML one
 * does: a ring of its path whose head a stray moved behind tail is
 * repaired without the supervisor having to kill it. */
START_TEST(fix_gateway_joins_a_repair)
{
	fresh();
	start_with("--fix-port=0");
	pid_t fix = exchange_child(&ex, "shmex-fix", 1);
	ck_assert_int_gt(fix, 0);
	struct shm_ring_stats st0, st1;
	req_ring_stats_of(1, &st0);
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		struct shm_instance h;
		struct shm_ring r;
		if (shm_instance_attach(inst, SHM_ROLE_SUPERVISOR, 0, &h) != 0 ||
		    shm_instance_request_ring(&h, 1, 0, &r) != 0)
			_exit(2);
		/* Behind tail: what a producer left behind by a stray looks
		 * like once it publishes. */
		store_release(&r.sh->cons.tail, load_relaxed(&r.sh->cons.tail) + 5);
		shm_instance_detach(&h);
		_exit(0);
	}
	int wst = 0;
	ck_assert_int_eq(waitpid(pid, &wst, 0), pid);
	ck_assert(WIFEXITED(wst) && WEXITSTATUS(wst) == 0);
	for (int t = 0; t < 600; t++) {
		req_ring_stats_of(1, &st1);
		if (st1.gen > st0.gen && !st1.quiescing)
			break;
		usleep(50000);
	}
	ck_assert_msg(st1.gen > st0.gen, "the FIX gateway's ring was not repaired");
	ck_assert(!st1.corrupt_now);
	ck_assert_int_eq(exchange_child(&ex, "shmex-fix", 1), fix); /* not killed */
	int xs = exchange_stop(&ex, 30000);
	ck_assert_msg(xs >= 0 && WIFEXITED(xs) && WEXITSTATUS(xs) == 0, "exit 0x%x", xs);
}
END_TEST

static Suite *ring_repair_suite(void)
{
	Suite *s = suite_create("ring_repair");
	TCase *tc = tcase_create("stray");
	tcase_add_checked_fixture(tc, NULL, teardown);
	tcase_add_unchecked_fixture(tc, NULL, cleanup_noted);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, stray_writer_is_reported_and_repaired);
	tcase_add_test(tc, gateway_killed_on_a_corrupt_ring_comes_back);
	tcase_add_test(tc, fix_gateway_joins_a_repair);
	suite_add_tcase(s, tc);
	return s;
}

SHMEX_TEST_MAIN(ring_repair_suite)
