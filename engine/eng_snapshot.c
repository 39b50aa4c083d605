/*
 * eng_snapshot: writing and reading a shard's snapshot (eng_snapshot.h).
 *
 * Each section is padded with zeros to a multiple of 16 bytes (outside its
 * length and CRC), so every section starts 16-aligned in the mapped file.
 * Section bytes as written:
 *   MATCHER    struct eng_snapshot_matcher, then nsidx uint32
 *   BOOK       page runs of the book region's body
 *   CORE       eng_core_save's bytes
 *   POSITIONS  page runs of the positions region's body
 *   LEDGER     uint64 n, uint64 0, then n struct shm_ledger_part (its
 *              cash 128-bit, 16-byte aligned: version 2 and later)
 * Page runs: uint64 body length, then runs {uint64 first page, uint64
 * pages, the bytes}, ascending, and a last run {UINT64_MAX, 0}; pages are
 * SNAP_PAGE bytes (the body's last one may be shorter); pages not in a
 * run are zero.
 */
#include "engine/eng_snapshot.h"
#include "engine/eng_alloc.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "shm/shm_clock.h"
#include "shm/shm_region.h"

#define SNAP_PAGE 4096u
/* Zero bytes after a section of len bytes. */
#define SNAP_PAD(len) ((size_t)((16u - (len) % 16u) % 16u))
#define WBUF (1u << 20)

/* ---- writing ------------------------------------------------------------ */

struct snapw {
	int fd;
	const char *path;
	unsigned char *buf;
	size_t n;
	off_t off; /* file offset of buf[0] */
	off_t sect_at;
	uint64_t sect_len;
	uint32_t crc;
	int err; /* first write error (negative errno) */
};

static void w_flush(struct snapw *w)
{
	size_t done = 0;
	while (done < w->n && !w->err) {
		ssize_t k =
			pwrite(w->fd, w->buf + done, w->n - done, w->off + (off_t)done);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			w->err = k < 0 ? -errno : -EIO;
		else
			done += (size_t)k;
	}
	w->off += (off_t)w->n;
	w->n = 0;
}

static void w_raw(struct snapw *w, const void *p, size_t len)
{
	const unsigned char *b = p;
	while (len && !w->err) {
		size_t k = WBUF - w->n < len ? WBUF - w->n : len;
		memcpy(w->buf + w->n, b, k);
		w->n += k;
		b += k;
		len -= k;
		if (w->n == WBUF)
			w_flush(w);
	}
}

/* Section bytes: counted and checksummed.  eng_core_put_fn. */
static int w_put(void *ctx, const void *p, size_t len)
{
	struct snapw *w = ctx;
	w->crc = shm_crc32c(w->crc, p, len);
	w->sect_len += len;
	w_raw(w, p, len);
	return w->err;
}

static void sect_begin(struct snapw *w)
{
	struct shm_jsnap_sect sh = {0};
	w->sect_at = w->off + (off_t)w->n;
	w->sect_len = 0;
	w->crc = 0;
	w_raw(w, &sh, sizeof(sh));
}

/* Fills in the section header written by sect_begin, and pads the
 * section with zeros to a multiple of 16 bytes (not counted in its length
 * or CRC) so that every section, and every integer in it, is aligned in
 * the mapped file. */
static void sect_end(struct snapw *w, uint32_t kind)
{
	static const unsigned char zeros[16];
	w_raw(w, zeros, SNAP_PAD(w->sect_len));
	w_flush(w);
	struct shm_jsnap_sect sh = {.kind = kind, .crc = w->crc, .len = w->sect_len};
	if (w->err)
		return;
	ssize_t k = pwrite(w->fd, &sh, sizeof(sh), w->sect_at);
	if (k != (ssize_t)sizeof(sh))
		w->err = k < 0 ? -errno : -EIO;
}

