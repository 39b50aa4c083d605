/*
 * bench_e2e: TCP clients through gateways and matchers, end to end.
 *
 * Starts real exchanges with the `shmex` supervisor next to shmex-bench
 * (unique instance, port chosen by the kernel) and drives them with a C
 * load generator: one thread, N persistent non-blocking connections in a
 * poll loop, closed loop (each connection sends its next request as soon
 * as the previous reply is complete).  Each request is one framed
 * <transactions> of the connection's own account: an order on one of 16
 * symbols around a common price (buys and sells, so a part of them trade),
 * and, some of the time, a cancel of the connection's oldest known order
 * and a query of its newest.  The latency of a request is from the first
 * byte sent to the last byte of its reply.
 *
 * Phases, per configuration:
 *   1. persistent connections, closed loop, for --seconds (default 4);
 *   2. one connection per request (connect, send, receive, close), with
 *      fewer clients in flight, for half as long.
 * Configurations: the baseline "1 gateway x 1 shard" and the defaults
 * ("2 gateways x 2 shards"), in the same run; scale_ratio = defaults'
 * requests/s over the baseline's.  On a 2-CPU machine the load generator
 * competes with the exchange for the CPUs, so the ratio says how well the
 * design uses the machine, not how it scales on a large one.
 *
 * Last line: RESULT e2e req_per_s=<defaults, persistent> p50_us p99_us
 * p999_us (defaults, persistent) scale_ratio=<x> base_req_per_s=<n>
 * conn_req_per_s=<defaults, one connection per request>.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tests/bench/bench.h"
#include "tests/client.h"

int bench_e2e(int argc, char **argv);

#define NSYM 16
#define MAX_SAMPLES (4u << 20)
#define IDS_KEPT 64

struct econn {
	struct client c;
	int account;
	bool waiting;           /* a request is in flight */
	uint64_t sent_ns;
	uint64_t ids[IDS_KEPT]; /* known order ids, oldest first */
	int nids;
};

struct load {
	int port;
	int nconn;
	uint64_t seconds_ns;
	unsigned seed;
	uint64_t *lat;          /* samples (ns) */
	size_t nlat;
	uint64_t requests;
	uint64_t errors;        /* failed connections or requests */
};

static unsigned rnd(unsigned *s)
{
	*s = *s * 1103515245u + 12345u;
	return *s >> 8;
}

static void sample(struct load *l, uint64_t ns)
{
	if (l->nlat < MAX_SAMPLES)
		l->lat[l->nlat++] = ns;
	l->requests++;
}

/* One request of account `acct`; uses and updates the connection's ids. */
static void make_request(struct econn *e, unsigned *seed, char *xml, size_t cap)
{
	unsigned r = rnd(seed);
	int sym = (int)(r % NSYM);
	int sell = (r >> 4) & 1;
	int amt = 1 + (int)((r >> 5) % 100);
	int lim = 95 + (int)((r >> 12) % 11);
	int n = snprintf(xml, cap, "<transactions id=\"%d\"><order sym=\"S%d\" "
			 "amount=\"%s%d\" limit=\"%d\"/>", e->account, sym,
			 sell ? "-" : "", amt, lim);
	unsigned q = rnd(seed) % 10;
	if (e->nids > 0 && q < 3) {
		n += snprintf(xml + n, cap - (size_t)n, "<cancel id=\"%llu\"/>",
			      (unsigned long long)e->ids[0]);
		memmove(e->ids, e->ids + 1, (size_t)(e->nids - 1) * sizeof(e->ids[0]));
		e->nids--;
	}
	if (e->nids > 0 && q >= 7)
		n += snprintf(xml + n, cap - (size_t)n, "<query id=\"%llu\"/>",
			      (unsigned long long)e->ids[e->nids - 1]);
	snprintf(xml + n, cap - (size_t)n, "</transactions>");
}

