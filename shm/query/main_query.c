/*
 * shmex-query: read-only inspection of a running exchange.
 *
 *   shmex-query [--instance NAME] [--json] COMMAND [ARGS]
 *
 * Commands: book, order, account, readers, stats, check, watch (usage()
 * below, docs/query.md).  The tool depends on shm/ only: it maps the
 * control, book, accounts and positions regions read-only, so the kernel
 * guarantees it cannot change the exchange; the one region it maps
 * writable is each shard's reader table, where a reader must announce
 * itself so the matcher does not reuse what it is reading.
 *
 * Exit status: 0 success, 1 the query failed (instance not running,
 * unknown symbol, order or account, book busy, invariant violation), 2
 * usage error.  Errors are one line on stderr, "shmex-query: ...".
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "shm/shm_accounts.h"
#include "shm/shm_msg.h"
#include "shm/shm_opt.h"
#include "shm/query/qry.h"
#include "shm/shm_region.h"

#define PROG "shmex-query"

static volatile sig_atomic_t stop_flag;

static void on_signal(int sig)
{
	(void)sig;
	stop_flag = 1;
}

struct opts {
	const char *instance;
	unsigned flags;
	uint64_t depth;
	uint64_t count;
	uint64_t interval;
	uint64_t listen_port;
	bool json, depth_set, orders, clear, count_set, interval_set, state_hash;
	bool listen_set;
};

static const struct shm_opt_prog *the_prog;

/* Which command takes which option. */
static int check_opts(const char *cmd, const struct opts *o)
{
	bool book = strcmp(cmd, "book") == 0, watch = strcmp(cmd, "watch") == 0;
	if ((o->depth_set || o->orders) && !book && !watch)
		return shm_opt_usage_error(
			the_prog, "--depth and --orders go with book or watch, not '%s'",
			cmd);
	if ((o->count_set || o->interval_set) && !watch)
		return shm_opt_usage_error(
			the_prog, "--count and --interval-ms go with watch, not '%s'",
			cmd);
	if (o->clear && strcmp(cmd, "readers") != 0)
		return shm_opt_usage_error(
			the_prog, "--clear-stale goes with readers, not '%s'", cmd);
	if (o->state_hash && strcmp(cmd, "stats") != 0)
		return shm_opt_usage_error(the_prog,
					   "--state-hash goes with stats, not '%s'", cmd);
	if (o->listen_set && strcmp(cmd, "metrics") != 0)
		return shm_opt_usage_error(
			the_prog, "--listen-port goes with metrics, not '%s'", cmd);
	return 0;
}

/* Number of operands each command takes: min, max. */
static int operands(const char *cmd, int *min, int *max)
{
	static const struct {
		const char *name;
		int min, max;
	} t[] = {
		{"book", 1, 1},    {"order", 1, 1},   {"account", 1, 1},
		{"readers", 0, 0}, {"stats", 0, 0},   {"check", 0, 1},
		{"watch", 1, 1},   {"metrics", 0, 0}, {"instances", 0, 0},
	};
	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		if (strcmp(cmd, t[i].name) == 0) {
			*min = t[i].min;
			*max = t[i].max;
			return 0;
		}
	}
	return -1;
}

static void catch_stop_signals(void)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal; /* no SA_RESTART: the wait ends */
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
}

static void send_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
		if (w <= 0)
			return; /* the scraper went away */
		p += w;
		n -= (size_t)w;
	}
}

/* One HTTP/1.0 exchange: GET /metrics (or /) answers the metrics, read
 * afresh; anything else 404 or 405. */
static void http_one(struct qry *q, int c, unsigned flags)
{
	struct timeval tv = {2, 0};
	setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	char req[4096];
	size_t n = 0;
	req[0] = 0;
	while (n < sizeof(req) - 1 && !strstr(req, "\r\n\r\n")) {
		ssize_t r = recv(c, req + n, sizeof(req) - 1 - n, 0);
		if (r <= 0)
			break;
		n += (size_t)r;
		req[n] = 0;
	}
	req[n] = 0;
	char *body = NULL;
	size_t blen = 0;
	const char *status = "200 OK";
	FILE *m = open_memstream(&body, &blen);
	if (!m)
		return;
	if (strncmp(req, "GET ", 4) != 0) {
		status = "405 Method Not Allowed";
		fprintf(m, "only GET\n");
	} else if (strncmp(req + 4, "/metrics ", 9) != 0 &&
		   strncmp(req + 4, "/ ", 2) != 0) {
		status = "404 Not Found";
		fprintf(m, "try /metrics\n");
	} else {
		int rc = qry_metrics(q, m, flags);
		if (rc) {
			status = "503 Service Unavailable";
			fprintf(m, "%s\n", shmex_error_msg(&q->err, rc));
		}
	}
	fclose(m);
	char head[256];
	int hl = snprintf(head, sizeof(head),
			  "HTTP/1.0 %s\r\nContent-Type: text/plain; version=0.0.4\r\n"
			  "Content-Length: %zu\r\nConnection: close\r\n\r\n",
			  status, blen);
	send_all(c, head, (size_t)hl);
	send_all(c, body, blen);
	free(body);
}

