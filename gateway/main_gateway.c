/*
 * shmex-gateway: one gateway process.  Accepts ECE 568 clients over TCP,
 * executes their requests through the shards' rings (gw_route) and answers
 * queries from the books in shared memory.
 *
 * Normally started by `shmex`, which passes the listening socket it opened
 * (--listen-fd: every gateway shares one accept queue, and a gateway that
 * restarts loses no queued connection); standalone it binds a port itself
 * with SO_REUSEPORT (--port), so several gateways may share a port.
 *
 * Signals: SIGTERM/SIGINT start the drain (stop accepting, finish the
 * requests that are executing, close), then exit 0.  They are read from a
 * signalfd in the event loop, so no handler runs at an arbitrary point.
 * The supervisor sets PR_SET_PDEATHSIG before exec, so a gateway also
 * drains and exits when its supervisor dies.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "gateway/gw_frame.h"
#include "gateway/gw_route.h"
#include "gateway/gw_server.h"
#include "gateway/gw_xml.h"
#include "shm/shm_error.h"
#include "shm/shm_instance.h"
#include "shm/shm_opt.h"
#include "shm/shm_region.h"

/* Default poll-and-yield time of the loop while replies are awaited
 * (gw_route_poll): long enough to cover a matcher's turnaround under load,
 * short enough that a quiet gateway goes to sleep almost at once. */
#define GW_SPIN_US_DEFAULT 50u

struct gw_main {
	struct gw_server *srv;
	int sfd;
	uint32_t id;
	bool quiet;
};

static void usage(FILE *f)
{
	fprintf(f,
		"usage: shmex-gateway --instance NAME --id G (--listen-fd FD | --port P)\n"
		"                     [options]\n"
		"One gateway of a running shmex exchange (normally started by shmex).\n"
		"\n"
		"  --instance NAME      exchange instance to attach to (required)\n"
		"  --id G               this gateway's number, 0..gateways-1 (required)\n"
		"  --listen-fd FD       serve this inherited listening socket\n"
		"  --port P             or bind port P itself (SO_REUSEPORT)\n"
		"  --bind ADDR          address for --port (default 127.0.0.1)\n"
		"  --max-conns N        connections served at once (default %u)\n"
		"  --max-request BYTES  largest request (default %zu)\n"
		"  --deadline-ms MS     time for a started request to arrive, and for\n"
		"                       pending replies to make progress (default %u)\n"
		"  --busy-ms MS         how long a full ring may delay an item before\n"
		"                       it is answered \"Exchange busy\" (default %u)\n"
		"  --drain-ms MS        time granted to executing requests on stop\n"
		"                       (default %u)\n"
		"  --max-elements N     elements per request (default %u)\n"
		"  --frame-replies      put a length line in front of every reply\n"
		"  --spin-us US         while replies are awaited, poll the reply rings\n"
		"                       (yielding the CPU between polls) for this long\n"
		"                       after the last progress before sleeping\n"
		"                       (default %u; 0: sleep at once)\n"
		"  --quiet              no log lines on start and stop\n"
		"  --help, --version\n",
		GW_SERVER_MAX_CONNS_DEFAULT, (size_t)GW_FRAME_MAX_DEFAULT,
		GW_SERVER_DEADLINE_MS_DEFAULT, GW_ROUTE_BUSY_MS_DEFAULT,
		GW_SERVER_DRAIN_MS_DEFAULT, GW_XML_MAX_ELEMS_DEFAULT,
		GW_SPIN_US_DEFAULT);
}

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

enum {
	OPT_INSTANCE = 256, OPT_ID, OPT_LISTEN_FD, OPT_PORT, OPT_BIND,
	OPT_MAX_CONNS, OPT_MAX_REQUEST, OPT_DEADLINE, OPT_BUSY, OPT_DRAIN,
	OPT_MAX_ELEMS, OPT_FRAME, OPT_SPIN, OPT_QUIET, OPT_HELP, OPT_VERSION,
};

