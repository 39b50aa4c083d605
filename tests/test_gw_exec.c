/*
 * gw_exec_suite: request execution in a gateway (gateway/gw_exec.c), with
 * the test playing the matcher.  A real shmex-gateway process serves a real
 * TCP client; the test owns shard 0's book, reader table and accounts,
 * takes the gateway's messages off the request ring and writes whatever
 * replies it likes on the reply ring: the right one, a stale one (another
 * req_id: a reply meant for a closed connection or a predecessor gateway),
 * a forged one (the right req_id with the wrong type, an order id of
 * another shard, a negative cancelled count, a status outside the table).
 * The client must get exactly the truthful answer, once; stale replies are
 * dropped and forged ones become "Internal error" (counted, not trusted).
 */
#include "tests/shmex_test.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "engine/eng_core.h"
#include "gateway/gw_listen.h"
#include "shm/shm_accounts.h"
#include "shm/shm_book.h"
#include "shm/shm_instance.h"
#include "shm/shm_positions.h"
#include "shm/shm_rcu.h"
#include "tests/client.h"

static char inst[48];
static struct shm_instance si;
static struct shm_accounts acc;
static struct shm_rcu rcu;
static struct shm_positions pos;
static struct shm_region book;
static struct eng_core *core;
static struct shm_ring req_ring, rep_ring;
static pid_t gw;
static int port;
static char errpath[128];

static void setup(void)
{
	test_instance(inst, sizeof(inst));
	struct shm_instance_cfg cfg;
	test_instance_cfg(&cfg, 2, 1, 64);
	cfg.s.spin_us = 0;
	cfg.s.answer_ms = 1000; /* small, so that the deadline tests are quick */
	cfg.s.drain_ms = 400;
	ck_assert_int_eq(shm_instance_create(inst, &cfg, &si), 0);
	ck_assert_int_eq(shm_accounts_create(&acc, inst, 64, 0600), 0);
	/* Both shards' books and reader tables (the gateway reads them);
	 * only shard 0 is played here, so only its rings are used. */
	for (uint32_t k = 0; k < 2; k++) {
		struct shm_rcu t;
		struct shm_positions p;
		struct shm_region b;
		struct eng_core_cfg bc = {
			.caps = {8, 64, 64, 256}, .shard = k, .nshards = 2};
		ck_assert_int_eq(shm_rcu_create(k ? &t : &rcu, inst, k, 8, 0600), 0);
		ck_assert_int_eq(
			shm_positions_create(k ? &p : &pos, inst, k, 8, 64, 0600), 0);
		ck_assert_int_eq(shm_book_region_create(k ? &b : &book, inst, &bc.caps, k,
							2, 0600),
				 0);
		struct eng_core *c;
		struct shm_region *br = k ? &b : &book;
		ck_assert_int_eq(eng_core_init(&c, shm_region_body(br),
					       shm_region_body_size(br), &bc, NULL, NULL),
				 0);
		shm_region_publish(br);
		if (k == 0) {
			core = c;
		} else {
			eng_core_destroy(c);
			shm_region_detach(&b);
			shm_positions_detach(&p);
			shm_rcu_detach(&t);
		}
	}
	ck_assert_int_eq(shm_instance_request_ring(&si, 0, 0, &req_ring), 0);
	ck_assert_int_eq(shm_instance_reply_ring(&si, 0, 0, &rep_ring), 0);

	int lfd;
	ck_assert_int_eq(gw_listen_open("127.0.0.1", 0, false, 16, &lfd, &port), 0);
	snprintf(errpath, sizeof(errpath), "/tmp/shmex-test-gwexec-%d.err",
		 (int)getpid());
	gw = fork();
	ck_assert_int_ge(gw, 0);
	if (gw == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		FILE *e = freopen(errpath, "w", stderr);
		(void)e;
		char fdbuf[16];
		snprintf(fdbuf, sizeof(fdbuf), "%d", lfd);
		fcntl(lfd, F_SETFD, 0); /* inherited across exec */
		execl(test_bin("shmex-gateway"), "shmex-gateway", "--instance", inst,
		      "--id", "0", "--listen-fd", fdbuf, (char *)NULL);
		_exit(127);
	}
	close(lfd);
	unsigned long long deadline = test_now_ns() + 10000000000ull;
	while (!shm_instance_gateway_ready(&si, 0, gw)) {
		ck_assert_msg(test_now_ns() < deadline, "gateway not ready");
		ck_assert_int_eq(waitpid(gw, NULL, WNOHANG), 0);
		usleep(2000);
	}
}

