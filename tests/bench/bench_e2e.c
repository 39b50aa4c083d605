/*
 * bench_e2e: TCP clients through gateways and matchers, end to end.
 *
 * Starts real exchanges with the `shmex` supervisor next to shmex-bench
 * (unique instance, port chosen by the kernel) and drives them with a C
 * load generator: one thread, N persistent non-blocking connections in one
 * epoll set registered once (no per-turn descriptor scan), one recv per
 * readable connection and one send per request, closed loop (each
 * connection sends its next request as soon as the previous reply is
 * complete).  The generator shares the 2 CPUs with the exchange, so it is
 * kept lean and its own CPU use is measured and reported.  Each request is one framed
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
 * CPU accounting: around the persistent phase, utime + stime of this
 * process and of every child of the supervisor (/proc/<pid>/stat) give
 * each process's share of a CPU and the CPU time per request, which,
 * unlike requests/s, hardly depends on what else the machine runs.
 *
 * --only base|defaults runs one configuration (quick experiments).
 * --cdf-out PREFIX writes the latency distribution of each configuration's
 * persistent phase to PREFIX-<1x1|2x2>.dat: 1000 lines "microseconds
 * fraction" (quantiles 0.001 .. 1), for the CDF plot of make bench-report.
 *
 * Last line: RESULT e2e req_per_s=<defaults, persistent> p50_us p99_us
 * p999_us (defaults, persistent) scale_ratio=<x> base_req_per_s=<n>
 * conn_req_per_s=<defaults, one connection per request>
 * gen_cpu_pct=<load generator, % of one CPU> cpu_us_per_req=<exchange CPU
 * per request, defaults> base_cpu_us_per_req=<same, baseline>.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tests/bench/bench.h"
#include "tests/client.h"

int bench_e2e(int argc, char **argv);
int bench_durability(int argc, char **argv);

#define NSYM 16
#define MAX_SAMPLES (4u << 20)
#define IDS_KEPT 64

/* Receive buffer of one persistent connection (replies are < 1 KiB). */
#define RBUF 16384
/* Per-process CPU figures kept for the report. */
#define MAX_PROCS 32

struct econn {
	struct client c;
	int account;
	bool waiting; /* a request is in flight */
	uint64_t sent_ns;
	uint64_t ids[IDS_KEPT]; /* known order ids, oldest first */
	int nids;
	char *rbuf; /* persistent phase: bytes not yet a reply */
	size_t rlen;
	size_t scanned; /* bytes of rbuf already searched for an end */
};