static const struct option opts[] = {
	{"instance", required_argument, NULL, OPT_INSTANCE},
	{"id", required_argument, NULL, OPT_ID},
	{"listen-fd", required_argument, NULL, OPT_LISTEN_FD},
	{"port", required_argument, NULL, OPT_PORT},
	{"bind", required_argument, NULL, OPT_BIND},
	{"max-conns", required_argument, NULL, OPT_MAX_CONNS},
	{"max-request", required_argument, NULL, OPT_MAX_REQUEST},
	{"deadline-ms", required_argument, NULL, OPT_DEADLINE},
	{"busy-ms", required_argument, NULL, OPT_BUSY},
	{"drain-ms", required_argument, NULL, OPT_DRAIN},
	{"max-elements", required_argument, NULL, OPT_MAX_ELEMS},
	{"frame-replies", no_argument, NULL, OPT_FRAME},
	{"spin-us", required_argument, NULL, OPT_SPIN},
	{"quiet", no_argument, NULL, OPT_QUIET},
	{"help", no_argument, NULL, OPT_HELP},
	{"version", no_argument, NULL, OPT_VERSION},
	{NULL, 0, NULL, 0},
};

static int bad_value(const char *opt, const char *val)
{
	fprintf(stderr, "shmex-gateway: invalid value '%s' for --%s\n", val, opt);
	usage(stderr);
	return 2;
}

