/*
 * gw_server: the gateway's epoll loop (see gw_server.h for the contract and
 * the limits).
 *
 * Shape.  Level-triggered epoll; each connection's interest set is derived
 * from its state after every change (conn_update_events), so the loop never
 * spins on a descriptor it does not want to service:
 *   - EPOLLIN while the connection is idle (no request executing), its
 *     peer has not half-closed, and its unsent output is below wbuf_high;
 *     dropped lazily: it stays registered while a request executes and is
 *     removed only when an unwanted EPOLLIN event really arrives, so the
 *     ordinary request/reply cycle makes no epoll_ctl call;
 *   - EPOLLOUT while output is pending.
 * Several gateway processes may share the listening socket (EPOLLEXCLUSIVE);
 * each then accepts one connection per turn and re-registers the socket so
 * that the next connection wakes another gateway (listen_rotate).
 * A connection executes one request at a time ("busy").  Bytes of the next
 * requests a client pipelined stay in its read buffer (bounded, RBUF_SIZE)
 * and are parsed when the reply of the current one has been queued; such
 * connections sit on the ready queue, which the loop drains every turn.
 *
 * Connection states:
 *   OPEN     normal service;
 *   CLOSING  no more input is processed; close once the output is flushed
 *            (after an error: shut the write side and LINGER);
 *   LINGER   output flushed and write side shut; input is read and thrown
 *            away until the peer closes or a short timer fires, so the
 *            kernel does not reset the connection (and destroy our error
 *            reply) because unread request bytes were left behind.
 *
 * Timers.  Each connection has at most a read deadline (a started request
 * must complete; or the linger timer) and a write deadline (pending output
 * must progress).  The loop keeps the earliest armed deadline and sleeps
 * exactly until it (or until an event), scanning all connections only when
 * a deadline is due: an idle gateway makes no wake-ups at all.
 *
 * Invariants: a FREE slot has fd -1 and no buffers; busy implies OPEN or
 * CLOSING-by-drain (never LINGER); the ready queue holds each slot at most
 * once (the `queued` flag belongs to the slot, not the connection, and a
 * popped FREE slot is skipped).
 *
 * Limits: RBUF_SIZE bytes read per connection at a time (bodies larger
 * than that are assembled by gw_frame up to max_request); at most
 * GW_SERVER_MAX_CONNS_LIMIT connections; ACCEPT_BATCH accepts per turn so
 * several gateway processes sharing the listening socket take turns.
 */
#include "gateway/gw_server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <fcntl.h>
#include <unistd.h>

#include "gateway/gw_frame.h"
#include "gateway/gw_reply.h"
#include "shm/shm_error.h"
#include "shm/shm_clock.h"

#define RBUF_SIZE 16384u
/* Reads of a connection after the stop, to answer "not executed" what the
 * client sent before it (and had not been read): bounded, so a client
 * that keeps sending cannot hold the drain. */
#define STOP_READS 8u
#define WBUF_KEEP (64u << 10)
#define ACCEPT_BATCH 16
#define ACCEPT_SHARED 1 /* per turn when the socket is shared */
#define MAX_WATCH 8
#define LINGER_MS 1000u
#define ACCEPT_PAUSE_MS 100u
#define TAG_LISTEN UINT64_MAX
#define TAG_WATCH0 (UINT64_MAX - 16)

enum conn_state { C_FREE = 0, C_OPEN, C_CLOSING, C_LINGER };

struct conn {
	int fd;
	uint32_t gen;
	uint8_t state;      /* enum conn_state */
	bool busy;          /* a request is executing */
	bool eof;           /* the peer half-closed */
	bool queued;        /* slot is on the ready queue */
	bool fatal;         /* CLOSING after an error: shut write, linger */
	uint8_t stop_reads; /* reads since the stop (STOP_READS at most) */
	uint32_t events;    /* epoll interest registered now */
	struct gw_frame frame;
	char *rbuf;
	size_t rpos, rlen;
	char *wbuf;
	size_t wpos, wlen, wcap;
	uint64_t rdeadline; /* ns; 0 = none */
	uint64_t wdeadline; /* ns; 0 = none */
	uint64_t ideadline; /* ns; 0 = none: close if still idle then */
	uint8_t peer[17];   /* client address: family byte + address */
};

struct watch {
	int fd;
	void (*cb)(void *arg);
	void *arg;
};

struct gw_server {
	struct gw_server_cfg cfg;
	struct gw_server_ops ops;
	int ep;
	bool listening; /* listening socket in the epoll set */
	bool stopping;
	uint64_t drain_deadline;
	uint64_t accept_resume; /* ns; 0 = not paused */
	uint64_t next_deadline; /* earliest armed connection deadline */
	int poll_hint;          /* last ops.poll() answer */
	uint32_t in_process;    /* slot inside conn_process, or UINT32_MAX */
	bool out_blocked;       /* some connection was denied input because
				 * the total unsent output passed max_unsent */
	bool drained;           /* ops.drain ran; drain_deadline is the
				 * final flush */
	struct conn *conns;
	uint32_t *free_stack;
	uint32_t nfree;
	uint32_t *readyq; /* ring of max_conns slots */
	uint32_t rq_head, rq_n;
	struct watch watches[MAX_WATCH];
	int nwatch;
	struct gw_server_stats st;
};