struct load {
	int port;
	int nconn;
	uint64_t seconds_ns;
	unsigned seed;
	uint64_t *lat; /* samples (ns) */
	size_t nlat;
	uint64_t requests;
	uint64_t errors; /* failed connections or requests */
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

/*
 * One framed request ("<len>\n<transactions ...>") of the connection's
 * account into buf; returns its length.  Uses and updates the connection's
 * ids.
 */
static int make_request(struct econn *e, unsigned *seed, char *buf, size_t cap)
{
	char xml[1024];
	size_t xc = sizeof(xml);
	unsigned r = rnd(seed);
	int sym = (int)(r % NSYM);
	int sell = (r >> 4) & 1;
	int amt = 1 + (int)((r >> 5) % 100);
	int lim = 95 + (int)((r >> 12) % 11);
	int n = snprintf(xml, xc,
			 "<transactions id=\"%d\"><order sym=\"S%d\" "
			 "amount=\"%s%d\" limit=\"%d\"/>",
			 e->account, sym, sell ? "-" : "", amt, lim);
	unsigned q = rnd(seed) % 10;
	if (e->nids > 0 && q < 3) {
		n += snprintf(xml + n, xc - (size_t)n, "<cancel id=\"%llu\"/>",
			      (unsigned long long)e->ids[0]);
		memmove(e->ids, e->ids + 1, (size_t)(e->nids - 1) * sizeof(e->ids[0]));
		e->nids--;
	}
	if (e->nids > 0 && q >= 7)
		n += snprintf(xml + n, xc - (size_t)n, "<query id=\"%llu\"/>",
			      (unsigned long long)e->ids[e->nids - 1]);
	n += snprintf(xml + n, xc - (size_t)n, "</transactions>");
	return snprintf(buf, cap, "%d\n%s", n, xml);
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

/* Writes a whole request on a non-blocking socket (one send() in practice:
 * requests are a few hundred bytes and the socket is idle). */
static int send_all(int fd, const char *p, size_t len)
{
	while (len > 0) {
		ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
		if (n > 0) {
			p += n;
			len -= (size_t)n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno != EAGAIN)
			return -errno;
		struct pollfd pf = {.fd = fd, .events = POLLOUT};
		if (poll(&pf, 1, 5000) <= 0)
			return -ETIMEDOUT;
	}
	return 0;
}

/* End of the first complete reply in e->rbuf (after its trailing newline),
 * or 0.  Replies end at the first "</results>" or "<results/>". */
static size_t reply_end(struct econn *e)
{
	size_t from = e->scanned > 10 ? e->scanned - 10 : 0;
	e->rbuf[e->rlen] = 0;
	const char *a = strstr(e->rbuf + from, "</results>");
	const char *b = strstr(e->rbuf + from, "<results/>");
	const char *end = a && (!b || a < b) ? a : b;
	if (!end) {
		e->scanned = e->rlen;
		return 0;
	}
	size_t off = (size_t)(end - e->rbuf) + 10;
	if (off < e->rlen && e->rbuf[off] == '\n')
		off++;
	return off;
}

/* Starts the connection's next request. */
static int start_request(struct load *l, struct econn *e)
{
	char buf[1100];
	int n = make_request(e, &l->seed, buf, sizeof(buf));
	e->sent_ns = bench_now_ns();
	e->waiting = true;
	return send_all(e->c.fd, buf, (size_t)n);
}

/*
 * Closed loop over persistent connections: one epoll set registered once
 * (no per-turn descriptor scan), one recv per readable connection per
 * turn and one send per request.
 */
static int run_persistent(struct load *l)
{
	int rc = -1;
	struct econn *ec = calloc((size_t)l->nconn, sizeof(*ec));
	struct epoll_event *evs = calloc((size_t)l->nconn, sizeof(*evs));
	int ep = epoll_create1(EPOLL_CLOEXEC);
	if (!ec || !evs || ep < 0)
		goto out_free;
	for (int i = 0; i < l->nconn; i++) {
		ec[i].c.fd = -1;
		ec[i].account = 1 + i;
		ec[i].rbuf = malloc(RBUF + 1);
		if (!ec[i].rbuf ||
		    client_connect(&ec[i].c, "127.0.0.1", l->port, 5000) != 0) {
			fprintf(stderr, "bench e2e: connect failed\n");
			goto out_close;
		}
		struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)i};
		if (epoll_ctl(ep, EPOLL_CTL_ADD, ec[i].c.fd, &ev) != 0)
			goto out_close;
	}
	uint64_t end = bench_now_ns() + l->seconds_ns;
	for (int i = 0; i < l->nconn; i++)
		if (start_request(l, &ec[i]) != 0)
			goto out_close;
	int inflight = l->nconn;
	while (inflight > 0) {
		int n = epoll_wait(ep, evs, l->nconn, 5000);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			fprintf(stderr, "bench e2e: no reply for 5 s\n");
			goto out_close;
		}
		uint64_t now = bench_now_ns();
		for (int k = 0; k < n; k++) {
			struct econn *e = &ec[evs[k].data.u32];
			ssize_t got = recv(e->c.fd, e->rbuf + e->rlen, RBUF - e->rlen,
					   MSG_DONTWAIT);
			if (got < 0 && (errno == EAGAIN || errno == EINTR))
				continue;
			if (got <= 0 || !e->waiting) {
				fprintf(stderr, "bench e2e: connection lost\n");
				goto out_close;
			}
			e->rlen += (size_t)got;
			size_t rend = reply_end(e);
			if (rend == 0) {
				if (e->rlen == RBUF) {
					fprintf(stderr, "bench e2e: reply too long\n");
					goto out_close;
				}
				continue;
			}
			char save = e->rbuf[rend];
			e->rbuf[rend] = 0;
			sample(l, now - e->sent_ns);
			const char *er = strstr(e->rbuf, "<error");
			if (er && l->errors++ < 3 && getenv("SHMEX_BENCH_VERBOSE"))
				fprintf(stderr, "bench e2e:   error reply: %.200s\n", er);
			note_ids(e, e->rbuf);
			e->rbuf[rend] = save;
			memmove(e->rbuf, e->rbuf + rend, e->rlen - rend);
			e->rlen -= rend;
			e->scanned = 0;
			e->waiting = false;
			inflight--;
			if (e->rlen) {
				fprintf(stderr,
					"bench e2e: unexpected bytes after a reply\n");
				goto out_close;
			}
			if (now < end) {
				if (start_request(l, e) != 0)
					goto out_close;
				inflight++;
			}
		}
	}
	rc = 0;
