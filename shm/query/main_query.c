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
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

static void usage(FILE *f)
{
	fprintf(
	    f,
	    "Usage: " PROG " [--instance NAME] [--json] COMMAND [ARGS]\n"
	    "Read-only inspection of a running shmex exchange.\n"
	    "\n"
	    "Commands:\n"
	    "  book SYMBOL [--depth N] [--orders]\n"
	    "                      price levels of both sides, best first "
	    "(depth %u;\n"
	    "                      0 = all); --orders lists every order of "
	    "each level\n"
	    "  order ID            status and fills of an order\n"
	    "  account ID          cash balance, reserved cash and positions "
	    "in every shard\n"
	    "  readers [--clear-stale]\n"
	    "                      reader slots of every shard (slot, pid, "
	    "alive, epoch,\n"
	    "                      lag); --clear-stale first frees slots of "
	    "dead readers\n"
	    "  stats               per shard: orders, levels, fills, events, "
	    "reader lag,\n"
	    "                      ring depths\n"
	    "  check [SYMBOL]      verify the book invariants of one or every "
	    "symbol\n"
	    "  watch SYMBOL [--depth N] [--orders] [--count N] [--interval-ms "
	    "MS]\n"
	    "                      redraw the book every %u ms until Ctrl-C "
	    "(or N frames)\n"
	    "\n"
	    "Options:\n"
	    "  --instance NAME     exchange instance (default $SHMEX_INSTANCE, "
	    "else 'default')\n"
	    "  --json              one line of JSON per result\n"
	    "  --help              this text\n"
	    "  --version           program and shared-memory layout versions\n"
	    "\n"
	    "Exit status: 0 ok, 1 query failed, 2 usage error.\n",
	    QRY_DEPTH_DEFAULT, QRY_WATCH_INTERVAL_MS);
}

static int usage_error(const char *fmt, ...)
	__attribute__((format(printf, 1, 2)));

static int usage_error(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, PROG ": ");
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\nTry '" PROG " --help' for more information.\n");
	return 2;
}

enum {
	O_INSTANCE = 256,
	O_JSON,
	O_DEPTH,
	O_ORDERS,
	O_CLEAR_STALE,
	O_COUNT,
	O_INTERVAL,
	O_HELP,
	O_VERSION,
};

static const struct option longopts[] = {
    {"instance", required_argument, NULL, O_INSTANCE},
    {"json", no_argument, NULL, O_JSON},
    {"depth", required_argument, NULL, O_DEPTH},
    {"orders", no_argument, NULL, O_ORDERS},
    {"clear-stale", no_argument, NULL, O_CLEAR_STALE},
    {"count", required_argument, NULL, O_COUNT},
    {"interval-ms", required_argument, NULL, O_INTERVAL},
    {"help", no_argument, NULL, O_HELP},
    {"version", no_argument, NULL, O_VERSION},
    {NULL, 0, NULL, 0},
};

struct opts {
	const char *instance;
	unsigned flags;
	uint64_t depth;
	uint64_t count;
	uint64_t interval;
	bool depth_set, orders, clear, count_set, interval_set;
};

/* Which command takes which option. */
static int check_opts(const char *cmd, const struct opts *o)
{
	bool book = strcmp(cmd, "book") == 0, watch = strcmp(cmd, "watch") == 0;
	if ((o->depth_set || o->orders) && !book && !watch)
		return usage_error(
		    "--depth and --orders go with book or watch, not '%s'",
		    cmd);
	if ((o->count_set || o->interval_set) && !watch)
		return usage_error(
		    "--count and --interval-ms go with watch, not '%s'", cmd);
	if (o->clear && strcmp(cmd, "readers") != 0)
		return usage_error("--clear-stale goes with readers, not '%s'",
				   cmd);
	return 0;
}