static uint64_t ms_ns(uint32_t ms)
{
	return (uint64_t)ms * 1000000u;
}

static uint64_t conn_tag(uint32_t slot, uint32_t gen)
{
	return ((uint64_t)gen << 16) | slot;
}

static size_t conn_pending(const struct conn *c)
{
	return c->wlen - c->wpos;
}

/* The total unsent output is above its bound: read nothing, start nothing,
 * let no streamed reply grow. */
static bool out_full(struct gw_server *s)
{
	if (s->st.unsent <= s->cfg.max_unsent)
		return false;
	s->out_blocked = true;
	return true;
}

/* The connection may start its next request now: its own unsent output
 * is at most wbuf_high, and while the total is above max_unsent only a
 * connection with nothing unsent may (so the clients that do not read
 * stop, and the others are still served: each adds at most one reply, or
 * one streamed chunk, to the total). */
static bool conn_may_start(struct gw_server *s, const struct conn *c)
{
	return conn_pending(c) <= s->cfg.wbuf_high &&
	       (conn_pending(c) == 0 || !out_full(s));
}

/* The connection may be read and may start its next request. */
static bool conn_wants_input(struct gw_server *s, const struct conn *c)
{
	return c->state == C_OPEN && !c->busy && !c->eof && !s->stopping &&
	       conn_may_start(s, c);
}

/* A complete error document for code (one of ours, short). */
static int error_doc(char *doc, size_t cap, int code)
{
	int n = snprintf(doc, cap,
			 "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
			 "<results><error>%s</error></results>\n",
			 gw_reply_text(code));
	return n < 0 || (size_t)n >= cap ? -1 : n;
}

static void arm_deadline(struct gw_server *s, uint64_t *field, uint64_t when)
{
	*field = when;
	if (s->next_deadline == 0 || when < s->next_deadline)
		s->next_deadline = when;
}

static void ready_push(struct gw_server *s, uint32_t slot)
{
	struct conn *c = &s->conns[slot];
	if (c->queued)
		return;
	c->queued = true;
	s->readyq[(s->rq_head + s->rq_n) % s->cfg.max_conns] = slot;
	s->rq_n++;
}

/*
 * Brings the registered interest set in line with the connection's state.
 * EPOLLIN is dropped lazily: a connection that stops wanting input (a
 * request starts executing) keeps EPOLLIN registered (strict = false), so
 * the common request/reply cycle costs no epoll_ctl at all.  Only when an
 * unwanted EPOLLIN event actually arrives (a client that pipelines, a
 * half-close, a full buffer) is the set made exact (strict = true), which
 * keeps the level-triggered loop from spinning on it.
 */
static void conn_update_events(struct gw_server *s, struct conn *c, uint32_t slot,
			       bool strict)
{
	uint32_t ev = 0;
	if (conn_wants_input(s, c) && c->rlen < RBUF_SIZE)
		ev |= EPOLLIN;
	if (c->state == C_LINGER)
		ev |= EPOLLIN;
	if (!strict && c->state == C_OPEN && (c->events & EPOLLIN))
		ev |= EPOLLIN;
	if (conn_pending(c) > 0 && c->state != C_LINGER)
		ev |= EPOLLOUT;
	if (ev == c->events)
		return;
	struct epoll_event e = {.events = ev, .data.u64 = conn_tag(slot, c->gen)};
	if (epoll_ctl(s->ep, EPOLL_CTL_MOD, c->fd, &e) == 0)
		c->events = ev;
}

static void conn_close(struct gw_server *s, uint32_t slot)
{
	struct conn *c = &s->conns[slot];
	if (c->state == C_FREE)
		return;
	if (c->busy) {
		c->busy = false;
		s->st.aborted++;
		if (s->ops.abort)
			s->ops.abort(s->ops.ctx, (struct gw_conn_ref){slot, c->gen});
	}
	epoll_ctl(s->ep, EPOLL_CTL_DEL, c->fd, NULL);
	close(c->fd);
	s->st.unsent -= conn_pending(c);
	gw_frame_free(&c->frame);
	free(c->rbuf);
	free(c->wbuf);
	bool queued = c->queued;
	uint32_t gen = c->gen + 1;
	memset(c, 0, sizeof(*c));
	c->fd = -1;
	c->gen = gen;
	c->queued = queued; /* the queue entry stays; a FREE slot is skipped */
	s->free_stack[s->nfree++] = slot;
	s->st.closed++;
	s->st.open--;
}

/* Appends bytes to the output buffer (never beyond what one reply, or one
 * streamed part, adds above wbuf_high: callers only start requests and
 * streamed parts below it). */
