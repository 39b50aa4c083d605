/*
 * TCP client, exchange launcher and reply DOM for the end-to-end tests and
 * the e2e benchmark (see client.h).
 *
 * Everything blocks with a deadline (poll), so a broken exchange fails a
 * test with a timeout instead of hanging it.
 */
#include "tests/client.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <expat.h>

#define CLIENT_MAX_BUF (64u << 20)

static long long now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int left_ms(long long deadline)
{
	long long l = deadline - now_ms();
	return l < 0 ? 0 : (int)l;
}

int client_connect(struct client *c, const char *host, int port, int timeout_ms)
{
	memset(c, 0, sizeof(*c));
	c->fd = -1;
	struct sockaddr_in sa = {.sin_family = AF_INET,
				 .sin_port = htons((uint16_t)port)};
	if (inet_pton(AF_INET, host, &sa.sin_addr) != 1)
		return -EINVAL;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
		if (errno != EINPROGRESS) {
			int rc = -errno;
			close(fd);
			return rc;
		}
		struct pollfd p = {.fd = fd, .events = POLLOUT};
		int n = poll(&p, 1, timeout_ms);
		if (n <= 0) {
			close(fd);
			return n == 0 ? -ETIMEDOUT : -errno;
		}
		int err = 0;
		socklen_t el = sizeof(err);
		getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el);
		if (err) {
			close(fd);
			return -err;
		}
	}
	c->fd = fd;
	return 0;
}

void client_close(struct client *c)
{
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	free(c->buf);
	free(c->rep);
	c->buf = c->rep = NULL;
	c->len = c->cap = c->rep_cap = 0;
}

int client_send_raw(struct client *c, const void *data, size_t len, int timeout_ms)
{
	long long deadline = now_ms() + timeout_ms;
	const char *p = data;
	while (len > 0) {
		ssize_t n = send(c->fd, p, len, MSG_NOSIGNAL);
		if (n > 0) {
			p += n;
			len -= (size_t)n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno != EAGAIN)
			return -errno;
		struct pollfd pf = {.fd = c->fd, .events = POLLOUT};
		int r = poll(&pf, 1, left_ms(deadline));
		if (r == 0)
			return -ETIMEDOUT;
		if (r < 0 && errno != EINTR)
			return -errno;
	}
	return 0;
}

int client_send(struct client *c, const char *xml, int timeout_ms)
{
	size_t n = strlen(xml);
	char head[32];
	int h = snprintf(head, sizeof(head), "%zu\n", n);
	char *msg = malloc(n + (size_t)h);
	if (!msg)
		return -ENOMEM;
	memcpy(msg, head, (size_t)h);
	memcpy(msg + h, xml, n);
	int rc = client_send_raw(c, msg, n + (size_t)h, timeout_ms);
	free(msg);
	return rc;
}

/* Reads more bytes; 1 read, 0 EOF, negative error. */
static int client_fill(struct client *c, long long deadline)
{
	if (c->cap - c->len < 4096) {
		size_t ncap = c->cap ? c->cap * 2 : 65536;
		if (ncap > CLIENT_MAX_BUF)
			return -EMSGSIZE;
		char *nb = realloc(c->buf, ncap + 1);
		if (!nb)
			return -ENOMEM;
		c->buf = nb;
		c->cap = ncap;
	}
	for (;;) {
		ssize_t n = recv(c->fd, c->buf + c->len, c->cap - c->len, 0);
		if (n > 0) {
			c->len += (size_t)n;
			return 1;
		}
		if (n == 0)
			return 0;
		if (errno == EINTR)
			continue;
		if (errno == ECONNRESET)
			return 0;
		if (errno != EAGAIN)
			return -errno;
		struct pollfd pf = {.fd = c->fd, .events = POLLIN};
		int r = poll(&pf, 1, left_ms(deadline));
		if (r == 0)
			return -ETIMEDOUT;
		if (r < 0 && errno != EINTR)
			return -errno;
	}
}