static bool page_zero(const unsigned char *p, size_t len)
{
	const uint64_t *q = (const uint64_t *)p;
	for (size_t i = 0; i < len / 8; i++)
		if (q[i])
			return false;
	for (size_t i = len & ~(size_t)7; i < len; i++)
		if (p[i])
			return false;
	return true;
}

static void put_pages(struct snapw *w, const void *mem, size_t len)
{
	const unsigned char *b = mem;
	uint64_t total = len, pages = (len + SNAP_PAGE - 1) / SNAP_PAGE;
	w_put(w, &total, sizeof(total));
	for (uint64_t pg = 0; pg < pages;) {
		size_t at = (size_t)pg * SNAP_PAGE;
		if (page_zero(b + at, len - at < SNAP_PAGE ? len - at : SNAP_PAGE)) {
			pg++;
			continue;
		}
		uint64_t run = pg;
		while (run < pages) {
			size_t ra = (size_t)run * SNAP_PAGE;
			if (page_zero(b + ra,
				      len - ra < SNAP_PAGE ? len - ra : SNAP_PAGE))
				break;
			run++;
		}
		uint64_t rh[2] = {pg, run - pg};
		size_t end =
			(size_t)run * SNAP_PAGE < len ? (size_t)run * SNAP_PAGE : len;
		w_put(w, rh, sizeof(rh));
		w_put(w, b + at, end - at);
		pg = run;
	}
	uint64_t last[2] = {UINT64_MAX, 0};
	w_put(w, last, sizeof(last));
}

static void put_ledger(struct snapw *w, const struct shm_ledger *l)
{
	uint64_t n = 0;
	struct shm_ledger_part p;
	for (uint32_t i = 0; i < l->nslots; i++)
		n += shm_ledger_slot(l, i, &p);
	const uint64_t zero = 0;
	w_put(w, &n, sizeof(n));
	w_put(w, &zero, sizeof(zero));
	for (uint32_t i = 0; i < l->nslots; i++)
		if (shm_ledger_slot(l, i, &p))
			w_put(w, &p, sizeof(p));
}

int eng_snapshot_write(const char *shard_dir, const struct eng_snapshot_in *in,
		       char *path, struct shmex_error *e)
{
	char tmp[SHM_JOURNAL_PATH_MAX + 8];
	int n = snprintf(path, SHM_JOURNAL_PATH_MAX, "%s/snapshot-%016" PRIx64 ".snap",
			 shard_dir, in->last_seq);
	if (n < 0 || n >= SHM_JOURNAL_PATH_MAX)
		return shmex_error_set(e, -ENAMETOOLONG, "%s: name too long", shard_dir);
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	struct snapw w = {.path = tmp};
	w.buf = eng_alloc_malloc(WBUF);
	if (!w.buf)
		return shmex_error_set(e, -ENOMEM, "out of memory");
	w.fd = open(tmp, O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0640);
	if (w.fd < 0) {
		int rc = -errno;
		eng_alloc_free(w.buf);
		return shmex_error_set(e, rc, "open %s: %s", tmp, strerror(-rc));
	}
	struct shm_jsnap_hdr h = {
		.shard = in->shard,
		.nshards = in->nshards,
		.signature = shm_layout_signature(),
		.last_seq = in->last_seq,
		.last_time_ns = in->matcher->last_time_ns,
		.created_ns = shm_clock_ns(CLOCK_REALTIME),
		.history_len = in->history_len,
	};
	memcpy(h.caps, in->caps, sizeof(h.caps));
	shm_jsnap_hdr_seal(&h);
	w_raw(&w, &h, sizeof(h));

	sect_begin(&w);
	w_put(&w, in->matcher, sizeof(*in->matcher));
	w_put(&w, in->sidx_of, (size_t)in->matcher->nsidx * sizeof(uint32_t));
	sect_end(&w, SHM_JSNAP_MATCHER);
	sect_begin(&w);
	put_pages(&w, in->book, in->book_len);
	sect_end(&w, SHM_JSNAP_BOOK);
	sect_begin(&w);
	int rc = eng_core_save(in->core, w_put, &w);
	if (rc && !w.err)
		w.err = rc;
	sect_end(&w, SHM_JSNAP_CORE);
	sect_begin(&w);
	put_pages(&w, in->positions, in->positions_len);
	sect_end(&w, SHM_JSNAP_POSITIONS);
	sect_begin(&w);
	put_ledger(&w, in->ledger);
	sect_end(&w, SHM_JSNAP_LEDGER);
	sect_begin(&w);
	sect_end(&w, SHM_JSNAP_END);

	rc = w.err;
	const char *what = "writing";
	if (!rc && fdatasync(w.fd) != 0) {
		rc = -errno;
		what = "fdatasync";
	}
	if (close(w.fd) != 0 && !rc) {
		rc = -errno;
		what = "close";
	}
	eng_alloc_free(w.buf);
	if (!rc && rename(tmp, path) != 0) {
		rc = -errno;
		what = "rename";
	}
	if (!rc && (rc = shm_journal_sync_dir(shard_dir)) != 0)
		return shmex_error_set(e, rc, "fsync %s: %s", shard_dir, strerror(-rc));
	if (rc) {
		unlink(tmp);
		return shmex_error_set(e, rc, "%s %s: %s", what, tmp, strerror(-rc));
	}
	return 0;
}

