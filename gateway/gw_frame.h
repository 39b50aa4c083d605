/*
 * gw_frame: incremental parser of the length-line framing of the ECE 568
 * protocol ("<decimal byte count>\n<that many bytes of XML>"), one per
 * connection.  Pure: no I/O, no clock; the caller feeds whatever bytes a
 * read() returned and gets complete requests back one at a time.
 *
 * Memory: a request whose body arrives inside one feed is returned as a
 * pointer into the caller's bytes (no copy).  Only a body split across
 * feeds is copied, into a buffer owned by the frame, allocated lazily and
 * grown as bytes actually arrive (never beyond the declared length, which is
 * checked against max_len before a single body byte is stored).
 *
 * Concurrency: a frame belongs to one connection and one thread.
 */
#ifndef SHMEX_GW_FRAME_H
#define SHMEX_GW_FRAME_H

#include "shm/shm_settings.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define GW_FRAME_MAX_DEFAULT ((size_t)SHM_DEFAULT_MAX_REQUEST) /* 1 MiB */
#define GW_FRAME_MAX_LIMIT ((size_t)SHM_SETTINGS_REQUEST_MAX)  /* largest max_len */
#define GW_FRAME_MAX_DIGITS 10 /* digits in a length line, leading 0s too */
/* A body buffer above this size is released once its request is consumed,
 * so an idle connection does not keep a large allocation. */
#define GW_FRAME_KEEP_BUF ((size_t)64 << 10)

enum gw_frame_state {
	GW_FRAME_LINE = 0, /* between requests, or inside a length line */
	GW_FRAME_BODY,     /* length known, collecting the body */
	GW_FRAME_FAILED,   /* a framing error: the connection must close */
};

struct gw_frame {
	size_t max_len;    /* largest accepted body */
	uint8_t state;     /* enum gw_frame_state */
	bool line_started; /* a digit of the current length line was seen */
	bool line_done;    /* digits over: only blanks, '\r', '\n' may follow */
	bool line_cr;      /* a '\r' ended the digits: only '\n' may follow */
	uint8_t ndigits;   /* digits seen in the current length line */
	int err;           /* sticky error once FAILED */
	size_t want;       /* declared body length */
	size_t have;       /* body bytes stored in buf */
	char *buf;         /* body buffer for split bodies (lazy) */
	size_t cap;        /* allocated size of buf */
	uint64_t requests; /* complete requests returned so far */
};

/* Prepares a frame; max_len 0 means GW_FRAME_MAX_DEFAULT.  Returns -EINVAL
 * when max_len is above GW_FRAME_MAX_LIMIT.  Allocates nothing. */
int gw_frame_init(struct gw_frame *f, size_t max_len) __attribute__((warn_unused_result));
/* Releases the body buffer; the frame may be initialised again. */
void gw_frame_free(struct gw_frame *f);

/*
 * Consumes bytes from data[0..len) until one request is complete or the
 * input runs out; *used says how many were consumed (feed the rest again
 * later).  Returns:
 *   1  a request is complete: *req and *req_len hold its XML bytes, which stay
 *      valid until the next call on this frame and as long as the caller
 *      does not overwrite data (they may point into it);
 *   0  every byte was consumed and no request is complete yet;
 *   <0 a framing error; the frame stays FAILED and returns the same error
 *      from then on (the caller replies if it can and closes):
 *      SHMEX_EBADLENGTH     the length line is not a decimal number
 *      SHMEX_ELENGTHDIGITS  more than GW_FRAME_MAX_DIGITS digits
 *      SHMEX_ETOOBIG        the length is above max_len (detected as soon
 *                           as the digits exceed it, before any body byte)
 *      -ENOMEM              the body buffer could not grow.
 * Blank bytes (space, tab, '\r', '\n') before a length line are skipped, so
 * a trailing newline not counted in the previous length is harmless.  After
 * the digits, blanks and an optional '\r' may precede the '\n'.  A length of
 * 0 yields an empty request (which the XML layer rejects).
 */
int gw_frame_feed(struct gw_frame *f, const char *data, size_t len, size_t *used,
		  const char **req, size_t *req_len) __attribute__((warn_unused_result));

/* True while a request has started (a digit of its length line arrived) and
 * is not complete: the caller arms its slow-client deadline on this. */
bool gw_frame_in_request(const struct gw_frame *f);

#endif