int main(int argc, char **argv)
{
	const char *instance = NULL, *bind_addr = NULL;
	uint32_t id = UINT32_MAX, port = UINT32_MAX, spin_us = GW_SPIN_US_DEFAULT;
	int listen_fd = -1;
	bool quiet = false;
	struct gw_server_cfg scfg = {0};
	struct gw_route_cfg rcfg = {0};
	struct gw_xml_limits xml;
	gw_xml_limits_default(&xml);
	uint64_t v64;
	uint32_t v;
	int c;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case OPT_INSTANCE:
			instance = optarg;
			break;
		case OPT_ID:
			if (shm_opt_u32(optarg, 0, SHM_INSTANCE_GATEWAYS_MAX - 1, &id))
				return bad_value("id", optarg);
			break;
		case OPT_LISTEN_FD:
			if (shm_opt_u32(optarg, 0, 1 << 20, &v))
				return bad_value("listen-fd", optarg);
			listen_fd = (int)v;
			break;
		case OPT_PORT:
			if (shm_opt_u32(optarg, 0, 65535, &port))
				return bad_value("port", optarg);
			break;
		case OPT_BIND:
			bind_addr = optarg;
			break;
		case OPT_MAX_CONNS:
			if (shm_opt_u32(optarg, 1, GW_SERVER_MAX_CONNS_LIMIT, &scfg.max_conns))
				return bad_value("max-conns", optarg);
			break;
		case OPT_MAX_REQUEST:
			if (shm_opt_u64(optarg, 1, GW_FRAME_MAX_LIMIT, &v64))
				return bad_value("max-request", optarg);
			scfg.max_request = (size_t)v64;
			break;
		case OPT_DEADLINE:
			if (shm_opt_u32(optarg, 1, 3600000, &scfg.deadline_ms))
				return bad_value("deadline-ms", optarg);
			break;
		case OPT_BUSY:
			if (shm_opt_u32(optarg, 1, 3600000, &rcfg.busy_ms))
				return bad_value("busy-ms", optarg);
			break;
		case OPT_DRAIN:
			if (shm_opt_u32(optarg, 1, 3600000, &scfg.drain_ms))
				return bad_value("drain-ms", optarg);
			break;
		case OPT_MAX_ELEMS:
			if (shm_opt_u32(optarg, 2, 100000000, &xml.max_elems))
				return bad_value("max-elements", optarg);
			break;
		case OPT_FRAME:
			scfg.frame_replies = true;
			break;
		case OPT_SPIN:
			if (shm_opt_u32(optarg, 0, 1000000, &spin_us))
				return bad_value("spin-us", optarg);
			break;
		case OPT_QUIET:
			quiet = true;
			break;
		case OPT_HELP:
			usage(stdout);
			return 0;
		case OPT_VERSION:
			shm_opt_version(stdout, "shmex-gateway (shmex)");
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind < argc || !instance || id == UINT32_MAX ||
	    (listen_fd < 0) == (port == UINT32_MAX)) {
		fprintf(stderr, "shmex-gateway: need --instance, --id and exactly "
				"one of --listen-fd and --port\n");
		usage(stderr);
		return 2;
	}

	signal(SIGPIPE, SIG_IGN);
	sigset_t sigs;
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	sigprocmask(SIG_BLOCK, &sigs, NULL);
	struct gw_main m = {.id = id, .quiet = quiet};
	m.sfd = signalfd(-1, &sigs, SFD_NONBLOCK | SFD_CLOEXEC);
	if (m.sfd < 0) {
		perror("shmex-gateway: signalfd");
		return 1;
	}

	int exclusive = 1;
	if (listen_fd >= 0) {
		int acc = 0;
		socklen_t al = sizeof(acc);
		if (getsockopt(listen_fd, SOL_SOCKET, SO_ACCEPTCONN, &acc, &al) != 0 ||
		    !acc) {
			fprintf(stderr, "shmex-gateway %u: fd %d is not a listening "
					"socket\n", id, listen_fd);
			return 1;
		}
	} else {
		int bound;
		int rc = gw_server_listen(bind_addr, (int)port, true, 1024,
					  &listen_fd, &bound);
		if (rc) {
			fprintf(stderr, "shmex-gateway %u: listen on %s:%u: %s\n", id,
				bind_addr ? bind_addr : "127.0.0.1", port,
				strerror(-rc));
			return 1;
		}
		exclusive = 0;
	}

	char err[256];
	struct gw_route *route;
	rcfg.instance = instance;
	rcfg.gateway = id;
	rcfg.max_conns = scfg.max_conns;
	rcfg.spin_us = spin_us;
	rcfg.xml = &xml;
	int rc = gw_route_open(&route, &rcfg, err, sizeof(err));
	if (rc) {
		fprintf(stderr, "shmex-gateway %u: %s\n", id, err);
		return 1;
	}
	scfg.listen_fd = listen_fd;
	scfg.exclusive = exclusive;
	struct gw_server_ops ops = {
		.ctx = route,
		.request = gw_route_request,
		.abort = gw_route_abort,
		.poll = gw_route_poll,
	};
	rc = gw_server_create(&m.srv, &scfg, &ops);
	if (rc) {
		fprintf(stderr, "shmex-gateway %u: event loop: %s\n", id, strerror(-rc));
		gw_route_close(route);
		return 1;
	}
	gw_route_bind(route, m.srv);
	if (gw_server_watch(m.srv, gw_route_wake_fd(route), gw_route_wake, route) ||
	    gw_server_watch(m.srv, m.sfd, on_signal, &m)) {
		fprintf(stderr, "shmex-gateway %u: epoll setup failed\n", id);
		gw_server_destroy(m.srv);
		gw_route_close(route);
		return 1;
	}
	if (!quiet)
		fprintf(stderr, "shmex-gateway %u: serving instance %s (pid %d)\n",
			id, instance, (int)getpid());
	rc = gw_server_run(m.srv);
	struct gw_server_stats ss;
	struct gw_route_stats rs;
	gw_server_get_stats(m.srv, &ss);
	gw_route_get_stats(route, &rs);
	gw_server_destroy(m.srv);
	gw_route_close(route);
	close(listen_fd);
	close(m.sfd);
	if (!quiet)
		fprintf(stderr, "shmex-gateway %u: stopped: %llu connections, %llu "
				"requests, %llu ring messages, %llu book reads (%llu "
				"retried), %llu busy, %llu stale replies\n", id,
			(unsigned long long)ss.accepted,
			(unsigned long long)rs.requests, (unsigned long long)rs.sent,
			(unsigned long long)rs.queries, (unsigned long long)rs.retries,
			(unsigned long long)rs.busy, (unsigned long long)rs.stale);
	if (rc) {
		fprintf(stderr, "shmex-gateway %u: event loop failed: %s\n", id,
			strerror(-rc));
		return 1;
	}
	return 0;
}