/* ---- reading ------------------------------------------------------------ */

static int bad(struct shmex_error *e, const char *path, uint64_t off, const char *why)
{
	return shmex_error_set(e, SHMEX_EJCORRUPT, "%s: byte %" PRIu64 ": %s", path, off,
			       why);
}

int eng_snapshot_open(struct eng_snapshot *s, const char *path, struct shmex_error *e)
{
	memset(s, 0, sizeof(*s));
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		int rc = -errno;
		return shmex_error_set(e, rc, "open %s: %s", path, strerror(-rc));
	}
	struct stat st;
	if (fstat(fd, &st) != 0) {
		int rc = -errno;
		close(fd);
		return shmex_error_set(e, rc, "fstat %s: %s", path, strerror(-rc));
	}
	if ((size_t)st.st_size < sizeof(struct shm_jsnap_hdr)) {
		close(fd);
		return bad(e, path, 0, "shorter than a snapshot header");
	}
	s->len = (size_t)st.st_size;
	s->map = mmap(NULL, s->len, PROT_READ, MAP_PRIVATE, fd, 0);
	int rc = -errno;
	close(fd);
	if (s->map == MAP_FAILED) {
		s->map = NULL;
		return shmex_error_set(e, rc, "mmap %s: %s", path, strerror(-rc));
	}
	s->hdr = s->map;
	struct shmex_error he = {0};
	if (shm_jsnap_hdr_check(s->hdr, &he) != 0) {
		rc = bad(e, path, 0, he.msg);
		eng_snapshot_close(s);
		return rc;
	}
	const unsigned char *b = s->map;
	size_t off = sizeof(struct shm_jsnap_hdr);
	bool end = false;
	while (!end) {
		struct shm_jsnap_sect sh;
		if (s->len - off < sizeof(sh)) {
			rc = bad(e, path, off, "cut short before its END section");
			goto fail;
		}
		memcpy(&sh, b + off, sizeof(sh));
		const unsigned char *body = b + off + sizeof(sh);
		if (sh.len > s->len - off - sizeof(sh) ||
		    SNAP_PAD(sh.len) > s->len - off - sizeof(sh) - sh.len) {
			rc = bad(e, path, off, "a section longer than the file");
			goto fail;
		}
		if (shm_crc32c(0, body, sh.len) != sh.crc) {
			rc = bad(e, path, off, "section checksum");
			goto fail;
		}
		if (sh.kind == SHM_JSNAP_END) {
			end = true;
		} else if (sh.kind > SHM_JSNAP_LEDGER || s->sect[sh.kind]) {
			rc = bad(e, path, off, "unknown or repeated section");
			goto fail;
		} else {
			s->sect[sh.kind] = body;
			s->sect_len[sh.kind] = sh.len;
		}
		off += sizeof(sh) + sh.len + SNAP_PAD(sh.len);
	}
	if (off != s->len) {
		rc = bad(e, path, off, "bytes after the END section");
		goto fail;
	}
	for (unsigned k = SHM_JSNAP_MATCHER; k <= SHM_JSNAP_LEDGER; k++)
		if (!s->sect[k]) {
			rc = bad(e, path, off, "a section is missing");
			goto fail;
		}
	/* Decoded sections: their sizes must add up. */
	const struct eng_snapshot_matcher *mt = s->sect[SHM_JSNAP_MATCHER];
	uint64_t ml = s->sect_len[SHM_JSNAP_MATCHER];
	if (ml < sizeof(*mt) ||
	    (ml - sizeof(*mt)) / sizeof(uint32_t) != (uint64_t)mt->nsidx ||
	    (ml - sizeof(*mt)) % sizeof(uint32_t)) {
		rc = bad(e, path, 0, "matcher section of the wrong size");
		goto fail;
	}
	s->matcher = mt;
	s->sidx_of = (const uint32_t *)(mt + 1);
	const uint64_t *ln = s->sect[SHM_JSNAP_LEDGER];
	uint64_t ll = s->sect_len[SHM_JSNAP_LEDGER];
	if (ll < 2 * sizeof(uint64_t) ||
	    (ll - 2 * sizeof(uint64_t)) / sizeof(struct shm_ledger_part) != *ln ||
	    (ll - 2 * sizeof(uint64_t)) % sizeof(struct shm_ledger_part)) {
		rc = bad(e, path, 0, "ledger section of the wrong size");
		goto fail;
	}
	s->nparts = *ln;
	s->parts = (const struct shm_ledger_part *)(ln + 2);
	return 0;