/* Length of the first complete reply in buf, or 0. */
static size_t reply_end(const struct client *c, size_t *skip)
{
	*skip = 0;
	if (c->framed) {
		const char *nl = memchr(c->buf, '\n', c->len);
		if (!nl)
			return 0;
		char *end;
		unsigned long long n = strtoull(c->buf, &end, 10);
		if (end == c->buf || (*end != '\n' && *end != '\r'))
			return (size_t)-1;
		size_t hl = (size_t)(nl - c->buf) + 1;
		if (c->len - hl < n)
			return 0;
		*skip = hl;
		return hl + n;
	}
	c->buf[c->len] = 0;
	const char *a = strstr(c->buf, "</results>");
	const char *b = strstr(c->buf, "<results/>");
	const char *e = NULL;
	size_t el = 0;
	if (a && (!b || a < b)) {
		e = a;
		el = strlen("</results>");
	} else if (b) {
		e = b;
		el = strlen("<results/>");
	}
	if (!e)
		return 0;
	size_t end = (size_t)(e - c->buf) + el;
	/* A newline after the root belongs to this reply. */
	if (end < c->len && c->buf[end] == '\n')
		end++;
	return end;
}

int client_recv(struct client *c, const char **reply, size_t *len, int timeout_ms)
{
	long long deadline = now_ms() + timeout_ms;
	for (;;) {
		if (c->len) {
			size_t skip;
			size_t end = reply_end(c, &skip);
			if (end == (size_t)-1)
				return -EPROTO;
			if (end) {
				size_t n = end - skip;
				if (n + 1 > c->rep_cap) {
					char *nr = realloc(c->rep, n + 1);
					if (!nr)
						return -ENOMEM;
					c->rep = nr;
					c->rep_cap = n + 1;
				}
				memcpy(c->rep, c->buf + skip, n);
				c->rep[n] = 0;
				memmove(c->buf, c->buf + end, c->len - end);
				c->len -= end;
				*reply = c->rep;
				*len = n;
				return 0;
			}
		}
		int r = client_fill(c, deadline);
		if (r == 0)
			return -ENOTCONN;
		if (r < 0)
			return r;
	}
}

int client_request(struct client *c, const char *xml, const char **reply, size_t *len,
		   int timeout_ms)
{
	int rc = client_send(c, xml, timeout_ms);
	if (rc)
		return rc;
	return client_recv(c, reply, len, timeout_ms);
}

int client_wait_closed(struct client *c, int timeout_ms)
{
	long long deadline = now_ms() + timeout_ms;
	char tmp[4096];
	for (;;) {
		ssize_t n = recv(c->fd, tmp, sizeof(tmp), 0);
		if (n == 0 || (n < 0 && errno == ECONNRESET))
			return 0;
		if (n > 0)
			continue;
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN)
			return 0;
		struct pollfd pf = {.fd = c->fd, .events = POLLIN};
		int r = poll(&pf, 1, left_ms(deadline));
		if (r == 0)
			return -ETIMEDOUT;
	}
}

/* ---- the exchange launcher ---- */

