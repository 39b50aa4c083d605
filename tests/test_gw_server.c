/*
 * gw_server_suite: the gateway's epoll loop with a stub handler, in a real
 * child process over real TCP on 127.0.0.1.
 *
 * The stub answers by the request's text: "sync" at once; "async" from the
 * next poll at least 50 ms later; "hold" the same, 3 s later; "big" with a 256 KiB reply; "stream" with
 * a 16 MiB reply streamed in 256 KiB parts, each only when
 * gw_server_may_send allows it; "stats" with the loop's counters; "stop"
 * starts the drain.  Everything else is echoed as <echo len="N"/>.
 */
#include "tests/shmex_test.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "gateway/gw_server.h"
#include "tests/client.h"

#define T_MS 5000
#define BIG_REPLY (256u << 10)

/* ---- the stub handler (runs in the server child) ---- */

struct stub {
	struct gw_server *srv;
	struct gw_conn_ref pending[64];
	unsigned long long due[64];
	int npending;
	unsigned long long held; /* "hold" requests taken */
	unsigned long long aborts;
	char *big;
	char *filler;
	struct gw_conn_ref streams[8];
	int left[8];
	int nstreams;
};

#define STREAM_PARTS 64

static void stub_request(void *ctx, struct gw_conn_ref c, const char *xml, size_t len)
{
	struct stub *st = ctx;
	char out[1024];
	if (len == 4 && !memcmp(xml, "sync", 4)) {
		int n = snprintf(out, sizeof(out), "<results><sync/></results>");
		ck_assert_int_eq(gw_server_reply(st->srv, c, out, (size_t)n), 0);
	} else if (len == 5 && !memcmp(xml, "async", 5)) {
		ck_assert_int_lt(st->npending, 64);
		st->pending[st->npending] = c;
		st->due[st->npending++] = test_now_ns() + 50000000ull;
	} else if (len == 4 && !memcmp(xml, "hold", 4)) {
		ck_assert_int_lt(st->npending, 64);
		st->held++;
		st->pending[st->npending] = c;
		st->due[st->npending++] = test_now_ns() + 3000000000ull;
	} else if (len == 3 && !memcmp(xml, "big", 3)) {
		ck_assert_int_eq(gw_server_reply(st->srv, c, st->big, BIG_REPLY), 0);
	} else if (len == 6 && !memcmp(xml, "stream", 6)) {
		ck_assert_int_lt(st->nstreams, 8);
		ck_assert_int_eq(gw_server_reply_part(st->srv, c, "<results>", 9), 0);
		st->streams[st->nstreams] = c;
		st->left[st->nstreams++] = STREAM_PARTS;
	} else if (len == 5 && !memcmp(xml, "stats", 5)) {
		struct gw_server_stats s;
		gw_server_get_stats(st->srv, &s);
		int n = snprintf(
			out, sizeof(out),
			"<results><stats requests=\"%llu\" refused=\"%llu\""
			" deadlines=\"%llu\" aborted=\"%llu\" open=\"%u\""
			" frame_errors=\"%llu\" held=\"%llu\"/></results>",
			(unsigned long long)s.requests, (unsigned long long)s.refused,
			(unsigned long long)s.deadlines, (unsigned long long)s.aborted,
			s.open, (unsigned long long)s.frame_errors, st->held);
		ck_assert_int_eq(gw_server_reply(st->srv, c, out, (size_t)n), 0);
	} else if (len == 6 && !memcmp(xml, "stats2", 6)) {
		struct gw_server_stats s;
		gw_server_get_stats(st->srv, &s);
		int n = snprintf(
			out, sizeof(out),
			"<results><stats unsent_peak=\"%llu\" idle_closed=\"%llu\""
			" refused_peer=\"%llu\"/></results>",
			(unsigned long long)s.unsent_peak,
			(unsigned long long)s.idle_closed,
			(unsigned long long)s.refused_peer);
		ck_assert_int_eq(gw_server_reply(st->srv, c, out, (size_t)n), 0);
	} else if (len == 4 && !memcmp(xml, "stop", 4)) {
		int n = snprintf(out, sizeof(out), "<results><stopping/></results>");
		ck_assert_int_eq(gw_server_reply(st->srv, c, out, (size_t)n), 0);
		gw_server_stop(st->srv);
	} else {
		int n = snprintf(out, sizeof(out),
				 "<results><echo len=\"%zu\"/></results>", len);
		ck_assert_int_eq(gw_server_reply(st->srv, c, out, (size_t)n), 0);
	}
}

