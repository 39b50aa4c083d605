/*
 * Test and benchmark helpers for talking to a running exchange over TCP:
 * a blocking client with deadlines that frames requests and splits the
 * reply stream into documents, a launcher for the `shmex` supervisor, and a
 * tiny expat DOM with a canonical text form for checking replies element by
 * element.
 *
 * Replies are found in the byte stream without a length line (the default
 * of the gateway): a reply ends at the first "</results>" or "<results/>".
 * Neither can occur inside a reply's attribute values or text, because the
 * gateway escapes every '<'.  With `framed` set the client instead expects
 * the length-line framing in front of each reply.
 */
#ifndef SHMEX_TESTS_CLIENT_H
#define SHMEX_TESTS_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

struct client {
	int fd;
	bool framed; /* replies carry a length line */
	char *buf;   /* received bytes not yet returned */
	size_t len;  /* bytes in buf */
	size_t cap;  /* allocated size of buf */
	char *rep;   /* the reply last returned by client_recv */
	size_t rep_cap;
};

/* Connects to host:port (IPv4 dotted quad) within timeout_ms.
 * Returns 0 or -errno. */
int client_connect(struct client *c, const char *host, int port, int timeout_ms);
void client_close(struct client *c);
/* Writes all of data (blocking, bounded by timeout_ms). 0 or -errno. */
int client_send_raw(struct client *c, const void *data, size_t len, int timeout_ms);
/* Sends "<len>\n" + xml. */
int client_send(struct client *c, const char *xml, int timeout_ms);
/* Receives the next reply document: *reply points into the client's buffer
 * (NUL-terminated) and stays valid until the next call.  Returns 0,
 * -ETIMEDOUT, -ENOTCONN (peer closed before a complete reply), -EPROTO
 * (bad reply framing), or -errno. */
int client_recv(struct client *c, const char **reply, size_t *len, int timeout_ms);
/* client_send + client_recv. */
int client_request(struct client *c, const char *xml, const char **reply, size_t *len,
		   int timeout_ms);
/* Waits until the peer closes the connection (EOF or reset), discarding
 * whatever arrives; 0 when closed, -ETIMEDOUT otherwise. */
int client_wait_closed(struct client *c, int timeout_ms);

/* A running `shmex` supervisor started by exchange_start. */
struct exchange {
	pid_t pid;
	int port;
	int fix_port; /* 0 unless started with FIX (--fix-port) */
	int out_fd;   /* read end of its stdout */
	char instance[64];
	char line[256]; /* the "listening on" line it printed */
};

/*
 * Starts `bin` (normally test_bin("shmex")) with --instance inst --port 0
 * --bind 127.0.0.1 plus the NULL-terminated extra arguments, waits for the
 * one line it prints on stdout and takes the port from it.  Unless an
 * extra argument starts with --fix, --no-fix is added.  Returns 0, or
 * -1 after killing the child when it fails to come up within timeout_ms.
 */
int exchange_start(struct exchange *x, const char *bin, const char *inst,
		   const char *const *extra, int timeout_ms);
/* Sends SIGTERM and waits; returns the wait status, or -1 on timeout (the
 * supervisor is then killed). */
int exchange_stop(struct exchange *x, int timeout_ms);
/* Pids of the supervisor's children (from /proc), up to max; count. */
int exchange_children(const struct exchange *x, pid_t *pids, int max);
/* SIGKILL of the supervisor and every child at one moment: the supervisor
 * is stopped first (else it could react to its children's deaths, a
 * restart or a start from the journals, before its own SIGKILL, and leave
 * a new child behind; killed first, it would send the children SIGTERM,
 * its death signal, a clean stop begun rather than a crash).  Reaps the
 * supervisor, then waits up to timeout_ms until every child is gone (dead
 * or a zombie).  Returns the number of children killed, or -1 when one
 * outlived the wait. */
int exchange_kill_all(struct exchange *x, int timeout_ms);
/* Dead, or a zombie nobody reaped yet (children of a killed supervisor
 * are reparented; their reaper may be slow). */
bool test_pid_gone(pid_t pid);
/* Pid of the child whose argv[0] ends in `prog` and has `--id id` (gateway)
 * or `--shard id` (matcher), or -1. */
pid_t exchange_child(const struct exchange *x, const char *prog, int id);

/* A parsed reply: elements in document order with their depth. */
#define XNODE_ATTRS 8
struct xnode {
	int depth;
	int parent; /* index of the parent, -1 for the root */
	char name[32];
	int nattr;
	char key[XNODE_ATTRS][24];
	char val[XNODE_ATTRS][96];
	char text[160]; /* concatenated text, whitespace-trimmed */
};
struct xdoc {
	int n;
	int cap;
	struct xnode *nodes;
};
/* Parses a document; 0 or -1 when malformed. */
int xdoc_parse(struct xdoc *d, const char *xml, size_t len);
void xdoc_free(struct xdoc *d);
/* Value of an attribute or NULL. */
const char *xnode_attr(const struct xnode *n, const char *key);
/* Index of the k-th child (0-based) of element i, or -1. */
int xdoc_child(const struct xdoc *d, int i, int k);
/* Number of children of element i. */
int xdoc_nchildren(const struct xdoc *d, int i);

/*
 * Canonical text of a document: name, then [k=v k=v] with attributes
 * sorted by name, then "text" when not blank (and not CANON_NO_TEXT), then
 * (children separated by spaces).  E.g.
 *   results(created[id=1] error[id=2]"Account already exists")
 * CANON_TIME replaces every time= value by T when it is an integer within
 * a day of now, by BADTIME otherwise.
 */
#define CANON_NO_TEXT 1u
#define CANON_TIME 2u
int xdoc_canon(const struct xdoc *d, char *out, size_t cap, unsigned flags);
/* Parse + canon in one step; returns 0 or -1 (out then says "MALFORMED"). */
int xml_canon(const char *xml, size_t len, char *out, size_t cap, unsigned flags);

#endif