int exchange_start(struct exchange *x, const char *bin, const char *inst,
		   const char *const *extra, int timeout_ms)
{
	memset(x, 0, sizeof(*x));
	x->pid = -1;
	x->out_fd = -1;
	snprintf(x->instance, sizeof(x->instance), "%s", inst);
	int p[2];
	if (pipe2(p, O_CLOEXEC) != 0)
		return -1;
	const char *argv[64];
	int n = 0;
	argv[n++] = bin;
	argv[n++] = "--instance";
	argv[n++] = inst;
	argv[n++] = "--port";
	argv[n++] = "0";
	argv[n++] = "--bind";
	argv[n++] = "127.0.0.1";
	bool own_dir = false, fix = false;
	for (int i = 0; extra && extra[i] && n < 60; i++) {
		argv[n++] = extra[i];
		if (strncmp(extra[i], "--data-dir", 10) == 0 ||
		    strcmp(extra[i], "--no-journal") == 0)
			own_dir = true;
		if (strncmp(extra[i], "--fix", 5) == 0)
			fix = true;
	}
	/* FIX only for tests that ask for it (--fix-port ...): its default
	 * port is fixed, and tests run side by side. */
	if (!fix)
		argv[n++] = "--no-fix";
	/* run-tests.sh gives every run a scratch root for data directories,
	 * so no test writes shmex-data/ into the working directory. */
	char dd[PATH_MAX];
	const char *root = getenv("SHMEX_TEST_DATA");
	if (!own_dir && root && *root) {
		snprintf(dd, sizeof(dd), "%s/%s", root, inst);
		argv[n++] = "--data-dir";
		argv[n++] = dd;
	}
	argv[n] = NULL;
	pid_t pid = fork();
	if (pid < 0) {
		close(p[0]);
		close(p[1]);
		return -1;
	}
	if (pid == 0) {
		dup2(p[1], 1);
		execv(bin, (char *const *)argv);
		fprintf(stderr, "exec %s: %s\n", bin, strerror(errno));
		_exit(127);
	}
	close(p[1]);
	x->pid = pid;
	x->out_fd = p[0];
	long long deadline = now_ms() + timeout_ms;
	size_t got = 0;
	while (got < sizeof(x->line) - 1) {
		struct pollfd pf = {.fd = p[0], .events = POLLIN};
		int r = poll(&pf, 1, left_ms(deadline));
		if (r <= 0)
			break;
		ssize_t k = read(p[0], x->line + got, 1);
		if (k <= 0)
			break;
		if (x->line[got] == '\n')
			break;
		got++;
	}
	x->line[got] = 0;
	const char *colon = strrchr(x->line, ':');
	if (colon && strstr(x->line, "listening on"))
		x->port = atoi(colon + 1);
	const char *fixp = strstr(x->line, "FIX port ");
	if (fixp)
		x->fix_port = atoi(fixp + 9);
	if (x->port <= 0) {
		fprintf(stderr, "exchange_start: no listening line (got '%s')\n",
			x->line);
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
		close(p[0]);
		x->pid = -1;
		x->out_fd = -1;
		return -1;
	}
	return 0;
}

int exchange_stop(struct exchange *x, int timeout_ms)
{
	if (x->pid <= 0)
		return -1;
	kill(x->pid, SIGTERM);
	long long deadline = now_ms() + timeout_ms;
	int status = -1;
	for (;;) {
		pid_t r = waitpid(x->pid, &status, WNOHANG);
		if (r == x->pid)
			break;
		if (r < 0 && errno != EINTR) {
			status = -1;
			break;
		}
		if (now_ms() > deadline) {
			kill(x->pid, SIGKILL);
			waitpid(x->pid, NULL, 0);
			status = -1;
			break;
		}
		usleep(2000);
	}
	if (x->out_fd >= 0)
		close(x->out_fd);
	x->out_fd = -1;
	x->pid = -1;
	return status;
}

static pid_t proc_ppid(pid_t pid)
{
	char path[64], buf[512];
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	FILE *f = fopen(path, "re");
	if (!f)
		return -1;
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = 0;
	const char *rp = strrchr(buf, ')');
	if (!rp)
		return -1;
	char state;
	int ppid;
	if (sscanf(rp + 1, " %c %d", &state, &ppid) != 2)
		return -1;
	return state == 'Z' ? -1 : ppid;
}

bool test_pid_gone(pid_t pid)
{
	char path[64], buf[512];
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	FILE *f = fopen(path, "re");
	if (!f)
		return true;
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = 0;
	/* A zombie reaped between the open and the read reads as nothing. */
	const char *rp = strrchr(buf, ')');
	return !rp || (rp[1] == ' ' && rp[2] == 'Z');
}

int exchange_kill_all(struct exchange *x, int timeout_ms)
{
	pid_t all[64];
	int n = exchange_children(x, all, 64);
	kill(x->pid, SIGSTOP);
	for (int i = 0; i < n; i++)
		kill(all[i], SIGKILL);
	kill(x->pid, SIGKILL);
	waitpid(x->pid, NULL, 0);
	x->pid = 0;
	if (x->out_fd >= 0)
		close(x->out_fd);
	x->out_fd = -1;
	for (int i = 0; i < n; i++) {
		for (int t = 0; t < timeout_ms / 10 && !test_pid_gone(all[i]); t++)
			usleep(10000);
		if (!test_pid_gone(all[i]))
			return -1;
	}
	return n;
}

int exchange_children(const struct exchange *x, pid_t *pids, int max)
{
	DIR *d = opendir("/proc");
	if (!d)
		return 0;
	int n = 0;
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		if (!isdigit((unsigned char)e->d_name[0]))
			continue;
		pid_t pid = atoi(e->d_name);
		if (proc_ppid(pid) == x->pid && n < max)
			pids[n++] = pid;
	}
	closedir(d);
	return n;
}

