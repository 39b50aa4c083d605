/*
 * fx_app: the FIX 4.4 order-entry process (shmex-fix), behind a C
 * interface.  The session layer is QuickFIX's (Session, FileStore,
 * DataDictionary from the FIX44.xml built into the program); the sockets,
 * the event loop and the application layer (FIX messages <-> ring
 * requests, execution reports for both sides of every fill) are here, in
 * fx_app.cpp.  docs/fix.md is the user's description: supported messages,
 * tags, session behaviour.
 */
#ifndef SHMEX_FX_APP_H
#define SHMEX_FX_APP_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

struct fx_app_cfg {
	const char *instance;
	uint32_t gateway;     /* our gateway index: rings (gateway, shard) */
	int listen_fd;        /* an inherited listening socket */
	const char *comp_id;  /* our SenderCompID (the clients' TargetCompID) */
	const char *sessions; /* NULL, or the --fix-sessions file */
};

/* Runs until SIGTERM/SIGINT (drains, logs out every session) or a fatal
 * error.  Returns the process exit status. */
int fx_app_run(const struct fx_app_cfg *cfg);

#ifdef __cplusplus
}
#endif

#endif