static int conn_append(struct gw_server *s, struct conn *c, const char *data, size_t len)
{
	if (c->wpos == c->wlen)
		c->wpos = c->wlen = 0;
	if (c->wcap - c->wlen < len) {
		if (c->wpos > 0) {
			memmove(c->wbuf, c->wbuf + c->wpos, c->wlen - c->wpos);
			c->wlen -= c->wpos;
			c->wpos = 0;
		}
		size_t need = c->wlen + len;
		if (need > c->wcap) {
			size_t ncap = c->wcap ? c->wcap : 4096;
			while (ncap < need)
				ncap *= 2;
			char *nb = realloc(c->wbuf, ncap);
			if (!nb)
				return -ENOMEM;
			c->wbuf = nb;
			c->wcap = ncap;
		}
	}
	memcpy(c->wbuf + c->wlen, data, len);
	c->wlen += len;
	s->st.unsent += len;
	if (s->st.unsent > s->st.unsent_peak)
		s->st.unsent_peak = s->st.unsent;
	return 0;
}

static int conn_append_reply(struct gw_server *s, struct conn *c, const char *data,
			     size_t len)
{
	if (s->cfg.frame_replies) {
		char head[24];
		int h = snprintf(head, sizeof(head), "%zu\n", len);
		int rc = conn_append(s, c, head, (size_t)h);
		if (rc)
			return rc;
	}
	return conn_append(s, c, data, len);
}

