/*
 * shmex-gateway: one gateway process.  Accepts ECE 568 clients over TCP,
 * executes their requests through the shards' rings (gw_exec) and answers
 * queries from the books in shared memory.
 *
 * Normally started by `shmex`, which passes the listening socket it opened
 * (--listen-fd: every gateway shares one accept queue, and a gateway that
 * restarts loses no queued connection); standalone it binds a port itself
 * with SO_REUSEPORT (--port), so several gateways may share a port.
 * Everything else (connection cap, request limits, deadlines, spin,
 * framing, logging) is the instance's settings, read from its control
 * region (shm_settings.h).
 *
 * Signals: SIGTERM/SIGINT start the drain (stop accepting, finish the
 * requests that are executing, close), then exit 0.  They are read from a
 * signalfd in the event loop, so no handler runs at an arbitrary point.
 * The supervisor sets PR_SET_PDEATHSIG before exec, so a gateway also
 * drains and exits when its supervisor dies.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "gateway/gw_listen.h"
#include "gateway/gw_frame.h"
#include "gateway/gw_exec.h"
#include "gateway/gw_server.h"
#include "gateway/gw_xml.h"
#include "shm/shm_error.h"
#include "shm/shm_instance.h"
#include "shm/shm_opt.h"
#include "shm/shm_region.h"

struct gw_main {
	struct gw_server *srv;
	int sfd;
	uint32_t id;
	bool quiet;
};

static void on_signal(void *arg)
{
	struct gw_main *m = arg;
	struct signalfd_siginfo si;
	while (read(m->sfd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
		if (!m->quiet)
			fprintf(stderr, "shmex-gateway %u: %s, draining\n", m->id,
				strsignal((int)si.ssi_signo));
		gw_server_stop(m->srv);
	}
}

int main(int argc, char **argv)
{
	const char *instance = NULL, *bind_addr = "127.0.0.1";
	uint64_t id = 0, port = 0, listen_fd = 0;
	bool have_fd = false, have_port = false;
	const struct shm_opt opts[] = {
		{.name = "instance",
		 .type = SHM_OPT_INSTANCE,
		 .arg = "NAME",
		 .dst = &instance,
		 .required = true,
		 .help = "exchange instance to attach to"},
		{.name = "id",
		 .type = SHM_OPT_NUM,
		 .arg = "G",
		 .dst = &id,
		 .max = SHM_INSTANCE_GATEWAYS_MAX - 1,
		 .required = true,
		 .help = "this gateway's number"},
		{.name = "listen-fd",
		 .type = SHM_OPT_NUM,
		 .arg = "FD",
		 .dst = &listen_fd,
		 .max = 1 << 20,
		 .given = &have_fd,
		 .help = "serve this inherited listening socket"},
		{.name = "port",
		 .type = SHM_OPT_NUM,
		 .arg = "P",
		 .dst = &port,
		 .max = 65535,
		 .given = &have_port,
		 .help = "or bind port P itself (SO_REUSEPORT)"},
		{.name = "bind",
		 .type = SHM_OPT_STR,
		 .arg = "ADDR",
		 .dst = &bind_addr,
		 .show_default = true,
		 .help = "address for --port"},
	};
	const struct shm_opt_prog prog = {
		.name = "shmex-gateway",
		.synopsis = "--instance NAME --id G (--listen-fd FD | --port P)",
		.about =
			"One gateway of a running shmex exchange (normally started by\n"
			"shmex).  Its limits are the instance's settings (shmex --help).",
		.opts = opts,
		.nopts = sizeof(opts) / sizeof(opts[0]),
	};
	enum shm_opt_result pr = shm_opt_parse(&prog, argc, argv, NULL);
	if (pr != SHM_OPT_RUN)
		return pr == SHM_OPT_EXIT ? 0 : 2;
	if (have_fd == have_port)
		return shm_opt_usage_error(&prog, "give exactly one of --listen-fd "
						  "and --port");

	struct shmex_error err = {0};
	struct gw_exec *route;
	int rc = gw_exec_open(&route, instance, (uint32_t)id, &err);
	if (rc) {
		fprintf(stderr, "shmex-gateway %u: %s\n", (unsigned)id,
			shmex_error_msg(&err, rc));
		return 1;
	}
	const struct shm_settings *st = gw_exec_settings(route);
	bool quiet = st->quiet != 0;
	struct gw_server_cfg scfg = {
		.max_conns = (uint32_t)st->max_conns,
		.max_request = (size_t)st->max_request,
		.deadline_ms = (uint32_t)st->deadline_ms,
		.drain_ms = (uint32_t)st->drain_ms,
		.max_unsent = (size_t)st->max_unsent,
		.idle_ms = st->client_idle_ms ? (uint32_t)st->client_idle_ms
					      : GW_SERVER_IDLE_NEVER,
		.max_per_peer = (uint32_t)st->max_conns_per_peer,
		.frame_replies = st->frame_replies != 0,
	};

	signal(SIGPIPE, SIG_IGN);
	sigset_t sigs;
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	sigprocmask(SIG_BLOCK, &sigs, NULL);
	struct gw_main m = {.id = (uint32_t)id, .quiet = quiet};
	m.sfd = signalfd(-1, &sigs, SFD_NONBLOCK | SFD_CLOEXEC);
	if (m.sfd < 0) {
		perror("shmex-gateway: signalfd");
		return 1;
	}

	int exclusive = 1;
	int lfd = (int)listen_fd;
	if (have_fd) {
		int acc = 0;
		socklen_t al = sizeof(acc);
		if (getsockopt(lfd, SOL_SOCKET, SO_ACCEPTCONN, &acc, &al) != 0 || !acc) {
			fprintf(stderr,
				"shmex-gateway %u: fd %d is not a listening "
				"socket\n",
				(unsigned)id, lfd);
			gw_exec_close(route);
			return 1;
		}
	} else {
		int bound;
		rc = gw_listen_open(bind_addr, (int)port, true, 1024, &lfd, &bound);
		if (rc) {
			fprintf(stderr, "shmex-gateway %u: listen on %s:%u: %s\n",
				(unsigned)id, bind_addr, (unsigned)port, strerror(-rc));
			gw_exec_close(route);
			return 1;
		}
		exclusive = 0;
	}

	scfg.listen_fd = lfd;
	scfg.exclusive = exclusive;
	struct gw_server_ops ops = {
		.ctx = route,
		.request = gw_exec_request,
		.abort = gw_exec_abort,
		.poll = gw_exec_poll,
		.drain = gw_exec_drain,
	};
	rc = gw_server_create(&m.srv, &scfg, &ops);
	if (rc) {
		fprintf(stderr, "shmex-gateway %u: event loop: %s\n", m.id,
			strerror(-rc));
		gw_exec_close(route);
		return 1;
	}
	gw_exec_bind(route, m.srv);
	if (gw_server_watch(m.srv, gw_exec_wake_fd(route), gw_exec_wake, route) ||
	    gw_server_watch(m.srv, m.sfd, on_signal, &m)) {
		fprintf(stderr, "shmex-gateway %u: epoll setup failed\n", m.id);
		gw_server_destroy(m.srv);
		gw_exec_close(route);
		return 1;
	}
	if (!quiet)
		fprintf(stderr, "shmex-gateway %u: serving instance %s (pid %d)\n", m.id,
			instance, (int)getpid());
	rc = gw_server_run(m.srv);
	struct gw_server_stats ss;
	struct gw_exec_stats rs;
	gw_server_get_stats(m.srv, &ss);
	gw_exec_get_stats(route, &rs);
	gw_server_destroy(m.srv);
	gw_exec_close(route);
	close(lfd);
	close(m.sfd);
	if (!quiet)
		fprintf(stderr,
			"shmex-gateway %u: stopped: %llu connections, %llu "
			"requests, %llu ring messages, %llu book reads (%llu "
			"retried), %llu busy, %llu stale replies, %llu bad "
			"replies, %llu outcome unknown (%llu late), %llu slices, "
			"%llu held for their client, %llu drained, %llu answered "
			"stopping, %llu idle closed, %llu refused (%llu per "
			"address), %llu bytes unsent at most\n",
			m.id, (unsigned long long)ss.accepted,
			(unsigned long long)rs.requests, (unsigned long long)rs.sent,
			(unsigned long long)rs.queries, (unsigned long long)rs.retries,
			(unsigned long long)rs.busy, (unsigned long long)rs.stale,
			(unsigned long long)rs.bad_replies,
			(unsigned long long)rs.unknown, (unsigned long long)rs.late,
			(unsigned long long)rs.slices, (unsigned long long)rs.held,
			(unsigned long long)rs.drained,
			(unsigned long long)ss.stop_replies,
			(unsigned long long)ss.idle_closed,
			(unsigned long long)(ss.refused + ss.refused_peer),
			(unsigned long long)ss.refused_peer,
			(unsigned long long)ss.unsent_peak);
	if (rc) {
		fprintf(stderr, "shmex-gateway %u: event loop failed: %s\n", m.id,
			strerror(-rc));
		return 1;
	}
	return 0;
}