/* Stops the gateway; returns its stderr (its stop line has the counters). */
static const char *stop_gateway(void)
{
	static char buf[4096];
	buf[0] = 0;
	if (gw > 0) {
		kill(gw, SIGTERM);
		int st = test_wait_pid(gw, 10000);
		ck_assert_msg(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0,
			      "gateway status 0x%x", st);
		gw = 0;
		FILE *f = fopen(errpath, "r");
		if (f) {
			size_t n = fread(buf, 1, sizeof(buf) - 1, f);
			buf[n] = 0;
			fclose(f);
		}
		unlink(errpath);
	}
	return buf;
}

static void teardown(void)
{
	(void)stop_gateway();
	eng_core_destroy(core);
	shm_region_detach(&book);
	shm_positions_detach(&pos);
	shm_rcu_detach(&rcu);
	shm_accounts_detach(&acc);
	shm_instance_detach(&si);
	test_cleanup_instance(inst);
}

/* The next request the gateway put on shard 0's ring. */
static struct shm_msg take_request(void)
{
	struct shm_msg m;
	unsigned got = 0;
	unsigned long long deadline = test_now_ns() + 5000000000ull;
	for (;;) {
		ck_assert_int_eq(shm_ring_dequeue_batch(&req_ring, &m, 1, &got), 0);
		if (got)
			return m;
		ck_assert_msg(test_now_ns() < deadline, "no request from the gateway");
		usleep(500);
	}
}

static void put_reply(const struct shm_msg *m)
{
	unsigned done = 0;
	ck_assert_int_eq(shm_ring_enqueue_batch(&rep_ring, m, 1, &done), 0);
	ck_assert_uint_eq(done, 1);
}

static struct shm_msg reply_to(const struct shm_msg *q, int status)
{
	struct shm_msg a;
	memset(&a, 0, sizeof(a));
	a.type = SHM_MSG_REPLY;
	a.req_type = q->type;
	a.req_id = q->req_id;
	a.account = q->account;
	a.status = status;
	a.price = q->price;
	a.qty = q->qty;
	return a;
}

/* Reads one reply document, or asserts after timeout_ms. */
static const char *recv_reply(struct client *c, int timeout_ms)
{
	const char *r;
	size_t n;
	int rc = client_recv(c, &r, &n, timeout_ms);
	ck_assert_msg(rc == 0, "no reply: %d", rc);
	return r;
}

/* A stale reply (another req_id) is dropped; the real one that follows is
 * the answer, delivered once. */
START_TEST(stale_reply_is_dropped)
{
	struct client c;
	ck_assert_int_eq(client_connect(&c, "127.0.0.1", port, 5000), 0);
	ck_assert_int_eq(
		client_send(&c, "<create><account id=\"2\" balance=\"10\"/></create>",
			    5000),
		0);
	struct shm_msg q = take_request();
	ck_assert_uint_eq(q.type, SHM_MSG_CREATE_ACCOUNT);
	ck_assert_uint_eq(q.account, 2);
	struct shm_msg stale = reply_to(&q, SHMEX_EACCOUNTEXISTS);
	stale.req_id ^= UINT64_C(1) << 20; /* same slot, another request */
	put_reply(&stale);
	struct shm_msg other = reply_to(&q, SHMEX_EACCOUNTEXISTS);
	other.req_id = (other.req_id & ~UINT64_C(0xffff)) | 0x7fff; /* no such slot */
	put_reply(&other);
	/* Nothing may reach the client from those two. */
	const char *r;
	size_t n;
	ck_assert_int_eq(client_recv(&c, &r, &n, 300), -ETIMEDOUT);
	put_reply((struct shm_msg[]){reply_to(&q, 0)});
	r = recv_reply(&c, 5000);
	ck_assert_msg(strstr(r, "<created id=\"2\"/>") && !strstr(r, "error"), "%s", r);
	ck_assert_int_eq(client_recv(&c, &r, &n, 300), -ETIMEDOUT);
	client_close(&c);
	const char *log = stop_gateway();
	ck_assert_msg(strstr(log, "2 stale replies"), "%s", log);
}
END_TEST

/* A reply with the right req_id but lies in it is not forwarded: the
 * client is told "Internal error" and the reply is counted as bad. */