/* Remembers the id of an <opened> in the reply. */
static void note_ids(struct econn *e, const char *rep)
{
	const char *p = strstr(rep, "<opened ");
	if (!p)
		return;
	const char *id = strstr(p, " id=\"");
	if (!id)
		return;
	uint64_t v = strtoull(id + 5, NULL, 10);
	if (e->nids == IDS_KEPT) {
		memmove(e->ids, e->ids + 1, (IDS_KEPT - 1) * sizeof(e->ids[0]));
		e->nids--;
	}
	e->ids[e->nids++] = v;
}

/* Reads what is there and returns 1 when a whole reply arrived. */
static int try_reply(struct econn *e, const char **rep)
{
	size_t len;
	int rc = client_recv(&e->c, rep, &len, 0);
	if (rc == 0)
		return 1;
	return rc == -ETIMEDOUT ? 0 : rc;
}

static int run_persistent(struct load *l)
{
	struct econn *ec = calloc((size_t)l->nconn, sizeof(*ec));
	struct pollfd *pf = calloc((size_t)l->nconn, sizeof(*pf));
	if (!ec || !pf)
		return -1;
	for (int i = 0; i < l->nconn; i++) {
		ec[i].account = 1 + i;
		if (client_connect(&ec[i].c, "127.0.0.1", l->port, 5000) != 0) {
			fprintf(stderr, "bench e2e: connect failed\n");
			return -1;
		}
	}
	char xml[1024];
	uint64_t end = bench_now_ns() + l->seconds_ns;
	for (int i = 0; i < l->nconn; i++) {
		make_request(&ec[i], &l->seed, xml, sizeof(xml));
		ec[i].sent_ns = bench_now_ns();
		if (client_send(&ec[i].c, xml, 5000) != 0)
			return -1;
		ec[i].waiting = true;
	}
	int inflight = l->nconn;
	while (inflight > 0) {
		for (int i = 0; i < l->nconn; i++) {
			pf[i].fd = ec[i].c.fd;
			pf[i].events = ec[i].waiting ? POLLIN : 0;
			pf[i].revents = 0;
		}
		if (poll(pf, (nfds_t)l->nconn, 5000) <= 0) {
			fprintf(stderr, "bench e2e: no reply for 5 s\n");
			return -1;
		}
		uint64_t now = bench_now_ns();
		for (int i = 0; i < l->nconn; i++) {
			if (!(pf[i].revents & (POLLIN | POLLERR | POLLHUP)))
				continue;
			const char *rep;
			int rc = try_reply(&ec[i], &rep);
			if (rc == 0)
				continue;
			if (rc < 0) {
				fprintf(stderr, "bench e2e: connection lost\n");
				return -1;
			}
			sample(l, now - ec[i].sent_ns);
			const char *er = strstr(rep, "<error");
			if (er) {
				if (l->errors++ < 3 && getenv("SHMEX_BENCH_VERBOSE"))
					fprintf(stderr, "bench e2e:   error reply: %.200s\n", er);
			}
			note_ids(&ec[i], rep);
			ec[i].waiting = false;
			inflight--;
			if (now < end) {
				make_request(&ec[i], &l->seed, xml, sizeof(xml));
				ec[i].sent_ns = bench_now_ns();
				if (client_send(&ec[i].c, xml, 5000) != 0)
					return -1;
				ec[i].waiting = true;
				inflight++;
			}
		}
	}
	for (int i = 0; i < l->nconn; i++)
		client_close(&ec[i].c);
	free(ec);
	free(pf);
	return 0;
}

/* One connection per request: `clients` of them in flight at a time
 * (connect is blocking but short on loopback). */