pid_t exchange_child(const struct exchange *x, const char *prog, int id)
{
	pid_t pids[256];
	int n = exchange_children(x, pids, 256);
	char want[16];
	snprintf(want, sizeof(want), "%d", id);
	for (int i = 0; i < n; i++) {
		char path[64], buf[2048];
		snprintf(path, sizeof(path), "/proc/%d/cmdline", (int)pids[i]);
		FILE *f = fopen(path, "re");
		if (!f)
			continue;
		size_t len = fread(buf, 1, sizeof(buf) - 1, f);
		fclose(f);
		buf[len] = 0;
		const char *a0 = buf;
		size_t l0 = strlen(a0), lp = strlen(prog);
		if (l0 < lp || strcmp(a0 + l0 - lp, prog) != 0)
			continue;
		/* Walk the NUL-separated arguments. */
		for (size_t off = 0; off < len;) {
			const char *arg = buf + off;
			size_t al = strlen(arg);
			if ((!strcmp(arg, "--id") || !strcmp(arg, "--shard")) &&
			    off + al + 1 < len && !strcmp(buf + off + al + 1, want))
				return pids[i];
			off += al + 1;
		}
	}
	return -1;
}

/* ---- the reply DOM ---- */

struct xparse {
	struct xdoc *d;
	int stack[64];
	int depth;
	bool fail;
};

static void copy_trunc(char *dst, size_t cap, const char *src)
{
	snprintf(dst, cap, "%s", src);
}

static void XMLCALL x_start(void *ud, const XML_Char *name, const XML_Char **atts)
{
	struct xparse *p = ud;
	struct xdoc *d = p->d;
	if (p->depth >= 64) {
		p->fail = true;
		return;
	}
	if (d->n == d->cap) {
		int ncap = d->cap ? d->cap * 2 : 64;
		struct xnode *nn = realloc(d->nodes, (size_t)ncap * sizeof(*nn));
		if (!nn) {
			p->fail = true;
			return;
		}
		d->nodes = nn;
		d->cap = ncap;
	}
	struct xnode *x = &d->nodes[d->n];
	memset(x, 0, sizeof(*x));
	x->depth = p->depth;
	x->parent = p->depth ? p->stack[p->depth - 1] : -1;
	copy_trunc(x->name, sizeof(x->name), name);
	for (int i = 0; atts[i] && atts[i + 1]; i += 2) {
		if (x->nattr == XNODE_ATTRS) {
			p->fail = true;
			break;
		}
		copy_trunc(x->key[x->nattr], sizeof(x->key[0]), atts[i]);
		copy_trunc(x->val[x->nattr], sizeof(x->val[0]), atts[i + 1]);
		x->nattr++;
	}
	p->stack[p->depth++] = d->n++;
}

static void XMLCALL x_end(void *ud, const XML_Char *name)
{
	struct xparse *p = ud;
	(void)name;
	if (p->depth > 0) {
		struct xnode *x = &p->d->nodes[p->stack[p->depth - 1]];
		/* Trim surrounding whitespace of the collected text. */
		size_t l = strlen(x->text);
		while (l && isspace((unsigned char)x->text[l - 1]))
			x->text[--l] = 0;
		size_t s = 0;
		while (x->text[s] && isspace((unsigned char)x->text[s]))
			s++;
		memmove(x->text, x->text + s, l - s + 1);
		p->depth--;
	}
}

static void XMLCALL x_text(void *ud, const XML_Char *s, int len)
{
	struct xparse *p = ud;
	if (p->depth == 0)
		return;
	struct xnode *x = &p->d->nodes[p->stack[p->depth - 1]];
	size_t l = strlen(x->text);
	size_t room = sizeof(x->text) - 1 - l;
	size_t n = (size_t)len < room ? (size_t)len : room;
	memcpy(x->text + l, s, n);
	x->text[l + n] = 0;
}