out_close:
	for (int i = 0; i < l->nconn; i++) {
		if (ec[i].c.fd >= 0)
			client_close(&ec[i].c);
		free(ec[i].rbuf);
	}
out_free:
	if (ep >= 0)
		close(ep);
	free(ec);
	free(evs);
	return rc;
}

/* ---- CPU accounting: who used the two CPUs during a phase ---- */

struct cpu_proc {
	pid_t pid;
	char name[32];
	uint64_t ticks0, ticks1;
};

struct cpu_snap {
	int n;
	struct cpu_proc p[MAX_PROCS];
	uint64_t t0, t1; /* ns */
};

/* utime + stime of a process in clock ticks (0 when it is gone). */
static uint64_t proc_ticks(pid_t pid, char *name, size_t namelen)
{
	char path[64], buf[1024];
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	FILE *f = fopen(path, "re");
	if (!f)
		return 0;
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = 0;
	char *lp = strchr(buf, '('), *rp = strrchr(buf, ')');
	if (!lp || !rp)
		return 0;
	if (name) {
		size_t l = (size_t)(rp - lp - 1);
		if (l >= namelen)
			l = namelen - 1;
		memcpy(name, lp + 1, l);
		name[l] = 0;
	}
	unsigned long long ut = 0, st = 0;
	/* Fields after the name: state(3) ... utime(14) stime(15). */
	if (sscanf(rp + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut,
		   &st) != 2)
		return 0;
	return ut + st;
}

static void cpu_begin(struct cpu_snap *s, const struct exchange *ex)
{
	pid_t pids[MAX_PROCS - 1];
	int n = exchange_children(ex, pids, MAX_PROCS - 1);
	s->n = 0;
	s->p[s->n].pid = getpid();
	s->p[s->n].ticks0 = proc_ticks(getpid(), NULL, 0);
	snprintf(s->p[s->n].name, sizeof(s->p[0].name), "load generator");
	s->n++;
	for (int i = 0; i < n; i++) {
		struct cpu_proc *p = &s->p[s->n++];
		p->pid = pids[i];
		p->ticks0 = proc_ticks(pids[i], p->name, sizeof(p->name));
	}
	s->t0 = bench_now_ns();
}

/* Prints each process's share of one CPU; returns the load generator's
 * and sets *exch_ns to the CPU time the exchange's processes used. */
static double cpu_end(struct cpu_snap *s, double *exch_ns)
{
	s->t1 = bench_now_ns();
	double hz = (double)sysconf(_SC_CLK_TCK);
	double wall = (double)(s->t1 - s->t0) / 1e9;
	double total = 0, self = 0;
	*exch_ns = 0;
	fprintf(stderr, "bench e2e:   CPU (%% of one CPU):");
	for (int i = 0; i < s->n; i++) {
		struct cpu_proc *p = &s->p[i];
		p->ticks1 = proc_ticks(p->pid, NULL, 0);
		double pct = p->ticks1 >= p->ticks0 && wall > 0
				     ? 100.0 * (double)(p->ticks1 - p->ticks0) / hz / wall
				     : 0;
		total += pct;
		if (i == 0)
			self = pct;
		else
			*exch_ns += pct / 100 * wall * 1e9;
		fprintf(stderr, " %s %.0f%%%s", p->name, pct, i + 1 < s->n ? "," : "");
	}
	fprintf(stderr, "; total %.0f%% of %ld%%\n", total,
		100 * sysconf(_SC_NPROCESSORS_ONLN));
	return self;
}

/* One connection per request: `clients` of them in flight at a time
 * (connect is blocking but short on loopback). */