static void stub_abort(void *ctx, struct gw_conn_ref c)
{
	struct stub *st = ctx;
	for (int i = 0; i < st->npending; i++)
		if (st->pending[i].slot == c.slot && st->pending[i].gen == c.gen) {
			st->pending[i] = st->pending[--st->npending];
			st->due[i] = st->due[st->npending];
			break;
		}
	st->aborts++;
}

static int stub_poll(void *ctx)
{
	struct stub *st = ctx;
	unsigned long long now = test_now_ns();
	for (int i = 0; i < st->nstreams;) {
		while (st->left[i] > 0 && gw_server_may_send(st->srv, st->streams[i])) {
			ck_assert_int_eq(gw_server_reply_part(st->srv, st->streams[i],
							      st->filler, BIG_REPLY),
					 0);
			st->left[i]--;
		}
		if (st->left[i] == 0) {
			ck_assert_int_eq(gw_server_reply(st->srv, st->streams[i],
							 "</results>", 10),
					 0);
			st->streams[i] = st->streams[--st->nstreams];
			st->left[i] = st->left[st->nstreams];
		} else {
			i++;
		}
	}
	for (int i = 0; i < st->npending;) {
		if (now >= st->due[i]) {
			static const char r[] = "<results><async/></results>";
			ck_assert_int_eq(gw_server_reply(st->srv, st->pending[i], r,
							 sizeof(r) - 1),
					 0);
			st->pending[i] = st->pending[--st->npending];
			st->due[i] = st->due[st->npending];
		} else {
			i++;
		}
	}
	return st->npending || st->nstreams ? 10 : -1;
}

struct srv {
	pid_t pid;
	int port;
};

static struct srv srv;

/* Forks a server child with the given configuration (listen_fd filled in
 * here); the child reports its port through a pipe. */
static void start_server(struct gw_server_cfg cfg)
{
	int p[2];
	ck_assert_int_eq(pipe(p), 0);
	int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	ck_assert_int_ge(lfd, 0);
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = 0};
	inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
	ck_assert_int_eq(bind(lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	ck_assert_int_eq(listen(lfd, 64), 0);
	socklen_t sl = sizeof(sa);
	ck_assert_int_eq(getsockname(lfd, (struct sockaddr *)&sa, &sl), 0);
	srv.port = ntohs(sa.sin_port);
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		close(p[0]);
		struct stub st = {0};
		st.big = malloc(BIG_REPLY);
		memset(st.big, 'x', BIG_REPLY);
		memcpy(st.big, "<results>", 9);
		memcpy(st.big + BIG_REPLY - 10, "</results>", 10);
		st.filler = malloc(BIG_REPLY);
		memset(st.filler, 'x', BIG_REPLY);
		cfg.listen_fd = lfd;
		struct gw_server_ops ops = {.ctx = &st,
					    .request = stub_request,
					    .abort = stub_abort,
					    .poll = stub_poll};
		if (gw_server_create(&st.srv, &cfg, &ops) != 0)
			_exit(3);
		(void)!write(p[1], "k", 1);
		int rc = gw_server_run(st.srv);
		gw_server_destroy(st.srv);
		free(st.big);
		_exit(rc == 0 ? 0 : 4);
	}
	close(p[1]);
	close(lfd);
	char k;
	ck_assert_int_eq(read(p[0], &k, 1), 1);
	close(p[0]);
	srv.pid = pid;
}

static void teardown(void)
{
	if (srv.pid > 0) {
		kill(srv.pid, SIGKILL);
		waitpid(srv.pid, NULL, 0);
	}
	srv.pid = 0;
}

static void conn(struct client *c)
{
	ck_assert_int_eq(client_connect(c, "127.0.0.1", srv.port, T_MS), 0);
}

static void expect_reply(struct client *c, const char *canon)
{
	const char *rep;
	size_t len;
	int rc = client_recv(c, &rep, &len, T_MS);
	ck_assert_msg(rc == 0, "recv: %s", strerror(-rc));
	char got[1024];
	xml_canon(rep, len, got, sizeof(got), 0);
	ck_assert_str_eq(got, canon);
}

