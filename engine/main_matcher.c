/*
 * shmex-matcher: the matcher process of one symbol shard.
 *
 *   shmex-matcher --instance NAME --shard K [capacities] [--stp MODE]
 *
 * The supervisor (shmex) creates the instance's control, rings and
 * accounts regions, then starts one shmex-matcher per shard with exactly
 * `--instance NAME --shard K` and waits until it is ready (its member slot
 * in the control region names it and book.K, positions.K, readers.K
 * attach; docs/matcher.md).  Capacities default to what the supervisor
 * recorded in the control region; the options override them (tests,
 * shmex-replay --through-shm).
 *
 * SIGTERM or SIGINT (or the instance's stopping flag): drain the rings,
 * answer everything, exit 0.  Exit 1 when startup fails (the message names
 * the object and the reason), 2 on a usage error.
 */
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/eng_matcher.h"
#include "shm/shm_book.h"
#include "shm/shm_doorbell.h"
#include "shm/shm_error.h"
#include "shm/shm_opt.h"
#include "shm/shm_readers.h"
#include "shm/shm_region.h"

#include "shm/shm_atomic.h"

static struct eng_matcher *the_matcher;
/* Set by a signal that came before the_matcher existed.  Relaxed: both
 * sides run in this thread (handler and main), ordered by sigprocmask. */
static int early_stop;

static void on_signal(int sig)
{
	(void)sig;
	if (the_matcher)
		eng_matcher_stop(the_matcher);
	else
		store_relaxed(&early_stop, 1);
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: shmex-matcher --instance NAME --shard K [OPTIONS]\n"
		"Runs the matcher of shard K of a running shmex instance: creates the\n"
		"shard's book, positions and reader-table regions, then matches the\n"
		"orders the gateways put on its rings until SIGTERM.\n"
		"\n"
		"  --instance NAME   instance whose control, rings and accounts exist\n"
		"  --shard K         shard number, 0 .. shards-1\n"
		"  --orders N        order records (default: the instance's limit, else %u)\n"
		"  --levels N        price levels (default: the instance's limit, else %u)\n"
		"  --fills N         fill records (default: the instance's limit, else %u)\n"
		"  --symbols N       symbols (default: the instance's limit, else %u)\n"
		"  --positions N     positions (default: the instance's limit, else %u)\n"
		"  --readers N       reader slots (default: the instance's limit, else %u)\n"
		"  --stp MODE        self-trade prevention: none (default), cancel-newest,\n"
		"                    cancel-oldest, cancel-both\n"
		"  --batch N         messages taken per ring per round (default %u, max %u)\n"
		"  --spin-us US      spin before sleeping on the doorbell (default %u)\n"
		"  --idle-ms MS      idle tick while asleep (default %u)\n"
		"  --drain-ms MS     on stop, time to deliver parked replies (default %u)\n"
		"  --verbose         log every rejected request\n"
		"  --quiet           no summary line at exit\n"
		"  -h, --help        this help\n"
		"  --version         program and layout versions\n",
		ENG_MATCHER_ORDERS_DEFAULT, ENG_MATCHER_LEVELS_DEFAULT,
		ENG_MATCHER_FILLS_DEFAULT, ENG_MATCHER_SYMBOLS_DEFAULT,
		ENG_MATCHER_POSITIONS_DEFAULT, SHM_READERS_DEFAULT_SLOTS,
		ENG_MATCHER_BATCH_DEFAULT, ENG_MATCHER_BATCH_MAX,
		SHM_DOORBELL_SPIN_NS_DEFAULT / 1000u, ENG_MATCHER_IDLE_MS_DEFAULT,
		ENG_MATCHER_DRAIN_MS_DEFAULT);
}

/* Parses a decimal number in [min, max]; false (with a message) if not. */
static bool parse_u32(const char *opt, const char *s, uint32_t min, uint32_t max,
		      uint32_t *out)
{
	if (shm_opt_u32(s, min, max, out) != 0) {
		fprintf(stderr, "shmex-matcher: --%s: expected a number in %u..%u, got \"%s\"\n",
			opt, min, max, s);
		return false;
	}
	return true;
}

static bool parse_stp(const char *s, uint32_t *out)
{
	static const char *const names[] = {"none", "cancel-newest", "cancel-oldest",
					    "cancel-both"};
	for (uint32_t i = 0; i < 4; i++) {
		if (!strcmp(s, names[i])) {
			*out = i;
			return true;
		}
	}
	fprintf(stderr, "shmex-matcher: --stp: expected none, cancel-newest, "
			"cancel-oldest or cancel-both, got \"%s\"\n", s);
	return false;
}