START_TEST(forged_replies_become_internal_errors)
{
	struct client c;
	ck_assert_int_eq(client_connect(&c, "127.0.0.1", port, 5000), 0);
	uint32_t aidx;
	ck_assert_int_eq(shm_accounts_add(&acc, 8, 100000000000LL, &aidx), 0);

	/* 1. The reply claims to answer another request type. */
	ck_assert_int_eq(client_send(&c,
				     "<create><account id=\"4\" balance=\"1\"/></create>",
				     5000),
			 0);
	struct shm_msg q = take_request();
	struct shm_msg a = reply_to(&q, 0);
	a.req_type = SHM_MSG_CANCEL;
	put_reply(&a);
	const char *r = recv_reply(&c, 5000);
	ck_assert_msg(strstr(r, "<error id=\"4\">Internal error</error>"), "%s", r);

	/* 2. An order "opened" with an id that shard 0 cannot own. */
	char sym[8], xml[160];
	for (int i = 0;; i++) {
		int n = snprintf(sym, sizeof(sym), "S%d", i);
		if (shm_shard_of_symbol(sym, (size_t)n, 2) == 0)
			break;
	}
	snprintf(xml, sizeof(xml),
		 "<transactions id=\"8\"><order sym=\"%s\" "
		 "amount=\"1\" limit=\"1\"/></transactions>",
		 sym);
	ck_assert_int_eq(client_send(&c, xml, 5000), 0);
	q = take_request();
	ck_assert_uint_eq(q.type, SHM_MSG_ORDER);
	a = reply_to(&q, 0);
	a.order_id = 2; /* shard 1's first id */
	put_reply(&a);
	r = recv_reply(&c, 5000);
	ck_assert_msg(strstr(r, "Internal error") && !strstr(r, "<opened"), "%s", r);

	/* 3. A status outside the error table. */
	ck_assert_int_eq(client_send(&c,
				     "<create><account id=\"6\" balance=\"1\"/></create>",
				     5000),
			 0);
	q = take_request();
	a = reply_to(&q, 0);
	a.status = -77777;
	put_reply(&a);
	r = recv_reply(&c, 5000);
	ck_assert_msg(strstr(r, "<error id=\"6\">Internal error</error>"), "%s", r);

	/* 4. A cancel that "cancelled" a negative number of shares. */
	ck_assert_int_eq(client_send(&c,
				     "<transactions id=\"8\"><cancel id=\"1\"/>"
				     "</transactions>",
				     5000),
			 0);
	q = take_request();
	ck_assert_uint_eq(q.type, SHM_MSG_CANCEL);
	a = reply_to(&q, 0);
	a.order_id = 1;
	a.qty = -5;
	put_reply(&a);
	r = recv_reply(&c, 5000);
	ck_assert_msg(strstr(r, "Internal error") && !strstr(r, "<canceled"), "%s", r);
	client_close(&c);
	const char *log = stop_gateway();
	ck_assert_msg(strstr(log, "4 bad replies"), "%s", log);
}
END_TEST

/* A matcher that takes an item and never answers: within answer_ms the
 * client is told "Outcome unknown" with a ref (it may have executed), the
 * later item of the request is not sent at all and says so, and the answer
 * that comes late is logged under that ref for the operator. */
START_TEST(unanswered_item_is_outcome_unknown)
{
	struct client c;
	ck_assert_int_eq(client_connect(&c, "127.0.0.1", port, 5000), 0);
	ck_assert_int_eq(client_send(&c,
				     "<create><account id=\"2\" balance=\"10\"/>"
				     "<account id=\"3\" balance=\"10\"/></create>",
				     5000),
			 0);
	struct shm_msg q = take_request();
	ck_assert_uint_eq(q.account, 2);
	const char *r = recv_reply(&c, 5000);
	char ref[40];
	snprintf(ref, sizeof(ref), "ref %016llx", (unsigned long long)q.req_id);
	ck_assert_msg(strstr(r, "<error id=\"2\">Outcome unknown: the exchange did not "
				"answer in time; check before sending it again: ") &&
			      strstr(r, ref),
		      "%s", r);
	ck_assert_msg(strstr(r, "<error id=\"3\">Not executed: an earlier item of this "
				"request has no answer</error>"),
		      "%s", r);
	/* The late answer, then a new request: account 3 was never sent. */
	put_reply((struct shm_msg[]){reply_to(&q, 0)});
	ck_assert_int_eq(client_send(&c,
				     "<create><account id=\"4\" balance=\"1\"/></create>",
				     5000),
			 0);
	struct shm_msg q4 = take_request();
	ck_assert_uint_eq(q4.account, 4);
	put_reply((struct shm_msg[]){reply_to(&q4, 0)});
	r = recv_reply(&c, 5000);
	ck_assert_msg(strstr(r, "<created id=\"4\"/>"), "%s", r);
	client_close(&c);
	const char *log = stop_gateway();
	ck_assert_msg(strstr(log, "late answer from shard 0 to ref") &&
			      strstr(log, ref + 4),
		      "%s", log);
	ck_assert_msg(strstr(log, "1 outcome unknown (1 late)"), "%s", log);
}
END_TEST

