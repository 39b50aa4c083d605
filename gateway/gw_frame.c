/*
 * gw_frame: length-line framing of ECE 568 requests (see gw_frame.h).
 *
 * Shape: a byte-at-a-time state machine for the length line (it is a few
 * bytes long, so the per-byte cost is irrelevant) and a bulk copy for the
 * body.  The state survives between feeds, so any split of the stream, down
 * to one byte per feed, gives the same requests as one big feed.
 *
 * Invariants:
 *  - state LINE: want == have == 0; ndigits <= GW_FRAME_MAX_DIGITS and the
 *    value accumulated in want never exceeds max_len.
 *  - state BODY: want <= max_len, have < want (a complete body is returned
 *    at once and the frame goes back to LINE), have <= cap.
 *  - state FAILED: err < 0, and nothing is consumed any more.
 *  - buf is only ever as large as the bytes stored in it (rounded up to a
 *    power of two, at least 4 KiB) and never larger than want.
 *
 * Limits: a length line has at most GW_FRAME_MAX_DIGITS digits; max_len is
 * at most GW_FRAME_MAX_LIMIT.  Nothing here reads a clock: the deadline for
 * slow clients belongs to the caller (gw_frame_in_request).
 */
#include "gateway/gw_frame.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "shm/shm_error.h"

#define FRAME_MIN_BUF 4096

int gw_frame_init(struct gw_frame *f, size_t max_len)
{
	if (max_len == 0)
		max_len = GW_FRAME_MAX_DEFAULT;
	if (max_len > GW_FRAME_MAX_LIMIT)
		return -EINVAL;
	memset(f, 0, sizeof(*f));
	f->max_len = max_len;
	f->state = GW_FRAME_LINE;
	return 0;
}

void gw_frame_free(struct gw_frame *f)
{
	free(f->buf);
	f->buf = NULL;
	f->cap = 0;
	f->have = 0;
}

bool gw_frame_in_request(const struct gw_frame *f)
{
	return f->state == GW_FRAME_BODY ||
	       (f->state == GW_FRAME_LINE && f->line_started);
}

static int frame_fail(struct gw_frame *f, int err)
{
	f->state = GW_FRAME_FAILED;
	f->err = err;
	return err;
}

static void frame_line_reset(struct gw_frame *f)
{
	f->line_started = false;
	f->line_done = false;
	f->line_cr = false;
	f->ndigits = 0;
	f->want = 0;
	f->have = 0;
}

static bool is_blank(char c)
{
	return c == ' ' || c == '\t';
}

/* Makes room for `more` body bytes after the `have` already stored. */
static int frame_reserve(struct gw_frame *f, size_t more)
{
	size_t need = f->have + more;
	if (need <= f->cap)
		return 0;
	size_t cap = f->cap ? f->cap : FRAME_MIN_BUF;
	while (cap < need)
		cap *= 2;
	if (cap > f->want)
		cap = f->want;
	char *nb = realloc(f->buf, cap);
	if (nb == NULL)
		return -ENOMEM;
	f->buf = nb;
	f->cap = cap;
	return 0;
}

/* Called when a request has been handed out: back to LINE, and drop a big
 * buffer (it is not in use any more once the caller calls feed again, but
 * the request it holds must stay valid until then, so the release happens
 * at the start of the next feed). */
static void frame_release_big(struct gw_frame *f)
{
	if (f->cap > GW_FRAME_KEEP_BUF) {
		free(f->buf);
		f->buf = NULL;
		f->cap = 0;
	}
}

/* Consumes length-line bytes; returns 1 when the line is complete (state
 * becomes BODY), 0 when input ran out, or an error. */
static int frame_line(struct gw_frame *f, const char *data, size_t len, size_t *pos)
{
	while (*pos < len) {
		char c = data[*pos];
		if (!f->line_started) {
			if (is_blank(c) || c == '\r' || c == '\n') {
				(*pos)++;
				continue;
			}
			if (c < '0' || c > '9')
				return frame_fail(f, SHMEX_EBADLENGTH);
			f->line_started = true;
		}
		if (f->line_cr) {
			if (c != '\n')
				return frame_fail(f, SHMEX_EBADLENGTH);
		} else if (c >= '0' && c <= '9' && !f->line_done) {
			if (++f->ndigits > GW_FRAME_MAX_DIGITS)
				return frame_fail(f, SHMEX_ELENGTHDIGITS);
			/* No overflow: want <= max_len <= 2^30 before this. */
			f->want = f->want * 10 + (size_t)(c - '0');
			if (f->want > f->max_len)
				return frame_fail(f, SHMEX_ETOOBIG);
			(*pos)++;
			continue;
		} else if (is_blank(c)) {
			f->line_done = true;
			(*pos)++;
			continue;
		} else if (c == '\r') {
			f->line_cr = true;
			(*pos)++;
			continue;
		} else if (c != '\n') {
			return frame_fail(f, SHMEX_EBADLENGTH);
		}
		/* c == '\n': the line is complete. */
		(*pos)++;
		f->state = GW_FRAME_BODY;
		f->have = 0;
		return 1;
	}
	return 0;
}

int gw_frame_feed(struct gw_frame *f, const char *data, size_t len, size_t *used,
		  const char **req, size_t *req_len)
{
	size_t pos = 0;
	int rc;

	*used = 0;
	if (f->state == GW_FRAME_FAILED)
		return f->err;
	if (f->state == GW_FRAME_LINE && !f->line_started)
		frame_release_big(f);

	if (f->state == GW_FRAME_LINE) {
		rc = frame_line(f, data, len, &pos);
		if (rc <= 0) {
			*used = pos;
			return rc;
		}
	}

	/* state BODY */
	size_t avail = len - pos;
	size_t missing = f->want - f->have;
	if (f->have == 0 && avail >= missing) {
		/* Whole body inside this feed: hand out the caller's bytes. */
		*req = data + pos;
		*req_len = f->want;
		pos += missing;
		goto complete;
	}
	size_t take = avail < missing ? avail : missing;
	if (take > 0) {
		rc = frame_reserve(f, take);
		if (rc < 0) {
			*used = pos;
			return frame_fail(f, rc);
		}
		memcpy(f->buf + f->have, data + pos, take);
		f->have += take;
		pos += take;
	}
	if (f->have < f->want) {
		*used = pos;
		return 0;
	}
	*req = f->buf;
	*req_len = f->want;

complete:
	*used = pos;
	frame_line_reset(f);
	f->state = GW_FRAME_LINE;
	f->requests++;
	return 1;
}
