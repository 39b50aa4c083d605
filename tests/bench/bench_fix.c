/*
 * bench fix: FIX 4.4 order entry through shmex-fix, against the XML gateway
 * on the same orders in the same run (the baseline).
 *
 * One exchange (1 shard, 1 XML gateway, the FIX gateway, a journal without
 * fsync in a scratch directory), two accounts.  The orders alternate a buy
 * of 1 at 100 (account 1) and a sell of 1 at 100 (account 2), so every
 * second order trades with the one before and the book stays small; the
 * FIX side therefore also carries the Trade reports of both sides.
 *
 *   throughput  one FIX session pipelines N NewOrderSingle as fast as the
 *               socket takes them; orders/s until the last New report
 *   latency     the same session paced at --rate orders/s (default
 *               10000) for --seconds: ack latency = send -> its New report
 *   baseline    one XML connection, the same N orders, one request each,
 *               up to 64 requests in flight; orders/s until the last reply
 *
 * The FIX client here is a few lines of raw FIX (no engine), so the load
 * generator costs little; the exchange side is the real shmex-fix with
 * QuickFIX's session layer and FileStore.
 *
 * Last line: RESULT fix orders_per_s=<n> ack_p50_us=<n> ack_p99_us=<n>
 * xml_orders_per_s=<n>
 */
#include <errno.h>
#include <stdbool.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "tests/bench/bench.h"
#include "tests/client.h"

int bench_fix(int argc, char **argv);

struct fixc {
	int fd;
	int seq;
	char *in;
	size_t len, cap;
	uint64_t news, trades, rejects;
	bool logged_on;
	uint64_t *sent_ns; /* per order index, for latency */
	uint64_t *lat;
	size_t nlat;
};

static void sending_time(char *buf, size_t len)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	struct tm tm;
	gmtime_r(&ts.tv_sec, &tm);
	snprintf(buf, len, "%04d%02d%02d-%02d:%02d:%02d.%03ld", tm.tm_year + 1900,
		 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
		 ts.tv_nsec / 1000000);
}

/* Appends one framed message (BodyLength, CheckSum) to out. */
static int fix_msg(char *out, size_t cap, struct fixc *c, const char *type,
		   const char *fields)
{
	char st[64], body[512];
	sending_time(st, sizeof(st));
	int bl = snprintf(body, sizeof(body),
			  "35=%s\00149=BENCH\00156=SHMEX\00134=%d\00152=%s\001%s", type,
			  ++c->seq, st, fields);
	int n = snprintf(out, cap, "8=FIX.4.4\0019=%d\001%s", bl, body);
	unsigned sum = 0;
	for (int i = 0; i < n; i++)
		sum += (unsigned char)out[i];
	n += snprintf(out + n, cap - (size_t)n, "10=%03u\001", sum % 256);
	return n;
}

static int send_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t k = send(fd, p, n, MSG_NOSIGNAL);
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0 && errno == EAGAIN) {
			struct pollfd pf = {.fd = fd, .events = POLLOUT};
			poll(&pf, 1, 1000);
			continue;
		}
		if (k <= 0)
			return -1;
		p += k;
		n -= (size_t)k;
	}
	return 0;
}

static const char *tag(const char *m, size_t len, const char *key)
{
	size_t kl = strlen(key);
	for (size_t i = 0; i + kl < len; i++)
		if (m[i] == '\001' && memcmp(m + i + 1, key, kl) == 0)
			return m + i + 1 + kl;
	return NULL;
}

/* Reads what is there (waiting up to ms) and counts the reports: 1 when
 * bytes came, 0 when nothing did, -1 when the connection broke. */
static int fix_read(struct fixc *c, int ms)
{
	struct pollfd pf = {.fd = c->fd, .events = POLLIN};
	if (poll(&pf, 1, ms) <= 0)
		return 0;
	if (c->cap - c->len < 65536) {
		c->cap = c->cap * 2 + 65536;
		c->in = realloc(c->in, c->cap);
	}
	ssize_t k = recv(c->fd, c->in + c->len, c->cap - c->len, MSG_DONTWAIT);
	if (k == 0)
		return -1;
	if (k < 0)
		return errno == EAGAIN || errno == EINTR ? 0 : -1;
	c->len += (size_t)k;
	uint64_t now = bench_now_ns();
	size_t off = 0;
	for (;;) {
		/* 8=FIX.4.4 SOH 9=N SOH ... 10=XXX SOH */
		if (c->len - off < 20)
			break;
		const char *m = c->in + off;
		if (memcmp(m, "8=FIX.4.4\0019=", 12) != 0)
			return -1;
		int bl = atoi(m + 12);
		const char *b = memchr(m + 12, '\001', c->len - off - 12);
		if (!b)
			break;
		size_t total = (size_t)(b + 1 - m) + (size_t)bl + 7;
		if (c->len - off < total)
			break;
		const char *t = tag(m, total, "35=");
		if (getenv("SHMEX_BENCH_VERBOSE") && t &&
		    !(t[0] == '8' && t[1] == '\001'))
			fprintf(stderr, "bench fix:   got %.*s\n", (int)total, m);
		if (t && t[0] == 'A' && t[1] == '\001')
			c->logged_on = true;
		if (t && t[0] == '8' && t[1] == '\001') {
			const char *e = tag(m, total, "150=");
			if (e && *e == '0') {
				c->news++;
				const char *id = tag(m, total, "11=");
				if (id && id[0] == 'p' && c->sent_ns) {
					long i = atol(id + 1);
					c->lat[c->nlat++] = now - c->sent_ns[i];
				}
			} else if (e && *e == 'F') {
				c->trades++;
			} else if (e && *e == '8') {
				c->rejects++;
			}
		}
		off += total;
	}
	memmove(c->in, c->in + off, c->len - off);
	c->len -= off;
	return 1;
}