static void request(struct client *c, const char *body, const char *canon)
{
	ck_assert_int_eq(client_send(c, body, T_MS), 0);
	expect_reply(c, canon);
}

static unsigned long long stat_of(const char *name)
{
	struct client c;
	conn(&c);
	bool second = !strcmp(name, "unsent_peak") || !strcmp(name, "idle_closed") ||
		      !strcmp(name, "refused_peer");
	ck_assert_int_eq(client_send(&c, second ? "stats2" : "stats", T_MS), 0);
	const char *rep;
	size_t len;
	ck_assert_int_eq(client_recv(&c, &rep, &len, T_MS), 0);
	struct xdoc d;
	ck_assert_int_eq(xdoc_parse(&d, rep, len), 0);
	const char *v = xnode_attr(&d.nodes[1], name);
	ck_assert_ptr_nonnull(v);
	unsigned long long n = strtoull(v, NULL, 10);
	xdoc_free(&d);
	client_close(&c);
	return n;
}

static struct gw_server_cfg defaults(void)
{
	struct gw_server_cfg cfg = {0};
	return cfg;
}

START_TEST(sync_and_async_replies)
{
	start_server(defaults());
	struct client c;
	conn(&c);
	request(&c, "sync", "results(sync)");
	request(&c, "async", "results(async)");
	request(&c, "hello", "results(echo[len=5])");
	client_close(&c);
}
END_TEST

START_TEST(one_byte_writes)
{
	start_server(defaults());
	struct client c;
	conn(&c);
	const char *msg = "\r\n13\r\n<hello>world!";
	for (size_t i = 0; i < strlen(msg); i++) {
		ck_assert_int_eq(client_send_raw(&c, msg + i, 1, T_MS), 0);
		usleep(500);
	}
	expect_reply(&c, "results(echo[len=13])");
	client_close(&c);
}
END_TEST

START_TEST(pipelined_requests_answer_in_order)
{
	start_server(defaults());
	struct client c;
	conn(&c);
	const char *all = "5\nasync4\nsync5\nasync3\nabc";
	ck_assert_int_eq(client_send_raw(&c, all, strlen(all), T_MS), 0);
	expect_reply(&c, "results(async)");
	expect_reply(&c, "results(sync)");
	expect_reply(&c, "results(async)");
	expect_reply(&c, "results(echo[len=3])");
	client_close(&c);
}
END_TEST

START_TEST(bad_length_line_gets_error_and_close)
{
	start_server(defaults());
	struct client c;
	conn(&c);
	ck_assert_int_eq(client_send_raw(&c, "12x\n", 4, T_MS), 0);
	expect_reply(&c, "results(error\"Invalid request length line\")");
	ck_assert_int_eq(client_wait_closed(&c, T_MS), 0);
	client_close(&c);
	/* The server is unaffected. */
	conn(&c);
	request(&c, "sync", "results(sync)");
	client_close(&c);
	ck_assert_uint_eq(stat_of("frame_errors"), 1);
}
END_TEST

START_TEST(huge_length_refused_before_body)
{
	struct gw_server_cfg cfg = defaults();
	cfg.max_request = 1000;
	start_server(cfg);
	struct client c;
	conn(&c);
	/* Only the length line is sent: the refusal cannot wait for a body. */
	ck_assert_int_eq(client_send_raw(&c, "1001\n", 5, T_MS), 0);
	expect_reply(&c, "results(error\"Request too large\")");
	ck_assert_int_eq(client_wait_closed(&c, T_MS), 0);
	client_close(&c);
	conn(&c);
	ck_assert_int_eq(client_send_raw(&c, "99999999999999999999\n", 21, T_MS), 0);
	const char *rep;
	size_t len;
	ck_assert_int_eq(client_recv(&c, &rep, &len, T_MS), 0);
	ck_assert_ptr_nonnull(strstr(rep, "<error>"));
	ck_assert_int_eq(client_wait_closed(&c, T_MS), 0);
	client_close(&c);
	/* Exactly at the limit is fine. */
	conn(&c);
	char *body = malloc(1001);
	memset(body, 'a', 1000);
	body[1000] = 0;
	request(&c, body, "results(echo[len=1000])");
	free(body);
	client_close(&c);
}
END_TEST

