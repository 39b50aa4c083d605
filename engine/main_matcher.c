/*
 * shmex-matcher: the matcher process of one symbol shard.
 *
 *   shmex-matcher --instance NAME --shard K
 *
 * The supervisor (shmex) creates the instance's control, rings and
 * accounts regions, then starts one shmex-matcher per shard with exactly
 * `--instance NAME --shard K` and waits until it is ready
 * (shm_instance_matcher_ready; docs/matcher.md).  Every other setting
 * comes from the control region.
 *
 * SIGTERM or SIGINT (or the instance's stopping flag): drain the rings,
 * answer everything, exit 0.  Exit 1 when startup fails (the message names
 * the object and the reason), 2 on a usage error, 3 when recovery of the
 * shard is impossible in this instance (SHMEX_ERECOVERY: the supervisor
 * starts the whole exchange over from the journals), 4 when the journal
 * cannot be written (SHMEX_EJOURNAL: nothing after the failure was
 * acknowledged; docs/durability.md).
 */
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/eng_matcher.h"
#include "shm/shm_error.h"
#include "shm/shm_opt.h"

#include "shm/shm_atomic.h"

static int exit_code(int rc)
{
	if (rc == SHMEX_ERECOVERY)
		return 3;
	if (rc == SHMEX_EJOURNAL)
		return 4;
	return 1;
}

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

int main(int argc, char **argv)
{
	const char *instance = NULL;
	uint64_t shard = 0;
	const struct shm_opt opts[] = {
		{.name = "instance",
		 .type = SHM_OPT_INSTANCE,
		 .arg = "NAME",
		 .dst = &instance,
		 .required = true,
		 .help = "instance whose control, rings and accounts regions exist"},
		{.name = "shard",
		 .type = SHM_OPT_NUM,
		 .arg = "K",
		 .dst = &shard,
		 .max = SHM_INSTANCE_SHARDS_MAX - 1,
		 .required = true,
		 .help = "this matcher's shard"},
	};
	const struct shm_opt_prog prog = {
		.name = "shmex-matcher",
		.synopsis = "--instance NAME --shard K",
		.about =
			"Runs the matcher of shard K of a running shmex instance: creates the\n"
			"shard's book, positions and reader-table regions, then matches the\n"
			"orders the gateways put on its rings until SIGTERM.  Everything else\n"
			"(capacities, self-trade mode, loop tuning, logging) comes from the\n"
			"instance's settings, which its creator recorded (shmex --help).",
		.opts = opts,
		.nopts = sizeof(opts) / sizeof(opts[0]),
	};
	enum shm_opt_result pr = shm_opt_parse(&prog, argc, argv, NULL);
	if (pr != SHM_OPT_RUN)
		return pr == SHM_OPT_EXIT ? 0 : 2;

	/* Handlers before the regions exist, so a SIGTERM during startup is
	 * not fatal; no SA_RESTART, so the futex sleep returns EINTR. */
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	/* Past a file-size limit, write() fails with EFBIG and the journal
	 * reports it, instead of the signal killing us. */
	signal(SIGXFSZ, SIG_IGN);

	struct shmex_error err = {0};
	struct eng_matcher *m;
	int rc = eng_matcher_open(&m, instance, (uint32_t)shard, &err);
	if (rc) {
		fprintf(stderr, "shmex-matcher: shard %u of %s: %s\n", (unsigned)shard,
			instance, shmex_error_msg(&err, rc));
		return exit_code(rc);
	}
	bool quiet = eng_matcher_settings(m)->quiet != 0;
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
		fprintf(stderr,
			"shmex-matcher[%u]: stopped: %" PRIu64 " requests, %" PRIu64
			" rejected, %" PRIu64 " orders, %" PRIu64 " fills, %" PRIu64
			" sleeps, %" PRIu64 " replies dropped, %" PRIu64
			" internal errors\n",
			(unsigned)shard, st.requests, st.rejects, st.orders, st.fills,
			st.sleeps, st.replies_dropped, st.internal);
	sigprocmask(SIG_BLOCK, &block, NULL);
	the_matcher = NULL;
	eng_matcher_close(m);
	if (rc) {
		fprintf(stderr, "shmex-matcher: shard %u of %s: %s\n", (unsigned)shard,
			instance, shmex_strerror(rc));
		return exit_code(rc);
	}
	return 0;
}