/* metrics --listen-port P: serves the metrics over HTTP on 127.0.0.1:P
 * (0: a free port), one scrape at a time, until SIGINT/SIGTERM. */
static int serve_metrics(struct qry *q, unsigned flags, uint16_t port)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		fprintf(stderr, PROG ": socket: %s\n", strerror(errno));
		return 1;
	}
	int one = 1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	socklen_t al = sizeof(a);
	if (bind(fd, (struct sockaddr *)&a, sizeof(a)) != 0 || listen(fd, 16) != 0 ||
	    getsockname(fd, (struct sockaddr *)&a, &al) != 0) {
		fprintf(stderr, PROG ": listen on 127.0.0.1:%u: %s\n", (unsigned)port,
			strerror(errno));
		close(fd);
		return 1;
	}
	catch_stop_signals();
	printf(PROG ": metrics of %s at http://127.0.0.1:%u/metrics\n", q->instance,
	       (unsigned)ntohs(a.sin_port));
	fflush(stdout);
	while (!stop_flag) {
		int c = accept4(fd, NULL, NULL, SOCK_CLOEXEC);
		if (c < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			fprintf(stderr, PROG ": accept: %s\n", strerror(errno));
			break;
		}
		http_one(q, c, flags);
		close(c);
	}
	close(fd);
	return stop_flag ? 0 : 1;
}

static int run(const struct opts *o, const char *cmd, char **args)
{
	struct qry q;
	uint64_t id = 0;
	if (strcmp(cmd, "order") == 0 || strcmp(cmd, "account") == 0) {
		uint64_t max =
			strcmp(cmd, "order") == 0 ? UINT64_MAX : SHM_ACCOUNT_ID_MAX;
		if (shm_opt_u64(args[0], 0, max, &id) || (id == 0 && cmd[0] == 'o'))
			return shm_opt_usage_error(the_prog, "invalid id '%s'", args[0]);
	}
	if ((strcmp(cmd, "book") == 0 || strcmp(cmd, "watch") == 0 ||
	     (strcmp(cmd, "check") == 0 && args[0])) &&
	    !shm_symbol_valid(args[0], strlen(args[0])))
		return shm_opt_usage_error(
			the_prog, "invalid symbol '%s' (1-15 letters and digits)",
			args[0]);

	if (strcmp(cmd, "instances") == 0) {
		int irc = qry_instances(stdout, o->flags);
		if (irc)
			fprintf(stderr, PROG ": /dev/shm: %s\n", strerror(-irc));
		return irc ? 1 : 0;
	}
	int rc = qry_open(&q, o->instance);
	if (rc) {
		fprintf(stderr, PROG ": %s\n", shmex_error_msg(&q.err, rc));
		return 1;
	}
	unsigned flags = o->flags;
	if (strcmp(cmd, "book") == 0) {
		rc = qry_book(&q, stdout, flags, args[0], o->depth);
	} else if (strcmp(cmd, "order") == 0) {
		rc = qry_order(&q, stdout, flags, id);
	} else if (strcmp(cmd, "account") == 0) {
		rc = qry_account(&q, stdout, flags, id);
	} else if (strcmp(cmd, "readers") == 0) {
		rc = qry_readers(&q, stdout, flags);
	} else if (strcmp(cmd, "stats") == 0) {
		rc = qry_stats(&q, stdout, flags);
	} else if (strcmp(cmd, "metrics") == 0 && o->listen_set) {
		int src = serve_metrics(&q, flags, (uint16_t)o->listen_port);
		qry_close(&q);
		return src;
	} else if (strcmp(cmd, "metrics") == 0) {
		rc = qry_metrics(&q, stdout, flags);
	} else if (strcmp(cmd, "check") == 0) {
		rc = qry_check(&q, stdout, flags, args[0]);
	} else {
		catch_stop_signals();
		if (!(flags & QRY_JSON))
			flags |= QRY_ANSI;
		rc = qry_watch(&q, stdout, flags, args[0], o->depth, o->count,
			       (unsigned)o->interval, &stop_flag);
	}
	if (rc)
		fprintf(stderr, PROG ": %s\n", shmex_error_msg(&q.err, rc));
	qry_close(&q);
	if (fflush(stdout) != 0 && rc == 0) {
		fprintf(stderr, PROG ": writing output: %s\n", strerror(errno));
		return 1;
	}
	return rc ? 1 : 0;
}

