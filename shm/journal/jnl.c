/*
 * jnl: the time-ordered merge of a data directory's journals and the
 * audit log (contract in jnl.h, bytes and rules in docs/durability.md).
 *
 * Shape.  One source per shard wraps a segment reader (shm_jreader) and
 * holds at most one record ahead (its head), so a merge of n shards holds
 * n records plus the readers' buffers, whatever the journals' size.  A
 * merge step repeatedly takes the smallest head below the caller's bound;
 * a source whose reader has no complete record left is "exhausted" for
 * the rest of the step (the bound guarantees that nothing below it can
 * still arrive there).  A live source (follow) also notices when its
 * matcher started the next segment: segments are contiguous, so the next
 * one is named by the sequence the reader expects next.
 *
 * The audit log is written by the caller (jnl_out) and recovered from its
 * end (jnl_audit_tail): records are self-describing (length, CRC), start
 * at multiples of 8 from the file's start, and carry their merge key, so
 * the last good record is found from the last 4 KiB alone, and it says
 * which records of every shard are in the log: exactly those whose key is
 * at or below its key.
 */
#include "shm/journal/jnl.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define OUT_CAP (256u << 10)
#define TAIL_WINDOW 4096u
#define SCAN_BUF (1u << 20)

/* ---- header and order --------------------------------------------------- */

void jnl_audit_hdr_init(struct jnl_audit_hdr *h, uint32_t nshards)
{
	memset(h, 0, sizeof(*h));
	h->magic = JNL_AUDIT_MAGIC;
	h->version = JNL_AUDIT_VERSION;
	h->nshards = nshards;
	h->hdr_crc = shm_crc32c(0, h, sizeof(*h));
}

int jnl_audit_hdr_check(const struct jnl_audit_hdr *h, struct shmex_error *e)
{
	struct jnl_audit_hdr c = *h;
	c.hdr_crc = 0;
	if (h->magic != JNL_AUDIT_MAGIC)
		return shmex_error_set(e, SHMEX_EJCORRUPT, "not a shmex audit log");
	if (h->version != JNL_AUDIT_VERSION)
		return shmex_error_set(e, SHMEX_EJCORRUPT,
				       "audit log version %u, this build reads %u",
				       h->version, JNL_AUDIT_VERSION);
	if (shm_crc32c(0, &c, sizeof(c)) != h->hdr_crc)
		return shmex_error_set(e, SHMEX_EJCORRUPT, "audit log header checksum");
	return 0;
}

int jnl_key_cmp(const struct shm_jrec_hdr *a, const struct shm_jrec_hdr *b)
{
	if (a->time_ns != b->time_ns)
		return a->time_ns < b->time_ns ? -1 : 1;
	if (a->shard != b->shard)
		return a->shard < b->shard ? -1 : 1;
	if (a->seq != b->seq)
		return a->seq < b->seq ? -1 : 1;
	return 0;
}

int jnl_data_shards(const char *dir, uint32_t *n, struct shmex_error *e)
{
	char path[SHM_JOURNAL_PATH_MAX + 32];
	snprintf(path, sizeof(path), "%s/exchange.conf", dir);
	FILE *f = fopen(path, "re");
	if (f) {
		char line[128];
		unsigned long v = 0;
		bool seen = false;
		while (fgets(line, sizeof(line), f))
			if (sscanf(line, "shards %lu", &v) == 1)
				seen = true;
		fclose(f);
		if (!seen || v == 0 || v > 64)
			return shmex_error_set(e, SHMEX_EJCORRUPT,
					       "%s: no valid \"shards N\" line", path);
		*n = (uint32_t)v;
		return 0;
	}
	uint32_t k = 0;
	for (;; k++) {
		struct stat st;
		if (shm_journal_shard_dir(path, sizeof(path), dir, k) != 0 ||
		    stat(path, &st) != 0 || !S_ISDIR(st.st_mode))
			break;
	}
	if (k == 0)
		return shmex_error_set(e, -ENOENT,
				       "%s: not a data directory (no exchange.conf, "
				       "no shard-0)",
				       dir);
	*n = k;
	return 0;
}

/* ---- sources ------------------------------------------------------------ */