/* A stop while an item waits for its matcher and another request is
 * pipelined behind it: after drain_ms every client has an answer that
 * says which is which, then the gateway exits 0. */
START_TEST(stop_answers_what_is_in_flight)
{
	struct client c;
	ck_assert_int_eq(client_connect(&c, "127.0.0.1", port, 5000), 0);
	ck_assert_int_eq(client_send(&c,
				     "<create><account id=\"2\" balance=\"10\"/>"
				     "<account id=\"3\" balance=\"10\"/></create>",
				     5000),
			 0);
	ck_assert_int_eq(client_send(&c,
				     "<create><account id=\"5\" balance=\"1\"/></create>",
				     5000),
			 0);
	struct shm_msg q = take_request();
	ck_assert_uint_eq(q.account, 2);
	kill(gw, SIGTERM);
	const char *r = recv_reply(&c, 5000);
	ck_assert_msg(strstr(r, "<error id=\"2\">Outcome unknown: ") &&
			      strstr(r, "the exchange is stopping; ref "),
		      "%s", r);
	ck_assert_msg(strstr(r, "<error id=\"3\">Not executed: the exchange is "
				"stopping</error>"),
		      "%s", r);
	r = recv_reply(&c, 5000);
	ck_assert_msg(strstr(r, "<error>Not executed: the exchange is stopping</error>"),
		      "%s", r);
	ck_assert_int_eq(client_wait_closed(&c, 5000), 0);
	client_close(&c);
	const char *log = stop_gateway();
	ck_assert_msg(strstr(log, "1 drained, 1 answered stopping"), "%s", log);
}
END_TEST

/* A request of 3,000 queries (answered by the gateway alone) is executed
 * in slices: the loop gets back between them (at most 1,024 items or
 * 1 ms each), and the reply is whole and in order. */
START_TEST(long_request_runs_in_slices)
{
	uint32_t aidx;
	ck_assert_int_eq(shm_accounts_add(&acc, 8, 100000000000LL, &aidx), 0);
	uint64_t id = 1;
	while (shm_shard_of_order(id, 2) != 0)
		id++;
	size_t cap = 3000 * 32 + 64, n = 0;
	char *xml = malloc(cap);
	n += (size_t)snprintf(xml + n, cap - n, "<transactions id=\"8\">");
	for (int i = 0; i < 3000; i++)
		n += (size_t)snprintf(xml + n, cap - n, "<query id=\"%llu\"/>",
				      (unsigned long long)id);
	snprintf(xml + n, cap - n, "</transactions>");
	struct client c;
	ck_assert_int_eq(client_connect(&c, "127.0.0.1", port, 5000), 0);
	ck_assert_int_eq(client_send(&c, xml, 5000), 0);
	const char *r = recv_reply(&c, 10000);
	size_t errors = 0;
	for (const char *p = r; (p = strstr(p, "Order does not exist")) != NULL; p++)
		errors++;
	ck_assert_uint_eq(errors, 3000);
	free(xml);
	client_close(&c);
	const char *log = stop_gateway();
	const char *sl = strstr(log, " slices");
	ck_assert_msg(sl, "%s", log);
	while (sl > log && sl[-1] >= '0' && sl[-1] <= '9')
		sl--;
	ck_assert_msg(strtoul(sl, NULL, 10) >= 2, "%s", log);
}
END_TEST

static Suite *gw_exec_suite(void)
{
	Suite *s = suite_create("gw_exec");
	TCase *tc = tcase_create("replies");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, stale_reply_is_dropped);
	tcase_add_test(tc, forged_replies_become_internal_errors);
	tcase_add_test(tc, unanswered_item_is_outcome_unknown);
	tcase_add_test(tc, stop_answers_what_is_in_flight);
	tcase_add_test(tc, long_request_runs_in_slices);
	suite_add_tcase(s, tc);
	return s;
}

SHMEX_TEST_MAIN(gw_exec_suite)