/* Number of operands each command takes: min, max. */
static int operands(const char *cmd, int *min, int *max)
{
	static const struct {
		const char *name;
		int min, max;
	} t[] = {
	    {"book", 1, 1},    {"order", 1, 1}, {"account", 1, 1},
	    {"readers", 0, 0}, {"stats", 0, 0}, {"check", 0, 1},
	    {"watch", 1, 1},
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

static int run(const struct opts *o, const char *cmd, char **args)
{
	struct qry q;
	uint64_t id = 0;
	if (strcmp(cmd, "order") == 0 || strcmp(cmd, "account") == 0) {
		uint64_t max =
		    strcmp(cmd, "order") == 0 ? UINT64_MAX : SHM_ACCOUNT_ID_MAX;
		if (shm_opt_u64(args[0], 0, max, &id) || (id == 0 && cmd[0] == 'o'))
			return usage_error("invalid id '%s'", args[0]);
	}
	if ((strcmp(cmd, "book") == 0 || strcmp(cmd, "watch") == 0 ||
	     (strcmp(cmd, "check") == 0 && args[0])) &&
	    !shm_symbol_valid(args[0], strlen(args[0])))
		return usage_error(
		    "invalid symbol '%s' (1-15 letters and digits)", args[0]);

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
	} else if (strcmp(cmd, "check") == 0) {
		rc = qry_check(&q, stdout, flags, args[0]);
	} else {
		struct sigaction sa;
		memset(&sa, 0, sizeof(sa));
		sa.sa_handler = on_signal; /* no SA_RESTART: the sleep ends */
		sigemptyset(&sa.sa_mask);
		sigaction(SIGINT, &sa, NULL);
		sigaction(SIGTERM, &sa, NULL);
		sigaction(SIGHUP, &sa, NULL);
		if (!(flags & QRY_JSON))
			flags |= QRY_ANSI;
		rc = qry_watch(&q, stdout, flags, args[0], o->depth,
				     o->count, (unsigned)o->interval,
				     &stop_flag);
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
	opterr = 0;
	int c;
	while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (c) {
		case O_INSTANCE:
			o.instance = optarg;
			break;
		case O_JSON:
			o.flags |= QRY_JSON;
			break;
		case O_DEPTH:
			if (shm_opt_u64(optarg, 0, UINT32_MAX, &o.depth))
				return usage_error("invalid --depth '%s'",
						   optarg);
			o.depth_set = true;
			break;
		case O_ORDERS:
			o.flags |= QRY_ORDERS;
			o.orders = true;
			break;
		case O_CLEAR_STALE:
			o.flags |= QRY_CLEAR_STALE;
			o.clear = true;
			break;
		case O_COUNT:
			if (shm_opt_u64(optarg, 1, UINT32_MAX, &o.count))
				return usage_error(
				    "invalid --count '%s' (1 or more)", optarg);
			o.count_set = true;
			break;
		case O_INTERVAL:
			if (shm_opt_u64(optarg, 1, 3600000, &o.interval))
				return usage_error(
				    "invalid --interval-ms '%s' (1..3600000)",
				    optarg);
			o.interval_set = true;
			break;
		case O_HELP:
			usage(stdout);
			return 0;
		case O_VERSION:
			shm_opt_version(stdout, PROG);
			return 0;
		default:
			return usage_error("unknown or incomplete option '%s'",
					   argv[optind - 1]);
		}
	}
	if (optind >= argc)
		return usage_error("%s", "missing COMMAND");
	const char *cmd = argv[optind];
	int min, max;
	if (operands(cmd, &min, &max) != 0)
		return usage_error("unknown command '%s'", cmd);
	int n = argc - optind - 1;
	if (n < min)
		return usage_error("'%s' needs an argument", cmd);
	if (n > max)
		return usage_error("too many arguments for '%s'", cmd);
	int rc = check_opts(cmd, &o);
	if (rc)
		return rc;
	return run(&o, cmd, argv + optind + 1);
}