static int run_per_request(struct load *l, int clients)
{
	struct econn *ec = calloc((size_t)clients, sizeof(*ec));
	struct pollfd *pf = calloc((size_t)clients, sizeof(*pf));
	if (!ec || !pf)
		return -1;
	char xml[1100];
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
			int len = make_request(&ec[i], &l->seed, xml, sizeof(xml));
			if (client_send_raw(&ec[i].c, xml, (size_t)len, 5000) != 0) {
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
			if (!ec[i].waiting ||
			    !(pf[i].revents & (POLLIN | POLLERR | POLLHUP)))
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
	/* The exchange's total cash must fit its 64-bit sums (8e10 in all). */
	long long balance = 80000000000LL / naccounts;
	if (balance > 1000000000LL)
		balance = 1000000000LL;
	int n = snprintf(xml, cap, "<create>");
	for (int a = 1; a <= naccounts; a++)
		n += snprintf(xml + n, cap - (size_t)n,
			      "<account id=\"%d\" balance=\"%lld\"/>", a, balance);
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
	if (rc == 0 && strstr(rep, "<error")) {
		fprintf(stderr, "bench e2e: creating accounts: %.300s\n",
			strstr(rep, "<error"));
		rc = -1;
	}
	free(xml);
	client_close(&c);
	return rc;
}

static const char *cdf_out; /* --cdf-out PREFIX, or NULL */

/* The sorted samples as 1000 quantiles (see the header). */
static void write_cdf(const char *tag, const uint64_t *lat, size_t n)
{
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s-%s.dat", cdf_out, tag);
	FILE *f = fopen(path, "w");
	if (!f || !n) {
		fprintf(stderr, "bench e2e: --cdf-out %s: %s\n", path,
			f ? "no samples" : strerror(errno));
		if (f)
			fclose(f);
		return;
	}
	for (int q = 1; q <= 1000; q++) {
		size_t i = (size_t)((double)q / 1000 * (double)(n - 1));
		fprintf(f, "%.2f %.3f\n", (double)lat[i] / 1e3, (double)q / 1000);
	}
	fclose(f);
}

struct figures {
	double req_per_s;
	uint64_t p50, p99, p999; /* ns */
	double conn_req_per_s;
	uint64_t conn_p50;
	double err_share;
	double gen_cpu;    /* load generator, % of one CPU */
	double cpu_us;     /* exchange CPU time per request */
	double gen_cpu_us; /* load generator CPU time per request */
};

/* The capacities every configuration runs with. */
static const char *const capacities[] = {
	"--orders",    "262144",    "--fills",     "1048576",    "--levels",
	"65536",       "--symbols", "64",          "--accounts", "4096",
	"--positions", "65536",     "--max-conns", "4096",       NULL,
};

/*
 * Starts an exchange of `shards` x `gateways` with the benchmark's
 * capacities and then the NULL-terminated `more` (--quiet unless `loud`).
 */
static int start_config(struct exchange *ex, const char *bin, const char *inst,
			const char *shards, const char *gateways, const char *const *more,
			bool loud)
{
	const char *extra[48];
	int n = 0;
	extra[n++] = "--shards";
	extra[n++] = shards;
	extra[n++] = "--gateways";
	extra[n++] = gateways;
	for (int i = 0; capacities[i]; i++)
		extra[n++] = capacities[i];
	if (!loud)
		extra[n++] = "--quiet";
	if (getenv("SHMEX_BENCH_SPIN_US")) {
		extra[n++] = "--spin-us";
		extra[n++] = getenv("SHMEX_BENCH_SPIN_US");
	}
	for (int i = 0; more && more[i] && n < 46; i++)
		extra[n++] = more[i];
	extra[n] = NULL;
	return exchange_start(ex, bin, inst, extra, 60000);
}

/*
 * One configuration: persistent connections for `seconds`, then (when
 * per_request) one connection per request for half as long.  `more`:
 * further arguments of shmex (a data directory, a sync mode).
 */
static int run_config(const char *bin, const char *tag, const char *shards,
		      const char *gateways, const char *const *more, bool per_request,
		      int nconn, double seconds, struct figures *f)
{
	char inst[64];
	snprintf(inst, sizeof(inst), "bench-%d-%s", (int)getpid(), tag);
	struct exchange ex;
	if (start_config(&ex, bin, inst, shards, gateways, more, false) != 0)
		return -1;
	fprintf(stderr, "bench e2e: %s gateway(s) x %s shard(s) on port %d\n", gateways,
		shards, ex.port);
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
	struct cpu_snap cs;
	cpu_begin(&cs, &ex);
	uint64_t t0 = bench_now_ns();
	rc = run_persistent(&l);
	uint64_t t1 = bench_now_ns();
	double exch_ns;
	f->gen_cpu = cpu_end(&cs, &exch_ns);
	if (rc == 0) {
		f->req_per_s = (double)l.requests * 1e9 / (double)(t1 - t0);
		f->err_share = l.requests ? (double)l.errors / (double)l.requests : 0;
		f->p50 = bench_percentile(l.lat, l.nlat, 50);
		f->p99 = bench_percentile(l.lat, l.nlat, 99);
		f->p999 = bench_percentile(l.lat, l.nlat, 99.9);
		if (cdf_out) /* the samples are sorted now */
			write_cdf(strcmp(shards, "1") ? "2x2" : "1x1", l.lat, l.nlat);
		/* CPU per request: unlike req/s, it does not depend on how
		 * much of the machine other processes took meanwhile. */
		f->cpu_us = l.requests ? exch_ns / 1e3 / (double)l.requests : 0;
		f->gen_cpu_us = l.requests ? f->gen_cpu / 100 * (double)(t1 - t0) / 1e3 /
						     (double)l.requests
					   : 0;
		fprintf(stderr,
			"bench e2e:   CPU per request: exchange %.1f us, "
			"load generator %.1f us\n",
			f->cpu_us, f->gen_cpu_us);
		fprintf(stderr,
			"bench e2e:   %d persistent connections: %.0f req/s, "
			"p50 %.1f us, p99 %.1f us, p99.9 %.1f us (%.1f%% of replies "
			"carry an error)\n",
			nconn, f->req_per_s, f->p50 / 1e3, f->p99 / 1e3, f->p999 / 1e3,
			100 * f->err_share);
	}
	if (rc == 0 && per_request) {
		struct load pr = {.port = ex.port, .nconn = 8, .seed = 7, .lat = l.lat};
		pr.seconds_ns = l.seconds_ns / 2;
		t0 = bench_now_ns();
		rc = run_per_request(&pr, 8);
		t1 = bench_now_ns();
		if (rc == 0) {
			f->conn_req_per_s = (double)pr.requests * 1e9 / (double)(t1 - t0);
			f->conn_p50 = bench_percentile(pr.lat, pr.nlat, 50);
			fprintf(stderr,
				"bench e2e:   one connection per request (8 "
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
	bool run_base = true, run_def = true;
	static const struct option o[] = {
		{"seconds", required_argument, NULL, 's'},
		{"conns", required_argument, NULL, 'c'},
		{"only", required_argument, NULL, 'o'},
		{"cdf-out", required_argument, NULL, 'C'},
		{NULL, 0, NULL, 0},
	};
	int c;
	optind = 1;
	while ((c = getopt_long(argc, argv, "", o, NULL)) != -1) {
		if (c == 's') {
			seconds = atof(optarg);
		} else if (c == 'c') {
			nconn = atoi(optarg);
		} else if (c == 'o' && !strcmp(optarg, "base")) {
			run_def = false;
		} else if (c == 'o' && !strcmp(optarg, "defaults")) {
			run_base = false;
		} else if (c == 'C') {
			cdf_out = optarg;
		} else {
			fprintf(stderr,
				"usage: shmex-bench e2e [--seconds S] [--conns N] "
				"[--only base|defaults] [--cdf-out PREFIX]\n");
			return 2;
		}
	}
	if (seconds <= 0 || seconds > 600 || nconn < 1 || nconn > 4000) {
		fprintf(stderr,
			"bench e2e: --seconds in (0, 600], --conns in [1, 4000]\n");
		return 2;
	}
	char bin[PATH_MAX];
	if (bench_sibling(bin, sizeof(bin), "shmex") != 0)
		return 1;
	struct figures base = {0}, def = {0};
	/* A scratch data directory: the journal is part of every acknowledged
	 * order, so the e2e figures include it (the default --sync fsync). */
	char dir[PATH_MAX];
	if (bench_scratch_dir(dir, sizeof(dir), "e2e") != 0)
		return 1;
	char da[PATH_MAX + 8], db[PATH_MAX + 8];
	snprintf(da, sizeof(da), "%s/a", dir);
	snprintf(db, sizeof(db), "%s/b", dir);
	const char *ma[] = {"--data-dir", da, NULL}, *mb[] = {"--data-dir", db, NULL};
	int rc = (run_base &&
		  run_config(bin, "a", "1", "1", ma, true, nconn, seconds, &base) != 0) ||
		 (run_def &&
		  run_config(bin, "b", "2", "2", mb, true, nconn, seconds, &def) != 0);
	bench_remove_dir(dir);
	if (rc) {
		printf("RESULT e2e req_per_s=nan p50_us=nan p99_us=nan p999_us=nan "
		       "scale_ratio=nan\n");
		return 1;
	}
	const struct figures *f = run_def ? &def : &base;
	printf("RESULT e2e req_per_s=%.0f p50_us=%.1f p99_us=%.1f p999_us=%.1f "
	       "scale_ratio=%.2f base_req_per_s=%.0f conn_req_per_s=%.0f "
	       "gen_cpu_pct=%.0f cpu_us_per_req=%.1f base_cpu_us_per_req=%.1f\n",
	       f->req_per_s, f->p50 / 1e3, f->p99 / 1e3, f->p999 / 1e3,
	       base.req_per_s > 0 && run_def ? def.req_per_s / base.req_per_s : 0,
	       base.req_per_s, f->conn_req_per_s, f->gen_cpu, f->cpu_us, base.cpu_us);
	return 0;
}

/* ---- durability: the journal's price, and replay speed ---- */

/*
 * Reads the matchers' "recovered N records (M requests) in S s" lines
 * from log; *records = their sum, *secs = the slowest shard's time (the
 * shards replay in parallel).  Returns the number of lines.
 */
static int parse_recovery(const char *log, uint64_t *records, double *secs)
{
	FILE *f = fopen(log, "r");
	if (!f)
		return 0;
	char line[512];
	int n = 0;
	*records = 0;
	*secs = 0;
	while (fgets(line, sizeof(line), f)) {
		const char *p = strstr(line, "recovered ");
		unsigned long long recs, reqs;
		double s;
		if (!p || sscanf(p, "recovered %llu records (%llu requests) in %lf s",
				 &recs, &reqs, &s) != 3)
			continue;
		fprintf(stderr, "bench durability:   %s", line);
		*records += recs;
		if (s > *secs)
			*secs = s;
		n++;
	}
	fclose(f);
	return n;
}

/* Removes the snapshots of shards 0..nshards-1 of data directory dd. */
static int remove_snapshots(const char *dd, uint32_t nshards)
{
	for (uint32_t k = 0; k < nshards; k++) {
		char sd[PATH_MAX + 32];
		snprintf(sd, sizeof(sd), "%s/shard-%u", dd, k);
		DIR *d = opendir(sd);
		if (!d) {
			fprintf(stderr, "bench durability: %s: %s\n", sd,
				strerror(errno));
			return -1;
		}
		struct dirent *e;
		while ((e = readdir(d)) != NULL) {
			char p[PATH_MAX + 320];
			if (strncmp(e->d_name, "snapshot-", 9) != 0)
				continue;
			snprintf(p, sizeof(p), "%s/%s", sd, e->d_name);
			if (unlink(p) != 0)
				fprintf(stderr, "bench durability: unlink %s: %s\n", p,
					strerror(errno));
		}
		closedir(d);
	}
	return 0;
}

/*
 * Starts an exchange on the data directory `dd` (which holds journals),
 * with its stderr in a file, and measures how fast its matchers replay.
 */
static int measure_replay(const char *bin, const char *dd, const char *scratch,
			  const char *shards, const char *gateways, double *eps)
{
	char inst[64], log[PATH_MAX + 16];
	snprintf(inst, sizeof(inst), "bench-%d-replay", (int)getpid());
	snprintf(log, sizeof(log), "%s/replay.log", scratch);
	int fd = open(log, O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0600);
	int saved = dup(2);
	if (fd < 0 || saved < 0) {
		fprintf(stderr, "bench durability: %s: %s\n", log, strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	const char *more[] = {"--data-dir", dd, NULL};
	struct exchange ex;
	fflush(stderr);
	dup2(fd, 2);
	int rc = start_config(&ex, bin, inst, shards, gateways, more, true);
	dup2(saved, 2);
	close(saved);
	close(fd);
	if (rc != 0) {
		fprintf(stderr,
			"bench durability: the recovering exchange did not "
			"start (its log: %s)\n",
			log);
		return -1;
	}
	exchange_stop(&ex, 30000);
	uint64_t records;
	double secs;
	if (parse_recovery(log, &records, &secs) == 0 || secs <= 0) {
		fprintf(stderr, "bench durability: no recovery line in %s\n", log);
		return -1;
	}
	*eps = (double)records / secs;
	fprintf(stderr, "bench durability:   replay: %llu records, %.0f records/s\n",
		(unsigned long long)records, *eps);
	return 0;
}

/*
 * bench durability: the e2e load of the defaults (2 gateways x 2 shards)
 * with --sync fsync (group commit, fdatasync before every reply) and with
 * --sync none (write only) in the same run; then the fsync run's journals
 * are recovered by a new exchange to measure replay speed.
 *
 * Last line: RESULT durability fsync_req_per_s=<n> none_req_per_s=<n>
 * fsync_ratio=<fsync/none> fsync_p99_us=<n> none_p99_us=<n>
 * replay_events_per_s=<n>
 */
int bench_durability(int argc, char **argv)
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
		if (c == 's') {
			seconds = atof(optarg);
		} else if (c == 'c') {
			nconn = atoi(optarg);
		} else {
			fprintf(stderr, "usage: shmex-bench durability [--seconds S] "
					"[--conns N]\n");
			return 2;
		}
	}
	if (seconds <= 0 || seconds > 600 || nconn < 1 || nconn > 4000) {
		fprintf(stderr,
			"bench durability: --seconds in (0, 600], --conns in [1, 4000]\n");
		return 2;
	}
	char bin[PATH_MAX], dir[PATH_MAX];
	if (bench_sibling(bin, sizeof(bin), "shmex") != 0 ||
	    bench_scratch_dir(dir, sizeof(dir), "durability") != 0)
		return 1;
	char df[PATH_MAX + 8], dn[PATH_MAX + 8];
	snprintf(df, sizeof(df), "%s/fsync", dir);
	snprintf(dn, sizeof(dn), "%s/none", dir);
	const char *mf[] = {"--data-dir", df, "--sync", "fsync", NULL};
	const char *mn[] = {"--data-dir", dn, "--sync", "none", NULL};
	struct figures ff = {0}, fn = {0};
	double eps = 0;
	fprintf(stderr, "bench durability: --sync fsync\n");
	int rc = run_config(bin, "f", "2", "2", mf, false, nconn, seconds, &ff);
	if (rc == 0) {
		fprintf(stderr, "bench durability: --sync none\n");
		rc = run_config(bin, "n", "2", "2", mn, false, nconn, seconds, &fn);
	}
	if (rc == 0) {
		/* The clean stop wrote a snapshot of everything; without it the
		 * next start replays the whole journal (the only snapshot
		 * removed no segment). */
		fprintf(stderr, "bench durability: replaying the fsync run's journals\n");
		rc = remove_snapshots(df, 2);
		if (rc == 0)
			rc = measure_replay(bin, df, dir, "2", "2", &eps);
	}
	bench_remove_dir(dir);
	if (rc != 0) {
		printf("RESULT durability fsync_req_per_s=nan none_req_per_s=nan "
		       "fsync_ratio=nan fsync_p99_us=nan none_p99_us=nan "
		       "replay_events_per_s=nan\n");
		return 1;
	}
	printf("RESULT durability fsync_req_per_s=%.0f none_req_per_s=%.0f "
	       "fsync_ratio=%.2f fsync_p99_us=%.1f none_p99_us=%.1f "
	       "replay_events_per_s=%.0f\n",
	       ff.req_per_s, fn.req_per_s,
	       fn.req_per_s > 0 ? ff.req_per_s / fn.req_per_s : 0, ff.p99 / 1e3,
	       fn.p99 / 1e3, eps);
	return 0;
}