fail:
	eng_snapshot_close(s);
	return rc;
}

void eng_snapshot_close(struct eng_snapshot *s)
{
	if (s->map)
		munmap(s->map, s->len);
	memset(s, 0, sizeof(*s));
}

int eng_snapshot_pages(const struct eng_snapshot *s, unsigned kind, void *mem, size_t len,
		       bool apply)
{
	if (kind != SHM_JSNAP_BOOK && kind != SHM_JSNAP_POSITIONS)
		return -EINVAL;
	const unsigned char *p = s->sect[kind];
	uint64_t left = s->sect_len[kind], total;
	if (left < sizeof(total))
		return SHMEX_EJCORRUPT;
	memcpy(&total, p, sizeof(total));
	p += sizeof(total);
	left -= sizeof(total);
	if (total != len)
		return SHMEX_EJCORRUPT;
	uint64_t pages = (len + SNAP_PAGE - 1) / SNAP_PAGE, next = 0;
	if (apply)
		memset(mem, 0, len);
	for (;;) {
		uint64_t rh[2];
		if (left < sizeof(rh))
			return SHMEX_EJCORRUPT;
		memcpy(rh, p, sizeof(rh));
		p += sizeof(rh);
		left -= sizeof(rh);
		if (rh[0] == UINT64_MAX)
			return rh[1] == 0 && left == 0 ? 0 : SHMEX_EJCORRUPT;
		if (rh[0] < next || rh[0] >= pages || rh[1] == 0 || rh[1] > pages - rh[0])
			return SHMEX_EJCORRUPT;
		uint64_t at = rh[0] * SNAP_PAGE;
		uint64_t end = (rh[0] + rh[1]) * SNAP_PAGE;
		if (end > len)
			end = len;
		if (left < end - at)
			return SHMEX_EJCORRUPT;
		if (apply)
			memcpy((unsigned char *)mem + at, p, end - at);
		p += end - at;
		left -= end - at;
		next = rh[0] + rh[1];
	}
}