START_TEST(stalled_request_hits_deadline)
{
	struct gw_server_cfg cfg = defaults();
	cfg.deadline_ms = 300;
	start_server(cfg);
	struct client slow, other;
	conn(&slow);
	conn(&other);
	ck_assert_int_eq(client_send_raw(&slow, "100\n<partial", 12, T_MS), 0);
	unsigned long long t0 = test_now_ns();
	/* Meanwhile another client is served normally. */
	request(&other, "sync", "results(sync)");
	expect_reply(&slow, "results(error\"Request not completed in time\")");
	ck_assert_int_eq(client_wait_closed(&slow, T_MS), 0);
	ck_assert_uint_ge(test_now_ns() - t0, 250000000ull);
	request(&other, "sync", "results(sync)");
	client_close(&slow);
	client_close(&other);
	ck_assert_uint_eq(stat_of("deadlines"), 1);
}
END_TEST

START_TEST(idle_connection_has_no_deadline)
{
	struct gw_server_cfg cfg = defaults();
	cfg.deadline_ms = 100;
	start_server(cfg);
	struct client c;
	conn(&c);
	request(&c, "sync", "results(sync)");
	usleep(400000);
	request(&c, "sync", "results(sync)");
	client_close(&c);
}
END_TEST

START_TEST(connections_beyond_max_are_refused)
{
	struct gw_server_cfg cfg = defaults();
	cfg.max_conns = 4;
	start_server(cfg);
	struct client c[4], extra;
	for (int i = 0; i < 4; i++) {
		conn(&c[i]);
		request(&c[i], "sync", "results(sync)");
	}
	conn(&extra);
	expect_reply(
		&extra,
		"results(error\"Too many connections to this gateway, try again later\")");
	ck_assert_int_eq(client_wait_closed(&extra, T_MS), 0);
	client_close(&extra);
	for (int i = 0; i < 4; i++)
		request(&c[i], "async", "results(async)");
	client_close(&c[0]);
	/* A slot is free again once one closes. */
	usleep(100000);
	conn(&extra);
	request(&extra, "sync", "results(sync)");
	client_close(&extra);
	for (int i = 1; i < 4; i++)
		client_close(&c[i]);
}
END_TEST

START_TEST(unread_replies_stop_reading)
{
	start_server(defaults());
	struct client c;
	conn(&c);
	/* 64 requests of 256 KiB replies each: 16 MiB the client does not
	 * read yet.  The server must stop taking requests near wbuf_high
	 * (plus what the sockets buffer), not buffer all of it. */
	char all[64 * 5];
	for (int i = 0; i < 64; i++)
		memcpy(all + i * 5, "3\nbig", 5);
	ck_assert_int_eq(client_send_raw(&c, all, sizeof(all), T_MS), 0);
	usleep(300000);
	unsigned long long taken = stat_of("requests");
	ck_assert_uint_lt(taken, 1 + 64);
	ck_assert_uint_ge(taken, 2);
	for (int i = 0; i < 64; i++) {
		const char *rep;
		size_t len;
		ck_assert_int_eq(client_recv(&c, &rep, &len, T_MS), 0);
		ck_assert_uint_eq(len, BIG_REPLY);
	}
	request(&c, "sync", "results(sync)");
	client_close(&c);
}
END_TEST