static int run_per_request(struct load *l, int clients)
{
	struct econn *ec = calloc((size_t)clients, sizeof(*ec));
	struct pollfd *pf = calloc((size_t)clients, sizeof(*pf));
	if (!ec || !pf)
		return -1;
	char xml[1024];
	uint64_t end = bench_now_ns() + l->seconds_ns;
	for (int i = 0; i < clients; i++)
		ec[i].account = 1 + i;
	int inflight = 0;
	for (;;) {
		uint64_t now = bench_now_ns();
		for (int i = 0; i < clients && now < end; i++) {
			if (ec[i].waiting)
				continue;
			ec[i].sent_ns = bench_now_ns();
			if (client_connect(&ec[i].c, "127.0.0.1", l->port, 5000) != 0) {
				l->errors++;
				continue;
			}
			make_request(&ec[i], &l->seed, xml, sizeof(xml));
			if (client_send(&ec[i].c, xml, 5000) != 0) {
				client_close(&ec[i].c);
				l->errors++;
				continue;
			}
			ec[i].waiting = true;
			inflight++;
		}
		if (inflight == 0)
			break;
		for (int i = 0; i < clients; i++) {
			pf[i].fd = ec[i].waiting ? ec[i].c.fd : -1;
			pf[i].events = POLLIN;
			pf[i].revents = 0;
		}
		if (poll(pf, (nfds_t)clients, 5000) <= 0)
			return -1;
		now = bench_now_ns();
		for (int i = 0; i < clients; i++) {
			if (!ec[i].waiting || !(pf[i].revents & (POLLIN | POLLERR | POLLHUP)))
				continue;
			const char *rep;
			int rc = try_reply(&ec[i], &rep);
			if (rc == 0)
				continue;
			if (rc > 0) {
				sample(l, now - ec[i].sent_ns);
				note_ids(&ec[i], rep);
			} else {
				l->errors++;
			}
			client_close(&ec[i].c);
			ec[i].waiting = false;
			inflight--;
		}
	}
	free(ec);
	free(pf);
	return 0;
}

static int setup_accounts(int port, int naccounts)
{
	struct client c;
	if (client_connect(&c, "127.0.0.1", port, 5000) != 0)
		return -1;
	size_t cap = (size_t)naccounts * 64 * (NSYM + 1) + 4096;
	char *xml = malloc(cap);
	if (!xml)
		return -1;
	int n = snprintf(xml, cap, "<create>");
	for (int a = 1; a <= naccounts; a++)
		n += snprintf(xml + n, cap - (size_t)n,
			      "<account id=\"%d\" balance=\"1000000000\"/>", a);
	for (int s = 0; s < NSYM; s++) {
		n += snprintf(xml + n, cap - (size_t)n, "<symbol sym=\"S%d\">", s);
		for (int a = 1; a <= naccounts; a++)
			n += snprintf(xml + n, cap - (size_t)n,
				      "<account id=\"%d\">10000000</account>", a);
		n += snprintf(xml + n, cap - (size_t)n, "</symbol>");
	}
	snprintf(xml + n, cap - (size_t)n, "</create>");
	const char *rep;
	size_t len;
	int rc = client_request(&c, xml, &rep, &len, 60000);
	if (rc == 0 && strstr(rep, "<error"))
		rc = -1;
	free(xml);
	client_close(&c);
	return rc;
}

struct figures {
	double req_per_s;
	uint64_t p50, p99, p999;   /* ns */
	double conn_req_per_s;
	uint64_t conn_p50;
	double err_share;
};