/* The first record header of segment i, when it has one. */
static bool first_record(const struct shm_jdir *d, uint32_t i, struct shm_jrec_hdr *h)
{
	int fd = open(d->seg[i], O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	ssize_t n = pread(fd, h, sizeof(*h), (off_t)sizeof(struct shm_jseg_hdr));
	close(fd);
	return n == (ssize_t)sizeof(*h);
}

/* Where to start reading for records after the cursor: the last segment
 * whose first record is at or before it (times never go back, so no
 * earlier segment holds anything after it). */
static uint64_t start_seq(const struct jnl_src *s, struct shmex_error *e)
{
	struct shm_jdir d;
	if (shm_jdir_list(&d, s->dir, e) != 0)
		return 0;
	uint64_t from = d.nseg ? d.seg_first[0] : 0;
	for (uint32_t i = 0; s->has_cursor && i < d.nseg; i++) {
		struct shm_jrec_hdr h;
		if (!first_record(&d, i, &h) || jnl_key_cmp(&h, &s->cursor) > 0)
			break;
		from = d.seg_first[i];
	}
	shm_jdir_free(&d);
	return from;
}

static int src_start(struct jnl_src *s, uint64_t from, struct shmex_error *e)
{
	if (from == 0)
		from = start_seq(s, e);
	int rc = shm_jreader_open(&s->rd, s->dir, s->shard, s->nshards, from, e);
	if (rc)
		return rc;
	s->rd.follow = s->follow;
	s->open = true;
	s->exhausted = false;
	s->has_head = false;
	return 0;
}

int jnl_src_open(struct jnl_src *s, const char *dir, uint32_t shard, uint32_t nshards,
		 bool follow, const struct shm_jrec_hdr *cursor, struct shmex_error *e)
{
	memset(s, 0, sizeof(*s));
	s->shard = shard;
	s->nshards = nshards;
	s->follow = follow;
	s->limit_seq = UINT64_MAX;
	if (cursor) {
		s->has_cursor = true;
		s->cursor = *cursor;
	}
	if (shm_journal_shard_dir(s->dir, sizeof(s->dir), dir, shard) != 0)
		return shmex_error_set(e, -ENAMETOOLONG, "%s: path too long", dir);
	struct stat st;
	if (stat(s->dir, &st) != 0) {
		int rc = -errno;
		return shmex_error_set(e, rc, "%s: %s", s->dir, strerror(-rc));
	}
	return src_start(s, 0, e);
}

int jnl_src_reopen(struct jnl_src *s, struct shmex_error *e)
{
	uint64_t from = s->last_seq ? s->last_seq + 1 : 0;
	if (s->open)
		shm_jreader_close(&s->rd);
	s->open = false;
	return src_start(s, from, e);
}

void jnl_src_close(struct jnl_src *s)
{
	if (s->open)
		shm_jreader_close(&s->rd);
	s->open = false;
	s->has_head = false;
}

int jnl_src_find_limit(struct jnl_src *s, struct shmex_error *e)
{
	struct shm_jrec r;
	uint64_t limit = 0;
	for (;;) {
		int rc = shm_jreader_next(&s->rd, &r, e);
		if (rc == 1) {
			if (r.h.flags & SHM_JREC_END)
				limit = r.h.seq;
			continue;
		}
		if (rc == SHMEX_EJTORN) {
			s->torn = true;
			snprintf(s->torn_msg, sizeof(s->torn_msg), "%s",
				 shmex_error_msg(e, rc));
			break;
		}
		if (rc)
			return rc;
		break;
	}
	shm_jreader_close(&s->rd);
	s->open = false;
	int rc = src_start(s, 0, e);
	s->limit_seq = limit;
	return rc;
}

/* A live reader at the end of its segments: did the matcher start the
 * next one (a full segment, or a restart)? */
static bool next_segment_exists(const struct jnl_src *s)
{
	char path[SHM_JOURNAL_PATH_MAX + 64];
	if (s->rd.next_seq == 0) /* no segment when we opened */
		snprintf(path, sizeof(path), "%s", s->dir);
	else
		snprintf(path, sizeof(path), "%s/journal-%016" PRIx64 ".log", s->dir,
			 s->rd.next_seq);
	if (s->rd.next_seq == 0) {
		struct shm_jdir d;
		struct shmex_error ignored;
		if (shm_jdir_list(&d, path, &ignored) != 0)
			return false;
		bool any = d.nseg > 0;
		shm_jdir_free(&d);
		return any;
	}
	return access(path, F_OK) == 0;
}

/* Makes the head available: 1 with one, 0 when there is none now. */
static int src_peek(struct jnl_src *s, struct shmex_error *e)
{
	if (s->has_head)
		return 1;
	if (s->exhausted || !s->open)
		return 0;
	for (;;) {
		int rc = shm_jreader_next(&s->rd, &s->head, e);
		if (rc == 1) {
			if (s->head.h.seq > s->limit_seq)
				break;
			if (s->has_cursor && jnl_key_cmp(&s->head.h, &s->cursor) <= 0) {
				s->last_seq = s->head.h.seq; /* merged before */
				continue;
			}
			s->has_head = true;
			return 1;
		}
		if (rc == SHMEX_EJTORN && !s->follow) {
			s->torn = true;
			snprintf(s->torn_msg, sizeof(s->torn_msg), "%s",
				 shmex_error_msg(e, rc));
			break;
		}
		if (rc != 0 && rc != SHMEX_EJTORN)
			return rc;
		/* Torn while following: a segment header being written. */
		if (rc == SHMEX_EJTORN || !s->follow || !next_segment_exists(s))
			break;
		/* Continue in the next segment, after what was read. */
		uint64_t from = s->rd.next_seq;
		shm_jreader_close(&s->rd);
		s->open = false;
		rc = src_start(s, from, e);
		if (rc)
			return rc;
	}
	s->exhausted = true;
	return 0;
}

int64_t jnl_merge_step(struct jnl_src *src, uint32_t n, uint64_t below, uint64_t max,
		       jnl_put_fn put, void *arg, struct shmex_error *e)
{
	for (uint32_t i = 0; i < n; i++)
		src[i].exhausted = false;
	int64_t taken = 0;
	while ((uint64_t)taken < max) {
		int best = -1;
		for (uint32_t i = 0; i < n; i++) {
			int rc = src_peek(&src[i], e);
			if (rc < 0)
				return rc;
			if (rc == 0 || src[i].head.h.time_ns >= below)
				continue;
			if (best < 0 ||
			    jnl_key_cmp(&src[i].head.h, &src[best].head.h) < 0)
				best = (int)i;
		}
		if (best < 0)
			break;
		struct jnl_src *s = &src[best];
		int rc = put(arg, &s->head);
		if (rc)
			return rc;
		s->last_seq = s->head.h.seq;
		s->taken++;
		s->has_head = false;
		taken++;
	}
	return taken;
}

/* ---- output ------------------------------------------------------------- */

int jnl_out_init(struct jnl_out *o, int fd)
{
	memset(o, 0, sizeof(*o));
	o->fd = fd;
	o->buf = malloc(OUT_CAP);
	if (!o->buf)
		return -ENOMEM;
	o->cap = OUT_CAP;
	return 0;
}

int jnl_out_flush(struct jnl_out *o)
{
	size_t done = 0;
	while (done < o->len && !o->err) {
		ssize_t w = write(o->fd, o->buf + done, o->len - done);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			o->err = w < 0 ? -errno : -EIO;
		else
			done += (size_t)w;
	}
	o->len = 0;
	return o->err;
}

int jnl_out_raw(struct jnl_out *o, const void *p, size_t len)
{
	if (o->len + len > o->cap && jnl_out_flush(o) != 0)
		return o->err;
	memcpy(o->buf + o->len, p, len);
	o->len += len;
	o->bytes += len;
	return 0;
}

int jnl_out_put(void *arg, const struct shm_jrec *r)
{
	struct jnl_out *o = arg;
	int rc = jnl_out_raw(o, r, r->h.len);
	if (rc)
		return rc;
	o->records++;
	o->last = r->h;
	o->has_last = true;
	return 0;
}

void jnl_out_free(struct jnl_out *o)
{
	free(o->buf);
	o->buf = NULL;
}

/* ---- recovering an audit log's end --------------------------------------- */

/* Follows the chain of good records from `from`; *end gets where it
 * stops. */
static int scan(int fd, const char *path, off_t from, off_t size, off_t *end,
		bool *has_last, struct shm_jrec_hdr *last, struct shmex_error *e)
{
	uint8_t *buf = malloc(SCAN_BUF);
	if (!buf)
		return shmex_error_set(e, -ENOMEM, "out of memory");
	off_t pos = from; /* file offset of buf[0] */
	size_t lo = 0, hi = 0;
	for (;;) {
		size_t len = 0;
		int rc = shm_jrec_check(buf + lo, hi - lo, &len);
		if (rc == 0) {
			memcpy(last, buf + lo, sizeof(*last));
			*has_last = true;
			lo += len;
			continue;
		}
		if (rc == SHMEX_EJTORN && pos + (off_t)hi < size) {
			memmove(buf, buf + lo, hi - lo);
			pos += (off_t)lo;
			hi -= lo;
			lo = 0;
			ssize_t n = pread(fd, buf + hi, SCAN_BUF - hi, pos + (off_t)hi);
			if (n < 0) {
				rc = -errno;
				free(buf);
				return shmex_error_set(e, rc, "read %s: %s", path,
						       strerror(-rc));
			}
			if (n > 0) {
				hi += (size_t)n;
				continue;
			}
		}
		break;
	}
	*end = pos + (off_t)lo;
	free(buf);
	return 0;
}

int jnl_audit_tail(int fd, const char *path, uint32_t nshards, off_t *end, bool *has_last,
		   struct shm_jrec_hdr *last, struct shmex_error *e)
{
	*has_last = false;
	struct stat st;
	if (fstat(fd, &st) != 0) {
		int rc = -errno;
		return shmex_error_set(e, rc, "stat %s: %s", path, strerror(-rc));
	}
	off_t size = st.st_size;
	if (size < (off_t)sizeof(struct jnl_audit_hdr)) {
		*end = 0; /* no header yet (or a torn one) */
		return 0;
	}
	struct jnl_audit_hdr h;
	if (pread(fd, &h, sizeof(h), 0) != (ssize_t)sizeof(h))
		return shmex_error_set(e, -EIO, "read %s: short read", path);
	int rc = jnl_audit_hdr_check(&h, e);
	if (rc)
		return shmex_error_wrap(e, rc, "%s", path);
	if (nshards && h.nshards != nshards)
		return shmex_error_set(e, SHMEX_EJCORRUPT,
				       "%s merges %u shards, this exchange has %u", path,
				       h.nshards, nshards);
	off_t from = (off_t)sizeof(h);
	if (size - from > (off_t)TAIL_WINDOW) {
		/* Find a record boundary in the last 4 KiB. */
		off_t ws = size - (off_t)TAIL_WINDOW;
		ws = from + ((ws - from) & ~(off_t)7);
		size_t wl = (size_t)(size - ws);
		uint8_t *w = malloc(wl);
		if (!w)
			return shmex_error_set(e, -ENOMEM, "out of memory");
		if (pread(fd, w, wl, ws) != (ssize_t)wl) {
			free(w);
			return shmex_error_set(e, -EIO, "read %s: short read", path);
		}
		for (size_t off = 0; off + SHM_JREC_HDR <= wl; off += 8) {
			size_t len;
			if (shm_jrec_check(w + off, wl - off, &len) == 0) {
				from = ws + (off_t)off;
				break;
			}
		}
		free(w);
		/* None there (4 KiB of damage): scan from the start. */
	}
	return scan(fd, path, from, size, end, has_last, last, e);
}

/* ---- offline merge -------------------------------------------------------- */

int jnl_merge_dir(const char *dir, int fd, const char *prog, uint64_t *records,
		  struct shmex_error *e)
{
	uint32_t n;
	int rc = jnl_data_shards(dir, &n, e);
	if (rc)
		return rc;
	struct jnl_src *src = calloc(n, sizeof(*src));
	if (!src)
		return shmex_error_set(e, -ENOMEM, "out of memory");
	for (uint32_t k = 0; k < n && !rc; k++) {
		rc = jnl_src_open(&src[k], dir, k, n, false, NULL, e);
		if (rc == -ENOENT) {
			rc = 0; /* a shard that never wrote */
			continue;
		}
		if (!rc)
			rc = jnl_src_find_limit(&src[k], e);
		if (!rc && src[k].torn)
			fprintf(stderr, "%s: %s (not merged)\n", prog, src[k].torn_msg);
	}
	struct jnl_out out;
	if (!rc && jnl_out_init(&out, fd) != 0)
		rc = shmex_error_set(e, -ENOMEM, "out of memory");
	else if (!rc) {
		struct jnl_audit_hdr h;
		jnl_audit_hdr_init(&h, n);
		rc = jnl_out_raw(&out, &h, sizeof(h));
		int64_t got = rc ? rc
				 : jnl_merge_step(src, n, UINT64_MAX, UINT64_MAX,
						  jnl_out_put, &out, e);
		if (got < 0)
			rc = (int)got;
		if (!rc && jnl_out_flush(&out) != 0)
			rc = out.err;
		if (rc && out.err)
			shmex_error_set(e, rc, "writing the merge: %s", strerror(-rc));
		*records = out.records;
		jnl_out_free(&out);
	}
	for (uint32_t k = 0; k < n; k++)
		jnl_src_close(&src[k]);
	free(src);
	return rc;
}