int xdoc_parse(struct xdoc *d, const char *xml, size_t len)
{
	memset(d, 0, sizeof(*d));
	XML_Parser xp = XML_ParserCreate(NULL);
	if (!xp)
		return -1;
	struct xparse p = {.d = d};
	XML_SetUserData(xp, &p);
	XML_SetElementHandler(xp, x_start, x_end);
	XML_SetCharacterDataHandler(xp, x_text);
	int ok = XML_Parse(xp, xml, (int)len, 1) == XML_STATUS_OK;
	XML_ParserFree(xp);
	return ok && !p.fail && d->n > 0 ? 0 : -1;
}

void xdoc_free(struct xdoc *d)
{
	free(d->nodes);
	memset(d, 0, sizeof(*d));
}

const char *xnode_attr(const struct xnode *n, const char *key)
{
	for (int i = 0; i < n->nattr; i++)
		if (!strcmp(n->key[i], key))
			return n->val[i];
	return NULL;
}

int xdoc_child(const struct xdoc *d, int i, int k)
{
	for (int j = i + 1; j < d->n && d->nodes[j].depth > d->nodes[i].depth; j++)
		if (d->nodes[j].parent == i && k-- == 0)
			return j;
	return -1;
}

int xdoc_nchildren(const struct xdoc *d, int i)
{
	int n = 0;
	for (int j = i + 1; j < d->n && d->nodes[j].depth > d->nodes[i].depth; j++)
		if (d->nodes[j].parent == i)
			n++;
	return n;
}

struct sbuf {
	char *p;
	size_t cap, len;
};

static void sb_put(struct sbuf *b, const char *s)
{
	size_t n = strlen(s);
	if (b->len + n + 1 > b->cap)
		n = b->cap > b->len + 1 ? b->cap - b->len - 1 : 0;
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = 0;
}

static bool time_ok(const char *v)
{
	if (!*v)
		return false;
	for (const char *q = v; *q; q++)
		if (!isdigit((unsigned char)*q))
			return false;
	long long t = atoll(v);
	long long now = (long long)time(NULL);
	return t > now - 86400 && t < now + 86400;
}

static void canon_node(const struct xdoc *d, int i, struct sbuf *b, unsigned flags)
{
	const struct xnode *x = &d->nodes[i];
	sb_put(b, x->name);
	if (x->nattr) {
		int order[XNODE_ATTRS];
		for (int k = 0; k < x->nattr; k++)
			order[k] = k;
		for (int a = 1; a < x->nattr; a++)
			for (int k = a;
			     k > 0 && strcmp(x->key[order[k - 1]], x->key[order[k]]) > 0;
			     k--) {
				int t = order[k];
				order[k] = order[k - 1];
				order[k - 1] = t;
			}
		sb_put(b, "[");
		for (int k = 0; k < x->nattr; k++) {
			const char *key = x->key[order[k]], *v = x->val[order[k]];
			if (k)
				sb_put(b, " ");
			sb_put(b, key);
			sb_put(b, "=");
			if ((flags & CANON_TIME) && !strcmp(key, "time"))
				sb_put(b, time_ok(v) ? "T" : "BADTIME");
			else
				sb_put(b, v);
		}
		sb_put(b, "]");
	}
	if (x->text[0] && !(flags & CANON_NO_TEXT)) {
		sb_put(b, "\"");
		sb_put(b, x->text);
		sb_put(b, "\"");
	}
	int nc = xdoc_nchildren(d, i);
	if (nc) {
		sb_put(b, "(");
		for (int k = 0; k < nc; k++) {
			if (k)
				sb_put(b, " ");
			canon_node(d, xdoc_child(d, i, k), b, flags);
		}
		sb_put(b, ")");
	}
}

int xdoc_canon(const struct xdoc *d, char *out, size_t cap, unsigned flags)
{
	struct sbuf b = {.p = out, .cap = cap, .len = 0};
	if (cap)
		out[0] = 0;
	if (d->n == 0)
		return -1;
	canon_node(d, 0, &b, flags);
	return 0;
}

int xml_canon(const char *xml, size_t len, char *out, size_t cap, unsigned flags)
{
	struct xdoc d;
	if (xdoc_parse(&d, xml, len) != 0) {
		xdoc_free(&d);
		snprintf(out, cap, "MALFORMED");
		return -1;
	}
	int rc = xdoc_canon(&d, out, cap, flags);
	xdoc_free(&d);
	return rc;
}