/* Writes what it can.  May close the connection (returns false then). */
static bool conn_flush(struct gw_server *s, uint32_t slot)
{
	struct conn *c = &s->conns[slot];
	while (c->wpos < c->wlen) {
		ssize_t n = send(c->fd, c->wbuf + c->wpos, c->wlen - c->wpos,
				 MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n > 0) {
			c->wpos += (size_t)n;
			s->st.unsent -= (size_t)n;
			c->wdeadline = 0;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			break;
		conn_close(s, slot);
		return false;
	}
	if (c->wpos < c->wlen) {
		if (c->wdeadline == 0)
			arm_deadline(s, &c->wdeadline,
				     shm_clock_ns(CLOCK_MONOTONIC) +
					     ms_ns(s->cfg.deadline_ms));
	} else {
		c->wpos = c->wlen = 0;
		c->wdeadline = 0;
		if (c->wcap > WBUF_KEEP) {
			free(c->wbuf);
			c->wbuf = NULL;
			c->wcap = 0;
		}
		if (c->state == C_CLOSING) {
			if (!c->fatal) {
				conn_close(s, slot);
				return false;
			}
			shutdown(c->fd, SHUT_WR);
			c->state = C_LINGER;
			c->rpos = c->rlen = 0;
			arm_deadline(s, &c->rdeadline,
				     shm_clock_ns(CLOCK_MONOTONIC) + ms_ns(LINGER_MS));
		}
	}
	if (c->state == C_OPEN && !c->busy && c->rpos < c->rlen && conn_may_start(s, c) &&
	    slot != s->in_process)
		ready_push(s, slot); /* buffered requests may go on now */
	conn_update_events(s, c, slot, false);
	return true;
}

/* A framing error or a deadline: one error reply, then close. */
static void conn_fail(struct gw_server *s, uint32_t slot, const char *msg)
{
	struct conn *c = &s->conns[slot];
	char doc[256];
	int n = snprintf(doc, sizeof(doc),
			 "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
			 "<results><error>%s</error></results>\n",
			 msg);
	/* msg is one of our own short messages; should one ever not fit,
	 * send the (well-formed) generic document rather than a truncated
	 * one or bytes past doc. */
	if (n < 0 || (size_t)n >= sizeof(doc))
		n = snprintf(doc, sizeof(doc),
			     "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
			     "<results><error>Internal error</error></results>\n");
	if (conn_append_reply(s, c, doc, (size_t)n) != 0) {
		conn_close(s, slot);
		return;
	}
	c->state = C_CLOSING;
	c->fatal = true;
	c->rdeadline = 0;
	conn_flush(s, slot);
}

static void conn_process_loop(struct gw_server *s, uint32_t slot, uint32_t gen);

/* Parses and starts buffered requests while the connection may take one. */
static void conn_process(struct gw_server *s, uint32_t slot)
{
	struct conn *c = &s->conns[slot];
	uint32_t gen = c->gen;
	uint32_t outer = s->in_process;
	s->in_process = slot;
	conn_process_loop(s, slot, gen);
	s->in_process = outer;
}

static void conn_process_loop(struct gw_server *s, uint32_t slot, uint32_t gen)
{
	struct conn *c = &s->conns[slot];
	bool answered_stop = false;
again:
	while (c->state == C_OPEN && !c->busy && c->rpos < c->rlen &&
	       (s->stopping || conn_may_start(s, c))) {
		size_t used = 0, rl = 0;
		const char *req = NULL;
		int rc = gw_frame_feed(&c->frame, c->rbuf + c->rpos, c->rlen - c->rpos,
				       &used, &req, &rl);
		c->rpos += used;
		if (rc == 1 && s->stopping) {
			/* A request the client sent before the stop but that
			 * never started: it is told so, not dropped. */
			char doc[256];
			int n = error_doc(doc, sizeof(doc), SHMEX_ESTOPPING);
			if (n < 0 || conn_append_reply(s, c, doc, (size_t)n) != 0) {
				conn_close(s, slot);
				return;
			}
			s->st.stop_replies++;
			answered_stop = true;
			continue;
		}
		if (rc == 1) {
			c->rdeadline = 0;
			c->busy = true;
			s->st.requests++;
			s->ops.request(s->ops.ctx, (struct gw_conn_ref){slot, gen}, req,
				       rl);
			if (c->state == C_FREE || c->gen != gen)
				return;
			continue;
		}
		if (rc < 0) {
			s->st.frame_errors++;
			conn_fail(s, slot, gw_reply_text(rc));
			return;
		}
		break;
	}
	if (c->state != C_OPEN)
		return;
	if (c->rpos == c->rlen)
		c->rpos = c->rlen = 0;
	if (!c->busy) {
		bool partial = gw_frame_in_request(&c->frame);
		if (partial && c->rdeadline == 0)
			arm_deadline(s, &c->rdeadline,
				     shm_clock_ns(CLOCK_MONOTONIC) +
					     ms_ns(s->cfg.deadline_ms));
		if (!partial)
			c->rdeadline = 0;
		if (!s->stopping && partial && c->eof && c->rpos == c->rlen) {
			/* The client is done sending and its last request is
			 * shorter than its length line said: tell it so. */
			char msg[160];
			if (c->frame.state == GW_FRAME_BODY)
				snprintf(msg, sizeof(msg),
					 "%s: %zu bytes announced, %zu arrived",
					 gw_reply_text(SHMEX_ESHORTBODY), c->frame.want,
					 c->frame.have);
			else
				snprintf(msg, sizeof(msg),
					 "%s: the length line has no newline",
					 gw_reply_text(SHMEX_ESHORTBODY));
			s->st.frame_errors++;
			conn_fail(s, slot, msg);
			return;
		}
		int unread = 0;
		if (s->stopping && !c->eof && c->stop_reads < STOP_READS &&
		    ioctl(c->fd, FIONREAD, &unread) == 0 && unread > 0) {
			/* Sent before the stop, never read: read it and
			 * answer each request "not executed" (above) rather
			 * than close with it unread. */
			c->stop_reads++;
			if (c->rpos > 0) {
				memmove(c->rbuf, c->rbuf + c->rpos, c->rlen - c->rpos);
				c->rlen -= c->rpos;
				c->rpos = 0;
			}
			ssize_t n = recv(c->fd, c->rbuf + c->rlen, RBUF_SIZE - c->rlen,
					 MSG_DONTWAIT);
			if (n > 0) {
				c->rlen += (size_t)n;
				goto again;
			}
		}
		if (s->stopping || (c->eof && c->rpos == c->rlen)) {
			/* Idle and draining, or the peer is done sending (a
			 * partial request can never complete now). */
			c->state = C_CLOSING;
			/* Bytes the client sent that we never read would make
			 * the kernel answer our close with a reset, which
			 * destroys the replies still in flight: shut the
			 * write side and linger instead. */
			unread = 0;
			if (s->stopping &&
			    (answered_stop || partial ||
			     (ioctl(c->fd, FIONREAD, &unread) == 0 && unread > 0)))
				c->fatal = true;
			if (!conn_flush(s, slot))
				return;
		}
	}
	conn_update_events(s, c, slot, false);
}

static void conn_readable(struct gw_server *s, uint32_t slot)
{
	struct conn *c = &s->conns[slot];
	if (c->state == C_LINGER) {
		char tmp[4096];
		ssize_t n = recv(c->fd, tmp, sizeof(tmp), MSG_DONTWAIT);
		if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
			conn_close(s, slot);
		return;
	}
	if (!conn_wants_input(s, c)) {
		/* Input we do not want now: stop hearing about it. */
		conn_update_events(s, c, slot, true);
		return;
	}
	if (c->rpos > 0) {
		memmove(c->rbuf, c->rbuf + c->rpos, c->rlen - c->rpos);
		c->rlen -= c->rpos;
		c->rpos = 0;
	}
	if (c->rlen >= RBUF_SIZE) {
		conn_update_events(s, c, slot, true);
		return;
	}
	ssize_t n = recv(c->fd, c->rbuf + c->rlen, RBUF_SIZE - c->rlen, MSG_DONTWAIT);
	if (n > 0) {
		c->rlen += (size_t)n;
	} else if (n == 0) {
		c->eof = true;
	} else {
		if (errno == EAGAIN || errno == EINTR)
			return;
		conn_close(s, slot);
		return;
	}
	conn_process(s, slot);
}

/* Turns a new connection away with one error document saying why (if its
 * socket takes it at once).  What the client already sent is read and
 * dropped first, and the write side shut: closing with unread bytes would
 * make the kernel reset the connection and destroy the reply. */
static void refuse(struct gw_server *s, int fd, int why)
{
	char doc[256], head[24];
	int n = error_doc(doc, sizeof(doc), why);
	if (n > 0) {
		int h = snprintf(head, sizeof(head), "%d\n", n);
		if (s->cfg.frame_replies)
			(void)!send(fd, head, (size_t)h, MSG_NOSIGNAL | MSG_DONTWAIT);
		(void)!send(fd, doc, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT);
	}
	shutdown(fd, SHUT_WR);
	char tmp[4096];
	for (int i = 0; i < 16 && recv(fd, tmp, sizeof(tmp), MSG_DONTWAIT) > 0; i++)
		;
	close(fd);
	if (why == SHMEX_EPEERFULL)
		s->st.refused_peer++;
	else
		s->st.refused++;
}

/* The client address as a comparable key: family byte, then the address. */
static void peer_key(const struct sockaddr_storage *sa, uint8_t key[17])
{
	memset(key, 0, 17);
	if (sa->ss_family == AF_INET) {
		key[0] = 4;
		memcpy(key + 1, &((const struct sockaddr_in *)sa)->sin_addr, 4);
	} else if (sa->ss_family == AF_INET6) {
		key[0] = 6;
		memcpy(key + 1, &((const struct sockaddr_in6 *)sa)->sin6_addr, 16);
	}
}

/* Connections open from this address (a scan: accepting is rare next to
 * requests, and max_conns is small). */
static uint32_t peer_count(const struct gw_server *s, const uint8_t key[17])
{
	uint32_t n = 0;
	for (uint32_t i = 0; i < s->cfg.max_conns; i++)
		if (s->conns[i].state != C_FREE && !memcmp(s->conns[i].peer, key, 17))
			n++;
	return n;
}

static void listen_set(struct gw_server *s, bool on)
{
	if (on == s->listening)
		return;
	if (on) {
		struct epoll_event e = {.events = EPOLLIN, .data.u64 = TAG_LISTEN};
		if (s->cfg.exclusive)
			e.events |= EPOLLEXCLUSIVE;
		if (epoll_ctl(s->ep, EPOLL_CTL_ADD, s->cfg.listen_fd, &e) == 0)
			s->listening = true;
	} else {
		epoll_ctl(s->ep, EPOLL_CTL_DEL, s->cfg.listen_fd, NULL);
		s->listening = false;
	}
}

/*
 * Spreading connections over the gateways that share the listening socket.
 * With EPOLLEXCLUSIVE the kernel wakes the first exclusive waiter queued on
 * the socket that is blocked in epoll_wait, which is nearly always the same
 * gateway, and a gateway that is already running takes a whole burst of
 * queued connections before the others are even scheduled: measured, one
 * gateway served all 32 connections of the e2e benchmark while the other
 * idled.  So a shared gateway accepts ACCEPT_SHARED connection per turn,
 * then re-registers the socket (which moves its wait entry to the back of
 * the queue: the next connection wakes another gateway) and yields the
 * CPU (a gateway woken for the same burst on this CPU takes the next one;
 * sched_yield returns at once when nobody else is runnable).
 */
static void listen_rotate(struct gw_server *s)
{
	if (!s->cfg.exclusive || !s->listening)
		return;
	listen_set(s, false);
	listen_set(s, true);
	if (!s->listening) /* could not re-register: try again shortly */
		s->accept_resume = shm_clock_ns(CLOCK_MONOTONIC) + ms_ns(ACCEPT_PAUSE_MS);
	sched_yield();
}

/* (Re)starts the idle deadline of c: it is closed if it is still idle then
 * (the sweep checks; a connection busy at that moment gets a new one). */
static void conn_arm_idle(struct gw_server *s, struct conn *c)
{
	if (s->cfg.idle_ms == GW_SERVER_IDLE_NEVER)
		return;
	arm_deadline(s, &c->ideadline,
		     shm_clock_ns(CLOCK_MONOTONIC) + ms_ns(s->cfg.idle_ms));
}

static bool conn_idle(const struct conn *c)
{
	return c->state == C_OPEN && !c->busy && !gw_frame_in_request(&c->frame) &&
	       conn_pending(c) == 0 && c->rpos == c->rlen;
}

static void do_accept(struct gw_server *s)
{
	int batch = s->cfg.exclusive ? ACCEPT_SHARED : ACCEPT_BATCH;
	int taken = 0;
	for (int i = 0; i < batch; i++) {
		struct sockaddr_storage sa;
		socklen_t sl = sizeof(sa);
		memset(&sa, 0, sizeof(sa));
		int fd = accept4(s->cfg.listen_fd, (struct sockaddr *)&sa, &sl,
				 SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS ||
			    errno == ENOMEM) {
				/* Out of descriptors: the socket would stay
				 * readable and spin the loop; look again in
				 * a moment. */
				listen_set(s, false);
				s->accept_resume = shm_clock_ns(CLOCK_MONOTONIC) +
						   ms_ns(ACCEPT_PAUSE_MS);
			}
			/* EAGAIN: someone else took it; ECONNABORTED etc.:
			 * that client gave up.  Either way, stop here. */
			break;
		}
		taken++;
		if (s->nfree == 0) {
			refuse(s, fd, SHMEX_ECONNSFULL);
			continue;
		}
		uint8_t key[17];
		peer_key(&sa, key);
		if (peer_count(s, key) >= s->cfg.max_per_peer) {
			refuse(s, fd, SHMEX_EPEERFULL);
			continue;
		}
		uint32_t slot = s->free_stack[s->nfree - 1];
		struct conn *c = &s->conns[slot];
		c->rbuf = malloc(RBUF_SIZE);
		if (!c->rbuf || gw_frame_init(&c->frame, s->cfg.max_request) != 0) {
			free(c->rbuf);
			c->rbuf = NULL;
			refuse(s, fd, SHMEX_ECONNSFULL);
			continue;
		}
		int one = 1;
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		struct epoll_event e = {.events = EPOLLIN,
					.data.u64 = conn_tag(slot, c->gen)};
		if (epoll_ctl(s->ep, EPOLL_CTL_ADD, fd, &e) != 0) {
			gw_frame_free(&c->frame);
			free(c->rbuf);
			c->rbuf = NULL;
			refuse(s, fd, SHMEX_ECONNSFULL);
			continue;
		}
		s->nfree--;
		c->fd = fd;
		c->state = C_OPEN;
		c->events = EPOLLIN;
		memcpy(c->peer, key, sizeof(key));
		conn_arm_idle(s, c);
		s->st.accepted++;
		s->st.open++;
	}
	if (taken)
		listen_rotate(s);
}