static int order_fields(char *buf, size_t cap, char pfx, long i)
{
	char st[64];
	sending_time(st, sizeof(st));
	bool buy = (i & 1) == 0;
	return snprintf(
		buf, cap,
		"11=%c%ld\0011=%d\00155=SYM\00154=%c\00138=1\00140=2\00144=100\00159=1\001"
		"60=%s\001",
		pfx, i, buy ? 1 : 2, buy ? '1' : '2', st);
}

static int fix_logon(struct fixc *c, int port)
{
	struct client cl;
	if (client_connect(&cl, "127.0.0.1", port, 5000) != 0)
		return -1;
	c->fd = cl.fd;
	int one = 1;
	setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	free(cl.buf);
	free(cl.rep);
	char m[512];
	int n = fix_msg(m, sizeof(m), c, "A", "98=0\001108=30\001141=Y\001");
	if (send_all(c->fd, m, (size_t)n) != 0)
		return -1;
	/* The Logon answer. */
	uint64_t until = bench_now_ns() + 5000000000ull;
	while (!c->logged_on && bench_now_ns() < until)
		if (fix_read(c, 100) < 0)
			return -1;
	return c->logged_on ? 0 : -1;
}

static int xml_baseline(int port, long n, double *per_s)
{
	struct client c;
	if (client_connect(&c, "127.0.0.1", port, 5000) != 0)
		return -1;
	char doc[256];
	long sent = 0, got = 0;
	uint64_t t0 = bench_now_ns();
	while (got < n) {
		while (sent < n && sent - got < 64) {
			bool buy = (sent & 1) == 0;
			snprintf(
				doc, sizeof(doc),
				"<transactions id=\"%d\"><order sym=\"SYM\" amount=\"%s\" "
				"limit=\"100\"/></transactions>",
				buy ? 1 : 2, buy ? "1" : "-1");
			if (client_send(&c, doc, 10000) != 0)
				return -1;
			sent++;
		}
		const char *rep;
		size_t len;
		if (client_recv(&c, &rep, &len, 10000) != 0)
			return -1;
		got++;
	}
	*per_s = (double)n * 1e9 / (double)(bench_now_ns() - t0);
	client_close(&c);
	return 0;
}