START_TEST(client_that_never_reads_is_closed)
{
	struct gw_server_cfg cfg = defaults();
	cfg.deadline_ms = 300;
	start_server(cfg);
	struct client c;
	conn(&c);
	int small = 4096;
	setsockopt(c.fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
	char all[32 * 5];
	for (int i = 0; i < 32; i++)
		memcpy(all + i * 5, "3\nbig", 5);
	ck_assert_int_eq(client_send_raw(&c, all, sizeof(all), T_MS), 0);
	usleep(1000000);
	ck_assert_uint_ge(stat_of("deadlines"), 1);
	ck_assert_int_eq(client_wait_closed(&c, T_MS), 0);
	client_close(&c);
}
END_TEST

START_TEST(half_close_still_gets_reply)
{
	start_server(defaults());
	struct client c;
	conn(&c);
	ck_assert_int_eq(client_send(&c, "async", T_MS), 0);
	shutdown(c.fd, SHUT_WR);
	expect_reply(&c, "results(async)");
	ck_assert_int_eq(client_wait_closed(&c, T_MS), 0);
	client_close(&c);
}
END_TEST

/* Sends "hold" on c and waits until the server has taken it (it is
 * answered 3 s later): only then is it executing. */
static void send_hold(struct client *c)
{
	ck_assert_int_eq(client_send(c, "hold", T_MS), 0);
	for (int t = 0; t < 500 && stat_of("held") == 0; t++)
		usleep(10000);
	ck_assert_uint_eq(stat_of("held"), 1);
}

START_TEST(close_during_request_aborts_it)
{
	start_server(defaults());
	struct client c, other;
	conn(&c);
	conn(&other);
	send_hold(&c);
	/* A reset (not a polite close) while the request executes. */
	struct linger lg = {.l_onoff = 1, .l_linger = 0};
	setsockopt(c.fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	client_close(&c);
	request(&other, "sync", "results(sync)");
	for (int t = 0; t < 200 && stat_of("aborted") == 0; t++)
		usleep(10000);
	ck_assert_uint_eq(stat_of("aborted"), 1);
	ck_assert_uint_eq(stat_of("open"), 2); /* other + the stats client */
	client_close(&other);
}
END_TEST

/* A request the client sent while its previous one executed (so the
 * server had not read it yet) gets "not executed" when the stop comes,
 * after the executing one's reply; it used to be left unread and the
 * connection closed under it. */
START_TEST(stop_answers_requests_not_yet_read)
{
	start_server(defaults());
	struct client c, other;
	conn(&c);
	conn(&other);
	send_hold(&c);
	/* Busy with "hold": this one waits in the socket. */
	ck_assert_int_eq(client_send(&c, "sync", T_MS), 0);
	usleep(50000);
	request(&other, "stop", "results(stopping)");
	const char *rep;
	size_t len;
	ck_assert_int_eq(client_recv(&c, &rep, &len, 10000), 0);
	ck_assert_msg(strstr(rep, "<async/>"), "%.*s", (int)len, rep);
	ck_assert_int_eq(client_recv(&c, &rep, &len, T_MS), 0);
	ck_assert_msg(strstr(rep, "Not executed"), "%.*s", (int)len, rep);
	ck_assert_int_eq(client_wait_closed(&c, T_MS), 0);
	client_close(&c);
	client_close(&other);
}
END_TEST

START_TEST(stop_drains_executing_requests)
{
	start_server(defaults());
	struct client a, b, idle;
	conn(&a);
	conn(&b);
	conn(&idle);
	request(&idle, "sync", "results(sync)");
	ck_assert_int_eq(client_send(&a, "async", T_MS), 0);
	usleep(10000);
	request(&b, "stop", "results(stopping)");
	/* The executing request still completes, then everyone is closed. */
	expect_reply(&a, "results(async)");
	ck_assert_int_eq(client_wait_closed(&a, T_MS), 0);
	ck_assert_int_eq(client_wait_closed(&b, T_MS), 0);
	ck_assert_int_eq(client_wait_closed(&idle, T_MS), 0);
	int st = test_wait_pid(srv.pid, T_MS);
	srv.pid = 0;
	ck_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	/* Nobody listens any more. */
	struct client late;
	ck_assert_int_ne(client_connect(&late, "127.0.0.1", srv.port, 500), 0);
	client_close(&a);
	client_close(&b);
	client_close(&idle);
}
END_TEST

/* Two clients whose replies are streamed and who do not read: the loop
 * holds about wbuf_high per connection and max_unsent in total (plus one
 * part), not their 16 MiB each; once they read, every byte arrives. */
START_TEST(streamed_replies_are_bounded_until_read)
{
	struct gw_server_cfg cfg = defaults();
	cfg.max_unsent = 1u << 20;
	start_server(cfg);
	struct client a, b;
	conn(&a);
	conn(&b);
	ck_assert_int_eq(client_send(&a, "stream", T_MS), 0);
	ck_assert_int_eq(client_send(&b, "stream", T_MS), 0);
	usleep(300000);
	unsigned long long peak = stat_of("unsent_peak");
	ck_assert_uint_le(peak, (1u << 20) + 2 * BIG_REPLY + 64);
	ck_assert_uint_ge(peak, BIG_REPLY);
	struct client *cs[2] = {&a, &b};
	for (int k = 0; k < 2; k++) {
		const char *rep;
		size_t len;
		ck_assert_int_eq(client_recv(cs[k], &rep, &len, T_MS), 0);
		ck_assert_uint_eq(len, 9 + (size_t)STREAM_PARTS * BIG_REPLY + 10);
		request(cs[k], "sync", "results(sync)");
	}
	client_close(&a);
	client_close(&b);
}
END_TEST

/* An idle connection is closed after idle_ms; one that keeps sending
 * requests is not. */
START_TEST(idle_connection_is_closed)
{
	struct gw_server_cfg cfg = defaults();
	cfg.idle_ms = 300;
	start_server(cfg);
	struct client idle, busy;
	conn(&idle);
	conn(&busy);
	request(&idle, "sync", "results(sync)");
	for (int i = 0; i < 8; i++) {
		request(&busy, "sync", "results(sync)");
		usleep(100000);
	}
	ck_assert_int_eq(client_wait_closed(&idle, T_MS), 0);
	request(&busy, "sync", "results(sync)");
	client_close(&idle);
	client_close(&busy);
	ck_assert_uint_eq(stat_of("idle_closed"), 1);
}
END_TEST

/* One address may hold max_per_peer connections; the next is told why it
 * is turned away, and a slot is free again once one closes. */
START_TEST(connections_per_address_are_capped)
{
	struct gw_server_cfg cfg = defaults();
	cfg.max_per_peer = 2;
	start_server(cfg);
	struct client c[2], extra;
	for (int i = 0; i < 2; i++) {
		conn(&c[i]);
		request(&c[i], "sync", "results(sync)");
	}
	conn(&extra);
	expect_reply(&extra, "results(error\"Too many connections from your address; "
			     "close one and try again\")");
	ck_assert_int_eq(client_wait_closed(&extra, T_MS), 0);
	client_close(&extra);
	client_close(&c[0]);
	usleep(100000);
	conn(&extra);
	request(&extra, "sync", "results(sync)");
	client_close(&c[1]);
	client_close(&extra);
	usleep(100000);
	ck_assert_uint_eq(stat_of("refused_peer"), 1);
}
END_TEST

/* A client that half-closes in the middle of a body (its length line
 * overstated the body) is told so before the close. */
START_TEST(short_body_gets_error_before_close)
{
	start_server(defaults());
	struct client c;
	conn(&c);
	ck_assert_int_eq(client_send_raw(&c, "100\n<partial/>", 14, T_MS), 0);
	shutdown(c.fd, SHUT_WR);
	expect_reply(&c, "results(error\"Request ended before the length its length "
			 "line announced: 100 bytes announced, 10 arrived\")");
	ck_assert_int_eq(client_wait_closed(&c, T_MS), 0);
	client_close(&c);
}
END_TEST

static Suite *gw_server_suite(void)
{
	Suite *s = suite_create("gw_server");
	TCase *tc = tcase_create("loop");
	tcase_add_checked_fixture(tc, NULL, teardown);
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, sync_and_async_replies);
	tcase_add_test(tc, one_byte_writes);
	tcase_add_test(tc, pipelined_requests_answer_in_order);
	tcase_add_test(tc, bad_length_line_gets_error_and_close);
	tcase_add_test(tc, huge_length_refused_before_body);
	tcase_add_test(tc, stalled_request_hits_deadline);
	tcase_add_test(tc, idle_connection_has_no_deadline);
	tcase_add_test(tc, connections_beyond_max_are_refused);
	tcase_add_test(tc, unread_replies_stop_reading);
	tcase_add_test(tc, client_that_never_reads_is_closed);
	tcase_add_test(tc, half_close_still_gets_reply);
	tcase_add_test(tc, close_during_request_aborts_it);
	tcase_add_test(tc, stop_answers_requests_not_yet_read);
	tcase_add_test(tc, stop_drains_executing_requests);
	tcase_add_test(tc, streamed_replies_are_bounded_until_read);
	tcase_add_test(tc, idle_connection_is_closed);
	tcase_add_test(tc, connections_per_address_are_capped);
	tcase_add_test(tc, short_body_gets_error_before_close);
	suite_add_tcase(s, tc);
	return s;
}

SHMEX_TEST_MAIN(gw_server_suite)