/* Fires due deadlines and recomputes the earliest one. */
static void sweep(struct gw_server *s, uint64_t now)
{
	uint64_t next = 0;
	for (uint32_t i = 0; i < s->cfg.max_conns; i++) {
		struct conn *c = &s->conns[i];
		if (c->state == C_FREE)
			continue;
		if (c->wdeadline && now >= c->wdeadline) {
			/* The peer does not read its replies: reset the
			 * connection, so the kernel drops the unsent bytes
			 * too instead of trickling them into a zero
			 * window. */
			struct linger lg = {.l_onoff = 1, .l_linger = 0};
			setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
			s->st.deadlines++;
			conn_close(s, i);
			continue;
		}
		if (c->rdeadline && now >= c->rdeadline) {
			if (c->state == C_LINGER) {
				conn_close(s, i);
				continue;
			}
			c->rdeadline = 0;
			if (c->state == C_OPEN && !c->busy &&
			    gw_frame_in_request(&c->frame)) {
				s->st.deadlines++;
				conn_fail(s, i, "Request not completed in time");
				if (c->state == C_FREE)
					continue;
			}
		}
		if (c->ideadline && now >= c->ideadline) {
			c->ideadline = 0;
			if (conn_idle(c)) {
				s->st.idle_closed++;
				conn_close(s, i);
				continue;
			}
			if (s->cfg.idle_ms != GW_SERVER_IDLE_NEVER)
				c->ideadline = now + ms_ns(s->cfg.idle_ms);
		}
		if (c->ideadline && (!next || c->ideadline < next))
			next = c->ideadline;
		if (c->rdeadline && (!next || c->rdeadline < next))
			next = c->rdeadline;
		if (c->wdeadline && (!next || c->wdeadline < next))
			next = c->wdeadline;
	}
	s->next_deadline = next;
}

