/*
 * shmex-fix: the FIX 4.4 order-entry gateway of a running exchange
 * (fx_app.h).  Normally started by `shmex` (--fix-port), which opens the
 * listening socket and passes it (--listen-fd) with the gateway index
 * that follows the XML gateways; standalone it binds a port itself.
 *
 * Signals: SIGTERM/SIGINT log every session out, then exit 0.
 */
#include <stdio.h>
#include <string.h>

#include "gateway/fix/fx_app.h"
#include "gateway/gw_listen.h"
#include "shm/shm_instance.h"
#include "shm/shm_opt.h"

int main(int argc, char **argv)
{
	const char *instance = NULL, *bind_addr = "127.0.0.1", *comp_id = "SHMEX";
	const char *sessions = NULL;
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
		 .help = "the gateway number whose rings it uses"},
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
		 .help = "or bind port P itself"},
		{.name = "bind",
		 .type = SHM_OPT_STR,
		 .arg = "ADDR",
		 .dst = &bind_addr,
		 .show_default = true,
		 .help = "address for --port"},
		{.name = "comp-id",
		 .type = SHM_OPT_STR,
		 .arg = "ID",
		 .dst = &comp_id,
		 .show_default = true,
		 .help = "our CompID (the clients' TargetCompID)"},
		{.name = "sessions",
		 .type = SHM_OPT_STR,
		 .arg = "FILE",
		 .dst = &sessions,
		 .help = "accept only the SenderCompIDs listed, for their accounts"},
	};
	const struct shm_opt_prog prog = {
		.name = "shmex-fix",
		.synopsis = "--instance NAME --id G (--listen-fd FD | --port P)",
		.about = "The FIX 4.4 order-entry gateway of a running shmex exchange\n"
			 "(normally started by shmex; see docs/fix.md).",
		.opts = opts,
		.nopts = sizeof(opts) / sizeof(opts[0]),
	};
	enum shm_opt_result pr = shm_opt_parse(&prog, argc, argv, NULL);
	if (pr != SHM_OPT_RUN)
		return pr == SHM_OPT_EXIT ? 0 : 2;
	if (have_fd == have_port)
		return shm_opt_usage_error(&prog, "give exactly one of --listen-fd "
						  "and --port");
	int lfd = (int)listen_fd;
	if (have_port) {
		int bound;
		int rc = gw_listen_open(bind_addr, (int)port, false, 1024, &lfd, &bound);
		if (rc) {
			fprintf(stderr, "shmex-fix: listen on %s:%u: %s\n", bind_addr,
				(unsigned)port, strerror(-rc));
			return 1;
		}
		fprintf(stderr, "shmex-fix: listening on %s:%d\n", bind_addr, bound);
	}
	struct fx_app_cfg cfg = {
		.instance = instance,
		.gateway = (uint32_t)id,
		.listen_fd = lfd,
		.comp_id = comp_id,
		.sessions = sessions,
	};
	return fx_app_run(&cfg);
}