static int run_config(const char *bin, const char *tag, const char *shards,
		      const char *gateways, int nconn, double seconds,
		      struct figures *f)
{
	char inst[64];
	snprintf(inst, sizeof(inst), "bench-%d-%s", (int)getpid(), tag);
	const char *extra[] = {"--shards", shards, "--gateways", gateways,
			       "--orders", "262144", "--fills", "1048576",
			       "--levels", "65536", "--symbols", "64",
			       "--accounts", "4096", "--positions", "65536",
			       "--max-conns", "4096", "--quiet",
			       getenv("SHMEX_BENCH_SPIN_US") ? "--spin-us" : NULL,
			       getenv("SHMEX_BENCH_SPIN_US"), NULL};
	struct exchange ex;
	if (exchange_start(&ex, bin, inst, extra, 30000) != 0)
		return -1;
	fprintf(stderr, "bench e2e: %s gateway(s) x %s shard(s) on port %d\n",
		gateways, shards, ex.port);
	int rc = setup_accounts(ex.port, nconn);
	struct load l = {.port = ex.port, .nconn = nconn, .seed = 42};
	l.lat = malloc(MAX_SAMPLES * sizeof(uint64_t));
	if (rc || !l.lat) {
		fprintf(stderr, "bench e2e: setup failed\n");
		exchange_stop(&ex, 20000);
		free(l.lat);
		return -1;
	}
	l.seconds_ns = (uint64_t)(seconds * 1e9);
	uint64_t t0 = bench_now_ns();
	rc = run_persistent(&l);
	uint64_t t1 = bench_now_ns();
	if (rc == 0) {
		f->req_per_s = (double)l.requests * 1e9 / (double)(t1 - t0);
		f->err_share = l.requests ? (double)l.errors / (double)l.requests : 0;
		f->p50 = bench_percentile(l.lat, l.nlat, 50);
		f->p99 = bench_percentile(l.lat, l.nlat, 99);
		f->p999 = bench_percentile(l.lat, l.nlat, 99.9);
		fprintf(stderr, "bench e2e:   %d persistent connections: %.0f req/s, "
			"p50 %.1f us, p99 %.1f us, p99.9 %.1f us (%.1f%% of replies "
			"carry an error)\n", nconn, f->req_per_s, f->p50 / 1e3,
			f->p99 / 1e3, f->p999 / 1e3, 100 * f->err_share);
		struct load pr = {.port = ex.port, .nconn = 8, .seed = 7, .lat = l.lat};
		pr.seconds_ns = l.seconds_ns / 2;
		t0 = bench_now_ns();
		rc = run_per_request(&pr, 8);
		t1 = bench_now_ns();
		if (rc == 0) {
			f->conn_req_per_s = (double)pr.requests * 1e9 / (double)(t1 - t0);
			f->conn_p50 = bench_percentile(pr.lat, pr.nlat, 50);
			fprintf(stderr, "bench e2e:   one connection per request (8 "
				"clients): %.0f req/s, p50 %.1f us, %llu errors\n",
				f->conn_req_per_s, f->conn_p50 / 1e3,
				(unsigned long long)pr.errors);
		}
	}
	int st = exchange_stop(&ex, 30000);
	free(l.lat);
	if (st != 0)
		fprintf(stderr, "bench e2e: shmex exit status 0x%x\n", st);
	return rc;
}

int bench_e2e(int argc, char **argv)
{
	double seconds = 4;
	int nconn = 32;
	static const struct option o[] = {
		{"seconds", required_argument, NULL, 's'},
		{"conns", required_argument, NULL, 'c'},
		{NULL, 0, NULL, 0},
	};
	int c;
	optind = 1;
	while ((c = getopt_long(argc, argv, "", o, NULL)) != -1) {
		if (c == 's')
			seconds = atof(optarg);
		else if (c == 'c')
			nconn = atoi(optarg);
		else
			return 2;
	}
	if (seconds <= 0 || seconds > 600 || nconn < 1 || nconn > 4000) {
		fprintf(stderr, "bench e2e: --seconds in (0, 600], --conns in [1, 4000]\n");
		return 2;
	}
	char bin[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", bin, sizeof(bin) - 16);
	if (n <= 0)
		return 1;
	bin[n] = 0;
	char *slash = strrchr(bin, '/');
	strcpy(slash ? slash + 1 : bin, "shmex");
	struct figures base = {0}, def = {0};
	if (run_config(bin, "a", "1", "1", nconn, seconds, &base) != 0 ||
	    run_config(bin, "b", "2", "2", nconn, seconds, &def) != 0) {
		printf("RESULT e2e req_per_s=nan p50_us=nan p99_us=nan p999_us=nan "
		       "scale_ratio=nan\n");
		return 1;
	}
	printf("RESULT e2e req_per_s=%.0f p50_us=%.1f p99_us=%.1f p999_us=%.1f "
	       "scale_ratio=%.2f base_req_per_s=%.0f conn_req_per_s=%.0f\n",
	       def.req_per_s, def.p50 / 1e3, def.p99 / 1e3, def.p999 / 1e3,
	       base.req_per_s > 0 ? def.req_per_s / base.req_per_s : 0,
	       base.req_per_s, def.conn_req_per_s);
	return 0;
}