int bench_fix(int argc, char **argv)
{
	long n = 50000;
	double rate = 10000, seconds = 2;
	for (int i = 1; i + 1 < argc; i += 2) {
		if (!strcmp(argv[i], "--orders"))
			n = atol(argv[i + 1]);
		else if (!strcmp(argv[i], "--rate"))
			rate = atof(argv[i + 1]);
		else if (!strcmp(argv[i], "--seconds"))
			seconds = atof(argv[i + 1]);
	}
	if (n < 2 || n > 10000000 || rate < 1 || rate > 1e6 || seconds <= 0 ||
	    seconds > 60) {
		fprintf(stderr, "bench fix: --orders in [2, 1e7], --rate in [1, 1e6], "
				"--seconds in (0, 60]\n");
		return 2;
	}
	char bin[4096];
	ssize_t bl = readlink("/proc/self/exe", bin, sizeof(bin) - 16);
	if (bl <= 0)
		return 1;
	bin[bl] = 0;
	char *slash = strrchr(bin, '/');
	strcpy(slash ? slash + 1 : bin, "shmex");
	char dir[] = "/tmp/shmex-bench-fix.XXXXXX";
	if (!mkdtemp(dir))
		return 1;
	char inst[64];
	snprintf(inst, sizeof(inst), "benchfix-%d", (int)getpid());
	const char *extra[] = {"--fix-port", "0",       "--shards",   "1",
			       "--gateways", "1",       "--data-dir", dir,
			       "--sync",     "none",    "--orders",   "1048576",
			       "--fills",    "2097152", "--quiet",    NULL};
	struct exchange ex;
	int rc = 1;
	double fix_per_s = 0, xml_per_s = 0;
	uint64_t p50 = 0, p99 = 0;
	long paced = (long)(rate * seconds);
	struct fixc c = {.fd = -1};
	char *out = NULL;
	if (exchange_start(&ex, bin, inst, extra, 30000) != 0)
		goto out_rm;
	{
		struct client x;
		const char *rep;
		size_t len;
		if (client_connect(&x, "127.0.0.1", ex.port, 5000) != 0 ||
		    client_request(
			    &x,
			    "<create><account id=\"1\" balance=\"10000000000\"/>"
			    "<account id=\"2\" balance=\"0\"/><symbol sym=\"SYM\">"
			    "<account id=\"2\">10000000</account></symbol></create>",
			    &rep, &len, 10000) != 0 ||
		    strstr(rep, "<error")) {
			fprintf(stderr, "bench fix: setup failed\n");
			goto out_stop;
		}
		client_close(&x);
	}
	fprintf(stderr, "bench fix: XML port %d, FIX port %d, %ld orders\n", ex.port,
		ex.fix_port, n);
	if (fix_logon(&c, ex.fix_port) != 0) {
		fprintf(stderr, "bench fix: FIX logon failed\n");
		goto out_stop;
	}
	c.news = c.trades = c.rejects = 0;
	/* Throughput: pipelined. */
	size_t ocap = 1 << 20;
	out = malloc(ocap);
	uint64_t t0 = bench_now_ns();
	long i = 0;
	while (c.news + c.rejects < (uint64_t)n) {
		size_t olen = 0;
		while (i < n && olen + 512 < ocap &&
		       i - (long)(c.news + c.rejects) < 20000) {
			char f[256];
			order_fields(f, sizeof(f), 't', i++);
			olen += (size_t)fix_msg(out + olen, ocap - olen, &c, "D", f);
		}
		if (olen && send_all(c.fd, out, olen) != 0)
			goto out_stop;
		int r = fix_read(&c, olen ? 0 : 5000);
		if (r < 0)
			goto out_stop;
		if (!olen && r == 0) {
			fprintf(stderr, "bench fix: no report for 5 s (%llu of %ld)\n",
				(unsigned long long)(c.news + c.rejects), n);
			goto out_stop;
		}
	}
	fix_per_s = (double)n * 1e9 / (double)(bench_now_ns() - t0);
	fprintf(stderr,
		"bench fix:   pipelined: %.0f orders/s (%llu New, %llu Trade, %llu "
		"rejected)\n",
		fix_per_s, (unsigned long long)c.news, (unsigned long long)c.trades,
		(unsigned long long)c.rejects);
	/* Let the trade reports drain (every order trades once). */
	while (c.trades < (uint64_t)n && fix_read(&c, 1000) > 0)
		;
	/* Latency: paced. */
	c.sent_ns = calloc((size_t)paced, sizeof(uint64_t));
	c.lat = calloc((size_t)paced, sizeof(uint64_t));
	c.news = c.rejects = 0;
	uint64_t start = bench_now_ns(), gap = (uint64_t)(1e9 / rate);
	for (long k = 0; k < paced;) {
		uint64_t now = bench_now_ns();
		while (k < paced && now >= start + (uint64_t)k * gap) {
			char f[256], m[512];
			order_fields(f, sizeof(f), 'p', k);
			int ml = fix_msg(m, sizeof(m), &c, "D", f);
			c.sent_ns[k] = bench_now_ns();
			if (send_all(c.fd, m, (size_t)ml) != 0)
				goto out_stop;
			k++;
		}
		if (fix_read(&c, 0) < 0)
			goto out_stop;
	}
	while (c.news + c.rejects < (uint64_t)paced && fix_read(&c, 5000) > 0)
		;
	if (c.nlat) {
		p50 = bench_percentile(c.lat, c.nlat, 50);
		p99 = bench_percentile(c.lat, c.nlat, 99);
	}
	fprintf(stderr, "bench fix:   paced %.0f/s: %zu acks, p50 %.1f us, p99 %.1f us\n",
		rate, c.nlat, p50 / 1e3, p99 / 1e3);
	/* Baseline: the XML gateway, the same orders. */
	if (xml_baseline(ex.port, n, &xml_per_s) != 0) {
		fprintf(stderr, "bench fix: XML baseline failed\n");
		goto out_stop;
	}
	fprintf(stderr, "bench fix:   XML baseline: %.0f orders/s (ratio FIX/XML %.2f)\n",
		xml_per_s, xml_per_s > 0 ? fix_per_s / xml_per_s : 0);
	rc = 0;
out_stop:
	if (c.fd >= 0)
		close(c.fd);
	exchange_stop(&ex, 30000);
out_rm:;
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	(void)!system(cmd);
	free(out);
	free(c.in);
	free(c.sent_ns);
	free(c.lat);
	printf("RESULT fix orders_per_s=%.0f ack_p50_us=%.1f ack_p99_us=%.1f "
	       "xml_orders_per_s=%.0f\n",
	       rc ? 0.0 : fix_per_s, p50 / 1e3, p99 / 1e3, rc ? 0.0 : xml_per_s);
	return rc;
}