enum {
	O_INSTANCE = 256, O_SHARD, O_ORDERS, O_LEVELS, O_FILLS, O_SYMBOLS,
	O_POSITIONS, O_READERS, O_STP, O_BATCH, O_SPIN, O_IDLE, O_DRAIN,
	O_VERBOSE, O_QUIET, O_VERSION,
};

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"instance", required_argument, NULL, O_INSTANCE},
		{"shard", required_argument, NULL, O_SHARD},
		{"orders", required_argument, NULL, O_ORDERS},
		{"levels", required_argument, NULL, O_LEVELS},
		{"fills", required_argument, NULL, O_FILLS},
		{"symbols", required_argument, NULL, O_SYMBOLS},
		{"positions", required_argument, NULL, O_POSITIONS},
		{"readers", required_argument, NULL, O_READERS},
		{"stp", required_argument, NULL, O_STP},
		{"batch", required_argument, NULL, O_BATCH},
		{"spin-us", required_argument, NULL, O_SPIN},
		{"idle-ms", required_argument, NULL, O_IDLE},
		{"drain-ms", required_argument, NULL, O_DRAIN},
		{"verbose", no_argument, NULL, O_VERBOSE},
		{"quiet", no_argument, NULL, O_QUIET},
		{"help", no_argument, NULL, 'h'},
		{"version", no_argument, NULL, O_VERSION},
		{NULL, 0, NULL, 0},
	};
	struct eng_matcher_cfg cfg;
	memset(&cfg, 0, sizeof(cfg));
	bool have_shard = false, have_spin = false, quiet = false, ok = true;
	uint32_t spin_us = 0;
	int c;
	while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (c) {
		case O_INSTANCE:
			cfg.instance = optarg;
			break;
		case O_SHARD:
			ok = parse_u32("shard", optarg, 0, 1000000, &cfg.shard);
			have_shard = true;
			break;
		case O_ORDERS:
			ok = parse_u32("orders", optarg, 1, SHM_BOOK_CAP_MAX, &cfg.orders);
			break;
		case O_LEVELS:
			ok = parse_u32("levels", optarg, 1, SHM_BOOK_CAP_MAX, &cfg.levels);
			break;
		case O_FILLS:
			ok = parse_u32("fills", optarg, 1, SHM_BOOK_CAP_MAX, &cfg.fills);
			break;
		case O_SYMBOLS:
			ok = parse_u32("symbols", optarg, 1, 1u << 20, &cfg.symbols);
			break;
		case O_POSITIONS:
			ok = parse_u32("positions", optarg, 1, 1u << 30, &cfg.positions);
			break;
		case O_READERS:
			ok = parse_u32("readers", optarg, 1, SHM_READERS_MAX_SLOTS, &cfg.readers);
			break;
		case O_STP:
			ok = parse_stp(optarg, &cfg.stp_mode);
			break;
		case O_BATCH:
			ok = parse_u32("batch", optarg, 1, ENG_MATCHER_BATCH_MAX, &cfg.batch);
			break;
		case O_SPIN:
			ok = parse_u32("spin-us", optarg, 0, 1000000, &spin_us);
			have_spin = true;
			break;
		case O_IDLE:
			ok = parse_u32("idle-ms", optarg, 1, 60000, &cfg.idle_ms);
			break;
		case O_DRAIN:
			ok = parse_u32("drain-ms", optarg, 1, 600000, &cfg.drain_ms);
			break;
		case O_VERBOSE:
			cfg.verbose = true;
			break;
		case O_QUIET:
			quiet = true;
			break;
		case 'h':
			usage(stdout);
			return 0;
		case O_VERSION:
			shm_opt_version(stdout, "shmex-matcher (shmex)");
			return 0;
		default:
			usage(stderr);
			return 2;
		}
		if (!ok)
			return 2;
	}
	if (optind < argc) {
		fprintf(stderr, "shmex-matcher: unexpected argument \"%s\"\n", argv[optind]);
		usage(stderr);
		return 2;
	}
	if (!cfg.instance || !have_shard) {
		fprintf(stderr, "shmex-matcher: --instance and --shard are required\n");
		usage(stderr);
		return 2;
	}
	/* 0 means "default" to the library; --spin-us 0 means "do not spin". */
	if (have_spin)
		cfg.spin_ns = spin_us ? spin_us * 1000u : 1u;

	/* Handlers before the regions exist, so a SIGTERM during startup is
	 * not fatal; no SA_RESTART, so the futex sleep returns EINTR. */
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);

	char err[512];
	struct eng_matcher *m;
	int rc = eng_matcher_open(&m, &cfg, err, sizeof(err));
	if (rc) {
		fprintf(stderr, "shmex-matcher: shard %u of %s: %s\n", cfg.shard,
			cfg.instance, err[0] ? err : shmex_strerror(rc));
		return 1;
	}
	sigset_t block, old;
	sigemptyset(&block);
	sigaddset(&block, SIGTERM);
	sigaddset(&block, SIGINT);
	sigprocmask(SIG_BLOCK, &block, &old);
	the_matcher = m;
	if (load_relaxed(&early_stop))
		eng_matcher_stop(m); /* SIGTERM during startup: stop at once */
	sigprocmask(SIG_SETMASK, &old, NULL);

	rc = eng_matcher_run(m);
	struct eng_matcher_stats st;
	eng_matcher_get_stats(m, &st);
	if (!quiet)
		fprintf(stderr, "shmex-matcher[%u]: stopped: %" PRIu64 " requests, %" PRIu64
			" rejected, %" PRIu64 " orders, %" PRIu64 " fills, %" PRIu64
			" sleeps, %" PRIu64 " replies dropped, %" PRIu64 " internal errors\n",
			cfg.shard, st.requests, st.rejects, st.orders, st.fills, st.sleeps,
			st.replies_dropped, st.internal);
	sigprocmask(SIG_BLOCK, &block, NULL);
	the_matcher = NULL;
	eng_matcher_close(m);
	if (rc) {
		fprintf(stderr, "shmex-matcher: shard %u of %s: %s\n", cfg.shard,
			cfg.instance, shmex_strerror(rc));
		return 1;
	}
	return 0;
}