int gw_server_create(struct gw_server **out, const struct gw_server_cfg *cfg,
		     const struct gw_server_ops *ops)
{
	if (!ops || !ops->request || cfg->listen_fd < 0)
		return -EINVAL;
	struct gw_server *s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->cfg = *cfg;
	s->ops = *ops;
	if (!s->cfg.max_conns)
		s->cfg.max_conns = GW_SERVER_MAX_CONNS_DEFAULT;
	if (s->cfg.max_conns > GW_SERVER_MAX_CONNS_LIMIT)
		s->cfg.max_conns = GW_SERVER_MAX_CONNS_LIMIT;
	if (!s->cfg.max_request)
		s->cfg.max_request = GW_FRAME_MAX_DEFAULT;
	if (!s->cfg.deadline_ms)
		s->cfg.deadline_ms = GW_SERVER_DEADLINE_MS_DEFAULT;
	if (!s->cfg.wbuf_high)
		s->cfg.wbuf_high = GW_SERVER_WBUF_HIGH_DEFAULT;
	if (!s->cfg.drain_ms)
		s->cfg.drain_ms = GW_SERVER_DRAIN_MS_DEFAULT;
	if (!s->cfg.max_unsent)
		s->cfg.max_unsent = GW_SERVER_MAX_UNSENT_DEFAULT;
	if (!s->cfg.idle_ms)
		s->cfg.idle_ms = GW_SERVER_IDLE_MS_DEFAULT;
	if (!s->cfg.max_per_peer)
		s->cfg.max_per_peer = GW_SERVER_PER_PEER_DEFAULT;
	int rc = -ENOMEM;
	uint32_t n = s->cfg.max_conns;
	s->conns = calloc(n, sizeof(*s->conns));
	s->free_stack = calloc(n, sizeof(*s->free_stack));
	s->readyq = calloc(n, sizeof(*s->readyq));
	if (!s->conns || !s->free_stack || !s->readyq)
		goto out_free;
	for (uint32_t i = 0; i < n; i++) {
		s->conns[i].fd = -1;
		s->free_stack[i] = n - 1 - i; /* slot 0 is handed out first */
	}
	s->nfree = n;
	s->ep = epoll_create1(EPOLL_CLOEXEC);
	if (s->ep < 0) {
		rc = -errno;
		goto out_free;
	}
	int fl = fcntl(cfg->listen_fd, F_GETFL);
	if (fl < 0 || fcntl(cfg->listen_fd, F_SETFL, fl | O_NONBLOCK) != 0) {
		rc = -errno;
		goto out_epoll;
	}
	listen_set(s, true);
	if (!s->listening) {
		rc = -errno;
		goto out_epoll;
	}
	s->poll_hint = -1;
	s->in_process = UINT32_MAX;
	*out = s;
	return 0;
out_epoll:
	close(s->ep);
out_free:
	free(s->conns);
	free(s->free_stack);
	free(s->readyq);
	free(s);
	return rc;
}

