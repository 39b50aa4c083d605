/*
 * gw_listen: listening sockets (contract in gw_listen.h).
 */
#include "gateway/gw_listen.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int gw_listen_open(const char *bind_addr, int port, bool reuseport, int backlog, int *fd,
		   int *bound_port)
{
	struct sockaddr_in sa = {.sin_family = AF_INET,
				 .sin_port = htons((uint16_t)port)};
	if (!bind_addr || !strcmp(bind_addr, "localhost"))
		bind_addr = "127.0.0.1";
	if (port < 0 || port > 65535 || inet_pton(AF_INET, bind_addr, &sa.sin_addr) != 1)
		return -EINVAL;
	int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (s < 0)
		return -errno;
	int one = 1;
	int rc = 0;
	if (setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
	    (reuseport &&
	     setsockopt(s, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0) ||
	    bind(s, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
	    listen(s, backlog > 0 ? backlog : 1024) != 0) {
		rc = -errno;
		goto out_close;
	}
	socklen_t sl = sizeof(sa);
	if (getsockname(s, (struct sockaddr *)&sa, &sl) != 0) {
		rc = -errno;
		goto out_close;
	}
	*fd = s;
	*bound_port = ntohs(sa.sin_port);
	return 0;
out_close:
	close(s);
	return rc;
}
