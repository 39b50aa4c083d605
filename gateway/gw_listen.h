/*
 * gw_listen: opens the TCP listening sockets of the exchange.
 *
 * Its own module because two processes use it: the supervisor opens the
 * exchange's sockets before anything else starts (a port conflict fails
 * first, and connections wait in the accept queue while a gateway
 * restarts), and a gateway started by hand opens its own.  The
 * supervisor links this module and shm/ only (docs/architecture.md).
 *
 * Stateless; safe from any thread.
 */
#ifndef SHMEX_GW_LISTEN_H
#define SHMEX_GW_LISTEN_H

#include <stdbool.h>

/*
 * Opens a listening TCP socket on bind_addr (IPv4 dotted quad or
 * "localhost"; NULL means 127.0.0.1) and port (0: the kernel picks one),
 * with SO_REUSEADDR, and SO_REUSEPORT when reuseport is set (several
 * gateway processes that each bind the same port).  *fd gets the socket
 * (close-on-exec, blocking), *bound_port the port it got.  Returns 0 or
 * -errno (-EINVAL for an unparsable address).
 */
int gw_listen_open(const char *bind_addr, int port, bool reuseport, int backlog, int *fd,
		   int *bound_port) __attribute__((warn_unused_result));

#endif