int main(int argc, char **argv)
{
	struct opts o = {
		.instance = getenv("SHMEX_INSTANCE"),
		.depth = QRY_DEPTH_DEFAULT,
		.interval = QRY_WATCH_INTERVAL_MS,
	};
	if (!o.instance || !*o.instance)
		o.instance = "default";
	const struct shm_opt opts[] = {
		{.name = "instance",
		 .type = SHM_OPT_INSTANCE,
		 .arg = "NAME",
		 .dst = &o.instance,
		 .show_default = true,
		 .help = "exchange instance; $SHMEX_INSTANCE when set"},
		{.name = "json",
		 .type = SHM_OPT_FLAG,
		 .dst = &o.json,
		 .help = "one line of JSON per result"},
		{.name = "depth",
		 .type = SHM_OPT_NUM,
		 .arg = "N",
		 .dst = &o.depth,
		 .max = UINT32_MAX,
		 .given = &o.depth_set,
		 .show_default = true,
		 .help = "book, watch: levels per side, 0 = all"},
		{.name = "orders",
		 .type = SHM_OPT_FLAG,
		 .dst = &o.orders,
		 .help = "book, watch: list every order of each level"},
		{.name = "state-hash",
		 .type = SHM_OPT_FLAG,
		 .dst = &o.state_hash,
		 .help = "stats: also a hash of the whole client-visible state"},
		{.name = "clear-stale",
		 .type = SHM_OPT_FLAG,
		 .dst = &o.clear,
		 .help = "readers: first free the slots of dead readers"},
		{.name = "count",
		 .type = SHM_OPT_NUM,
		 .arg = "N",
		 .dst = &o.count,
		 .min = 1,
		 .max = UINT32_MAX,
		 .given = &o.count_set,
		 .help = "watch: stop after N frames"},
		{.name = "interval-ms",
		 .type = SHM_OPT_NUM,
		 .arg = "MS",
		 .dst = &o.interval,
		 .min = 1,
		 .max = SHM_SETTINGS_MS_MAX,
		 .given = &o.interval_set,
		 .show_default = true,
		 .help = "watch: time between frames"},
		{.name = "listen-port",
		 .type = SHM_OPT_NUM,
		 .arg = "PORT",
		 .dst = &o.listen_port,
		 .max = 65535,
		 .given = &o.listen_set,
		 .help = "metrics: serve them over HTTP on 127.0.0.1:PORT (0: a free "
			 "port, printed) until Ctrl-C; off unless given"},
	};
	const struct shm_opt_prog prog = {
		.name = PROG,
		.synopsis = "[--instance NAME] [--json] COMMAND [ARGS]",
		.about = "Read-only inspection of a running shmex exchange.",
		.opts = opts,
		.nopts = sizeof(opts) / sizeof(opts[0]),
		.min_args = 0,
		.max_args = -1,
		.operands =
			"Commands:\n"
			"  book SYMBOL         price levels of both sides, best first\n"
			"  order ID            status and fills of an order\n"
			"  account ID          cash balance, reserved cash and positions in every shard\n"
			"  readers             reader slots of every shard (slot, pid, alive, epoch, lag)\n"
			"  stats               per shard: orders, levels, fills, events, reader lag,\n"
			"                      ring depths (--state-hash: and a hash of the whole\n"
			"                      state, equal for equal states)\n"
			"  check [SYMBOL]      verify the book invariants of one or every symbol\n"
			"  watch SYMBOL        redraw the book until Ctrl-C (or --count frames)\n"
			"  metrics             the stats in the Prometheus text format\n"
			"                      (--listen-port: an HTTP endpoint for scrapers)\n"
			"  instances           every instance in /dev/shm and whether it runs\n"
			"\n"
			"Exit status: 0 ok, 1 query failed, 2 usage error.",
	};
	the_prog = &prog;
	int first;
	enum shm_opt_result pr = shm_opt_parse(&prog, argc, argv, &first);
	if (pr != SHM_OPT_RUN)
		return pr == SHM_OPT_EXIT ? 0 : 2;
	if (o.json)
		o.flags |= QRY_JSON;
	if (o.orders)
		o.flags |= QRY_ORDERS;
	if (o.clear)
		o.flags |= QRY_CLEAR_STALE;
	if (o.state_hash)
		o.flags |= QRY_STATE_HASH;
	if (first >= argc)
		return shm_opt_usage_error(&prog, "%s", "missing COMMAND");
	const char *cmd = argv[first];
	int min, max;
	if (operands(cmd, &min, &max) != 0)
		return shm_opt_usage_error(&prog, "unknown command '%s'", cmd);
	int n = argc - first - 1;
	if (n < min)
		return shm_opt_usage_error(&prog, "'%s' needs an argument", cmd);
	if (n > max)
		return shm_opt_usage_error(&prog, "too many arguments for '%s'", cmd);
	int rc = check_opts(cmd, &o);
	if (rc)
		return rc;
	return run(&o, cmd, argv + first + 1);
}