int gw_server_watch(struct gw_server *s, int fd, void (*cb)(void *arg), void *arg)
{
	if (s->nwatch == MAX_WATCH || fd < 0 || !cb)
		return -EINVAL;
	struct epoll_event e = {.events = EPOLLIN,
				.data.u64 = TAG_WATCH0 + (uint64_t)s->nwatch};
	if (epoll_ctl(s->ep, EPOLL_CTL_ADD, fd, &e) != 0)
		return -errno;
	s->watches[s->nwatch++] = (struct watch){fd, cb, arg};
	return 0;
}

void gw_server_stop(struct gw_server *s)
{
	if (s->stopping)
		return;
	s->stopping = true;
	s->drain_deadline = shm_clock_ns(CLOCK_MONOTONIC) + ms_ns(s->cfg.drain_ms);
	listen_set(s, false);
	s->accept_resume = 0;
	for (uint32_t i = 0; i < s->cfg.max_conns; i++)
		if (s->conns[i].state == C_OPEN)
			ready_push(s, i);
}

int gw_server_reply(struct gw_server *s, struct gw_conn_ref ref, const char *data,
		    size_t len)
{
	if (ref.slot >= s->cfg.max_conns)
		return -ENOENT;
	struct conn *c = &s->conns[ref.slot];
	if (c->state == C_FREE || c->gen != ref.gen)
		return -ENOENT;
	if (!c->busy)
		return -EINVAL;
	c->busy = false;
	int rc = conn_append_reply(s, c, data, len);
	if (rc) {
		conn_close(s, ref.slot);
		return rc;
	}
	conn_arm_idle(s, c);
	if (!conn_flush(s, ref.slot))
		return 0;
	/* Pipelined input, a half-close or a drain waits for this (unless
	 * we are inside conn_process for this slot, which goes on anyway). */
	if (ref.slot != s->in_process)
		ready_push(s, ref.slot);
	return 0;
}

int gw_server_reply_part(struct gw_server *s, struct gw_conn_ref ref, const char *data,
			 size_t len)
{
	if (ref.slot >= s->cfg.max_conns)
		return -ENOENT;
	struct conn *c = &s->conns[ref.slot];
	if (c->state == C_FREE || c->gen != ref.gen)
		return -ENOENT;
	if (!c->busy || s->cfg.frame_replies)
		return -EINVAL;
	int rc = conn_append(s, c, data, len);
	if (rc) {
		conn_close(s, ref.slot);
		return rc;
	}
	(void)conn_flush(s, ref.slot);
	return 0;
}

bool gw_server_may_send(const struct gw_server *s, struct gw_conn_ref ref)
{
	if (ref.slot >= s->cfg.max_conns)
		return false;
	const struct conn *c = &s->conns[ref.slot];
	if (c->state == C_FREE || c->gen != ref.gen)
		return false;
	return conn_pending(c) <= s->cfg.wbuf_high && s->st.unsent <= s->cfg.max_unsent;
}

void gw_server_get_stats(const struct gw_server *s, struct gw_server_stats *st)
{
	*st = s->st;
}

static int loop_timeout(struct gw_server *s, uint64_t now)
{
	if (s->rq_n > 0)
		return 0;
	long long t = s->poll_hint; /* -1: no limit from the handler */
	uint64_t wake = s->next_deadline;
	if (s->accept_resume && (!wake || s->accept_resume < wake))
		wake = s->accept_resume;
	if (s->stopping && (!wake || s->drain_deadline < wake))
		wake = s->drain_deadline;
	if (wake) {
		long long ms =
			wake > now ? (long long)((wake - now + 999999) / 1000000) : 0;
		if (t < 0 || ms < t)
			t = ms;
	}
	return t > 60000 ? 60000 : (int)t;
}

/*
 * The drain time is over: the handler answers every executing request at
 * once, saying what became of each item (ops.drain); a request it did not
 * answer is aborted.  The replies then get LINGER_MS to reach the clients
 * before every connection is closed.
 */
static void drain_now(struct gw_server *s, uint64_t now)
{
	s->drained = true;
	if (s->ops.drain)
		s->ops.drain(s->ops.ctx);
	for (uint32_t i = 0; i < s->cfg.max_conns; i++) {
		struct conn *c = &s->conns[i];
		if (c->state == C_FREE)
			continue;
		if (c->busy)
			conn_close(s, i);
		else if (c->state == C_OPEN)
			ready_push(s, i);
	}
	s->drain_deadline = now + ms_ns(LINGER_MS);
}

/* Total output fell back under max_unsent: the connections that were
 * denied input for it may read and start requests again. */
static void out_unblock(struct gw_server *s)
{
	if (!s->out_blocked || s->st.unsent > s->cfg.max_unsent)
		return;
	s->out_blocked = false;
	for (uint32_t i = 0; i < s->cfg.max_conns; i++) {
		struct conn *c = &s->conns[i];
		if (c->state != C_OPEN || c->busy)
			continue;
		conn_update_events(s, c, i, false);
		if (c->rpos < c->rlen)
			ready_push(s, i);
	}
}

int gw_server_run(struct gw_server *s)
{
	struct epoll_event evs[64];
	for (;;) {
		uint64_t now = shm_clock_ns(CLOCK_MONOTONIC);
		if (s->stopping) {
			if (s->st.open == 0)
				return 0;
			if (now >= s->drain_deadline && s->drained) {
				for (uint32_t i = 0; i < s->cfg.max_conns; i++)
					conn_close(s, i);
				return 0;
			}
			if (now >= s->drain_deadline)
				drain_now(s, now);
		}
		int n = epoll_wait(s->ep, evs, 64, loop_timeout(s, now));
		if (n < 0) {
			if (errno != EINTR)
				return -errno;
			n = 0;
		}
		for (int i = 0; i < n; i++) {
			uint64_t tag = evs[i].data.u64;
			if (tag == TAG_LISTEN) {
				if (s->listening)
					do_accept(s);
				continue;
			}
			if (tag >= TAG_WATCH0) {
				struct watch *w = &s->watches[tag - TAG_WATCH0];
				w->cb(w->arg);
				continue;
			}
			uint32_t slot = (uint32_t)(tag & 0xffff);
			uint32_t gen = (uint32_t)(tag >> 16);
			if (slot >= s->cfg.max_conns)
				continue;
			struct conn *c = &s->conns[slot];
			if (c->state == C_FREE || c->gen != gen)
				continue;
			uint32_t ev = evs[i].events;
			if (ev & EPOLLERR) {
				/* Reset or similar: nothing can reach the
				 * client any more. */
				conn_close(s, slot);
				continue;
			}
			if ((ev & EPOLLHUP) && c->busy) {
				conn_close(s, slot);
				continue;
			}
			if (ev & (EPOLLOUT | EPOLLHUP)) {
				if (!conn_flush(s, slot))
					continue;
			}
			if (ev & (EPOLLIN | EPOLLHUP))
				conn_readable(s, slot);
		}
		out_unblock(s);
		/* Connections whose reply went out and that have more to do. */
		for (uint32_t k = s->rq_n; k > 0; k--) {
			uint32_t slot = s->readyq[s->rq_head];
			s->rq_head = (s->rq_head + 1) % s->cfg.max_conns;
			s->rq_n--;
			s->conns[slot].queued = false;
			if (s->conns[slot].state == C_OPEN)
				conn_process(s, slot);
		}
		if (s->ops.poll)
			s->poll_hint = s->ops.poll(s->ops.ctx);
		now = shm_clock_ns(CLOCK_MONOTONIC);
		if (s->next_deadline && now >= s->next_deadline)
			sweep(s, now);
		if (s->accept_resume && now >= s->accept_resume && !s->stopping) {
			listen_set(s, true);
			s->accept_resume =
				s->listening ? 0 : now + ms_ns(ACCEPT_PAUSE_MS);
		}
	}
}

void gw_server_destroy(struct gw_server *s)
{
	if (!s)
		return;
	for (uint32_t i = 0; i < s->cfg.max_conns; i++)
		conn_close(s, i);
	listen_set(s, false);
	close(s->ep);
	free(s->conns);
	free(s->free_stack);
	free(s->readyq);
	free(s);
}
