/*
 * shm_journal: records, segments, snapshots' headers and the data
 * directory (contract in shm_journal.h, bytes in docs/durability.md).
 *
 * Reading is strict: a record is accepted only when its length is a
 * multiple of 8 between the header size and SHM_JREC_MAX, equals its
 * type's size, its CRC matches, its sequence is the next one and its time
 * does not go back.  Anything else is either a torn tail (the bytes simply
 * stop inside the last record of the last segment) or corruption, and the
 * two are never confused: bytes that are present but wrong are corruption,
 * even at the very end, unless every byte after the bad record's start is
 * part of one incomplete record (a short write).
 */
#include "shm/shm_journal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "shm/shm_proc.h"

/* ---- CRC32C --------------------------------------------------------------- */

static uint32_t crc_table[8][256];
static int crc_hw = -1;

static void crc_init(void)
{
	for (uint32_t i = 0; i < 256; i++) {
		uint32_t c = i;
		for (int k = 0; k < 8; k++)
			c = c & 1 ? (c >> 1) ^ 0x82f63b78u : c >> 1;
		crc_table[0][i] = c;
	}
	for (uint32_t i = 0; i < 256; i++)
		for (int t = 1; t < 8; t++)
			crc_table[t][i] = (crc_table[t - 1][i] >> 8) ^
					  crc_table[0][crc_table[t - 1][i] & 0xff];
	crc_hw = __builtin_cpu_supports("sse4.2") ? 1 : 0;
}

static uint32_t crc_sw(uint32_t c, const uint8_t *p, size_t n)
{
	while (n >= 8) {
		uint64_t v;
		memcpy(&v, p, 8);
		v ^= c;
		c = crc_table[7][v & 0xff] ^ crc_table[6][(v >> 8) & 0xff] ^
		    crc_table[5][(v >> 16) & 0xff] ^ crc_table[4][(v >> 24) & 0xff] ^
		    crc_table[3][(v >> 32) & 0xff] ^ crc_table[2][(v >> 40) & 0xff] ^
		    crc_table[1][(v >> 48) & 0xff] ^ crc_table[0][v >> 56];
		p += 8;
		n -= 8;
	}
	while (n--)
		c = (c >> 8) ^ crc_table[0][(c ^ *p++) & 0xff];
	return c;
}

__attribute__((target("sse4.2"))) static uint32_t crc_hw_run(uint32_t c, const uint8_t *p,
							     size_t n)
{
	uint64_t c64 = c;
	while (n >= 8) {
		uint64_t v;
		memcpy(&v, p, 8);
		c64 = __builtin_ia32_crc32di(c64, v);
		p += 8;
		n -= 8;
	}
	c = (uint32_t)c64;
	while (n--)
		c = __builtin_ia32_crc32qi(c, *p++);
	return c;
}

uint32_t shm_crc32c(uint32_t crc, const void *data, size_t len)
{
	if (crc_hw < 0)
		crc_init();
	uint32_t c = ~crc;
	c = crc_hw ? crc_hw_run(c, data, len) : crc_sw(c, data, len);
	return ~c;
}

/* ---- records -------------------------------------------------------------- */

static const struct {
	const char *name;
	size_t len;
} types[SHM_JREC_TYPE_LAST_ + 1] = {
	[SHM_JREC_START] = {"START", sizeof(struct shm_jrec_start)},
	[SHM_JREC_ACCOUNT] = {"ACCOUNT", sizeof(struct shm_jrec_account)},
	[SHM_JREC_SHARES] = {"SHARES", sizeof(struct shm_jrec_shares)},
	[SHM_JREC_ORDER] = {"ORDER", sizeof(struct shm_jrec_order)},
	[SHM_JREC_CANCEL] = {"CANCEL", sizeof(struct shm_jrec_cancel)},
	[SHM_JREC_MODIFY] = {"MODIFY", sizeof(struct shm_jrec_modify)},
	[SHM_JREC_FILL] = {"FILL", sizeof(struct shm_jrec_fill)},
	[SHM_JREC_DONE] = {"DONE", sizeof(struct shm_jrec_done)},
	[SHM_JREC_MODIFIED] = {"MODIFIED", sizeof(struct shm_jrec_modified)},
	[SHM_JREC_SYMBOL] = {"SYMBOL", sizeof(struct shm_jrec_symbol)},
	[SHM_JREC_POSITION] = {"POSITION", sizeof(struct shm_jrec_position)},
	[SHM_JREC_RECYCLE] = {"RECYCLE", sizeof(struct shm_jrec_recycle)},
};

_Static_assert(sizeof(struct shm_jrec_order) + SHM_JREC_HDR <= SHM_JREC_MAX, "max");
_Static_assert(sizeof(struct shm_jrec_fill) + SHM_JREC_HDR <= SHM_JREC_MAX, "max");
_Static_assert(sizeof(struct shm_jrec) == SHM_JREC_MAX, "record buffer");

size_t shm_jrec_payload_len(uint16_t type)
{
	return type >= 1 && type <= SHM_JREC_TYPE_LAST_ ? types[type].len : 0;
}

const char *shm_jrec_type_name(uint16_t type)
{
	return type >= 1 && type <= SHM_JREC_TYPE_LAST_ ? types[type].name : "?";
}

static size_t rec_len(uint16_t type)
{
	size_t n = SHM_JREC_HDR + shm_jrec_payload_len(type);
	return (n + 7) & ~(size_t)7;
}

size_t shm_jrec_seal(struct shm_jrec *r)
{
	size_t len = rec_len(r->h.type);
	size_t pl = shm_jrec_payload_len(r->h.type);
	/* Padding after the payload is zero, so equal records are equal
	 * bytes (replay compares them, merge copies them). */
	memset(r->u.raw + pl, 0, len - SHM_JREC_HDR - pl);
	r->h.len = (uint32_t)len;
	r->h.flags &= SHM_JREC_END;
	r->h.crc = shm_crc32c(0, (const uint8_t *)r + 8, len - 8);
	return len;
}

int shm_jrec_check(const void *p, size_t avail, size_t *len)
{
	if (avail < SHM_JREC_HDR)
		return SHMEX_EJTORN;
	struct shm_jrec_hdr h;
	memcpy(&h, p, sizeof(h));
	if (h.len < SHM_JREC_HDR || h.len > SHM_JREC_MAX || (h.len & 7) || h.type < 1 ||
	    h.type > SHM_JREC_TYPE_LAST_ || h.len != rec_len(h.type) ||
	    (h.flags & ~SHM_JREC_END) != 0)
		return SHMEX_EJCORRUPT;
	if (avail < h.len)
		return SHMEX_EJTORN;
	if (shm_crc32c(0, (const uint8_t *)p + 8, h.len - 8) != h.crc)
		return SHMEX_EJCORRUPT;
	*len = h.len;
	return 0;
}

/* ---- segments ------------------------------------------------------------- */

void shm_jseg_hdr_init(struct shm_jseg_hdr *h, uint32_t shard, uint32_t nshards,
		       uint64_t first_seq, uint64_t now_ns)
{
	memset(h, 0, sizeof(*h));
	h->magic = SHM_JSEG_MAGIC;
	h->version = SHM_JOURNAL_VERSION;
	h->shard = shard;
	h->nshards = nshards;
	h->first_seq = first_seq;
	h->created_ns = now_ns;
	h->hdr_crc = shm_crc32c(0, h, sizeof(*h));
}

int shm_jseg_hdr_check(const struct shm_jseg_hdr *h, struct shmex_error *e)
{
	struct shm_jseg_hdr c = *h;
	c.hdr_crc = 0;
	if (h->magic != SHM_JSEG_MAGIC)
		return shmex_error_set(e, SHMEX_EJCORRUPT, "not a shmex journal segment");
	if (h->version != SHM_JOURNAL_VERSION)
		return shmex_error_set(e, SHMEX_EJCORRUPT,
				       "journal version %u, this build "
				       "reads %u",
				       h->version, SHM_JOURNAL_VERSION);
	if (shm_crc32c(0, &c, sizeof(c)) != h->hdr_crc)
		return shmex_error_set(e, SHMEX_EJCORRUPT, "segment header checksum");
	return 0;
}

int shm_journal_shard_dir(char *out, size_t len, const char *dir, uint32_t shard)
{
	int n = snprintf(out, len, "%s/shard-%u", dir, shard);
	return n > 0 && (size_t)n < len ? 0 : -ENAMETOOLONG;
}

static int cmp_u64_idx(const void *a, const void *b, void *arg)
{
	const uint64_t *k = arg;
	uint64_t x = k[*(const uint32_t *)a], y = k[*(const uint32_t *)b];
	return x < y ? -1 : x > y;
}

/* Parses "<prefix><16 hex><suffix>". */
static bool name_seq(const char *name, const char *prefix, const char *suffix,
		     uint64_t *seq)
{
	size_t pl = strlen(prefix), sl = strlen(suffix), n = strlen(name);
	if (n != pl + 16 + sl || strncmp(name, prefix, pl) ||
	    strcmp(name + pl + 16, suffix))
		return false;
	uint64_t v = 0;
	for (size_t i = 0; i < 16; i++) {
		char c = name[pl + i];
		int d = c >= '0' && c <= '9'   ? c - '0'
			: c >= 'a' && c <= 'f' ? c - 'a' + 10
					       : -1;
		if (d < 0)
			return false;
		v = v << 4 | (uint64_t)d;
	}
	*seq = v;
	return true;
}

/* Sorts paths[0..n) by keys (the same permutation for both). */
static void sort_by(char **paths, uint64_t *keys, uint32_t n)
{
	if (n < 2)
		return; /* nothing to sort (and paths may be NULL) */
	uint32_t *ix = malloc(n * sizeof(*ix));
	char **p2 = malloc(n * sizeof(*p2));
	uint64_t *k2 = malloc(n * sizeof(*k2));
	if (!ix || !p2 || !k2) {
		free(ix);
		free(p2);
		free(k2);
		return; /* left unsorted: the reader then reports a gap */
	}
	for (uint32_t i = 0; i < n; i++)
		ix[i] = i;
	qsort_r(ix, n, sizeof(*ix), cmp_u64_idx, keys);
	for (uint32_t i = 0; i < n; i++) {
		p2[i] = paths[ix[i]];
		k2[i] = keys[ix[i]];
	}
	memcpy(paths, p2, n * sizeof(*p2));
	memcpy(keys, k2, n * sizeof(*k2));
	free(ix);
	free(p2);
	free(k2);
}

static int push(char ***arr, uint64_t **keys, uint32_t *n, const char *dir,
		const char *name, uint64_t key)
{
	char **a = realloc(*arr, (*n + 1) * sizeof(**arr));
	if (!a)
		return -ENOMEM;
	*arr = a;
	uint64_t *k = realloc(*keys, (*n + 1) * sizeof(**keys));
	if (!k)
		return -ENOMEM;
	*keys = k;
	size_t len = strlen(dir) + strlen(name) + 2;
	char *p = malloc(len);
	if (!p)
		return -ENOMEM;
	snprintf(p, len, "%s/%s", dir, name);
	a[*n] = p;
	k[*n] = key;
	(*n)++;
	return 0;
}

int shm_jdir_list(struct shm_jdir *d, const char *shard_dir, struct shmex_error *e)
{
	memset(d, 0, sizeof(*d));
	DIR *dh = opendir(shard_dir);
	if (!dh) {
		int rc = -errno;
		return shmex_error_set(e, rc, "opendir %s: %s", shard_dir, strerror(-rc));
	}
	struct dirent *de;
	int rc = 0;
	while (rc == 0 && (de = readdir(dh)) != NULL) {
		uint64_t k;
		if (name_seq(de->d_name, "journal-", ".log", &k))
			rc = push(&d->seg, &d->seg_first, &d->nseg, shard_dir, de->d_name,
				  k);
		else if (name_seq(de->d_name, "snapshot-", ".snap", &k))
			rc = push(&d->snap, &d->snap_last, &d->nsnap, shard_dir,
				  de->d_name, k);
	}
	closedir(dh);
	if (rc) {
		shm_jdir_free(d);
		return shmex_error_set(e, rc, "listing %s: %s", shard_dir, strerror(-rc));
	}
	sort_by(d->seg, d->seg_first, d->nseg);
	sort_by(d->snap, d->snap_last, d->nsnap);
	return 0;
}

void shm_jdir_free(struct shm_jdir *d)
{
	for (uint32_t i = 0; i < d->nseg; i++)
		free(d->seg[i]);
	for (uint32_t i = 0; i < d->nsnap; i++)
		free(d->snap[i]);
	free(d->seg);
	free(d->seg_first);
	free(d->snap);
	free(d->snap_last);
	memset(d, 0, sizeof(*d));
}

/* ---- the reader ----------------------------------------------------------- */

#define RD_BUF (1u << 20)

static int open_segment(struct shm_jreader *r, struct shmex_error *e)
{
	const char *path = r->dir.seg[r->si];
	r->fd = open(path, O_RDONLY | O_CLOEXEC);
	if (r->fd < 0) {
		int rc = -errno;
		return shmex_error_set(e, rc, "open %s: %s", path, strerror(-rc));
	}
	struct shm_jseg_hdr h;
	ssize_t n = pread(r->fd, &h, sizeof(h), 0);
	if (n != (ssize_t)sizeof(h)) {
		/* A segment whose header was never completely written: the
		 * writer died creating it.  Torn, if it is the last one. */
		if (n >= 0 && r->si + 1 == r->dir.nseg) {
			snprintf(r->good_path, sizeof(r->good_path), "%s", path);
			r->good_end = 0;
			return shmex_error_set(e, SHMEX_EJTORN,
					       "%s: segment header cut short "
					       "(%zd of 64 bytes)",
					       path, n);
		}
		return shmex_error_set(e, SHMEX_EJCORRUPT, "%s: segment header cut short",
				       path);
	}
	int rc = shm_jseg_hdr_check(&h, e);
	if (rc)
		return shmex_error_wrap(e, rc, "%s", path);
	if (h.shard != r->shard)
		return shmex_error_set(e, SHMEX_EJCORRUPT,
				       "%s: written by shard %u, not %u", path, h.shard,
				       r->shard);
	if (r->nshards && h.nshards != r->nshards)
		return shmex_error_set(e, SHMEX_EJCORRUPT,
				       "%s: written by an exchange of %u "
				       "shards, this one has %u",
				       path, h.nshards, r->nshards);
	r->nshards = h.nshards;
	if (h.first_seq != r->dir.seg_first[r->si])
		return shmex_error_set(e, SHMEX_EJCORRUPT,
				       "%s: its name says sequence %" PRIu64
				       ", its header %" PRIu64,
				       path, r->dir.seg_first[r->si], h.first_seq);
	/* The first segment read may start before from_seq (records are
	 * skipped); every later one must continue exactly. */
	if (r->next_seq && h.first_seq != r->next_seq && r->si > 0)
		return shmex_error_set(e, SHMEX_EJCORRUPT,
				       "%s starts at sequence %" PRIu64
				       ", the previous segment ended before %" PRIu64,
				       path, h.first_seq, r->next_seq);
	r->lo = r->hi = 0;
	r->file_off = sizeof(h);
	snprintf(r->good_path, sizeof(r->good_path), "%s", path);
	r->good_end = (off_t)sizeof(h);
	return 0;
}

int shm_jreader_open(struct shm_jreader *r, const char *shard_dir, uint32_t shard,
		     uint32_t nshards, uint64_t from_seq, struct shmex_error *e)
{
	memset(r, 0, sizeof(*r));
	r->fd = -1;
	r->shard = shard;
	r->nshards = nshards;
	int rc = shm_jdir_list(&r->dir, shard_dir, e);
	if (rc)
		return rc;
	r->buf = malloc(RD_BUF);
	if (!r->buf) {
		shm_jdir_free(&r->dir);
		return shmex_error_set(e, -ENOMEM, "out of memory");
	}
	r->cap = RD_BUF;
	/* Start at the last segment that begins at or before from_seq. */
	uint64_t want = from_seq ? from_seq : 1;
	r->si = 0;
	for (uint32_t i = 0; i < r->dir.nseg; i++)
		if (r->dir.seg_first[i] <= want)
			r->si = i;
	r->next_seq = 0;
	if (r->dir.nseg == 0)
		return 0;
	if (r->dir.seg_first[r->si] > want) {
		rc = shmex_error_set(e, SHMEX_EJCORRUPT,
				     "%s: journal starts at sequence %" PRIu64
				     ", records from %" PRIu64 " are missing",
				     shard_dir, r->dir.seg_first[r->si], want);
	} else {
		r->next_seq = r->dir.seg_first[r->si];
		r->skip_to = want;
		rc = open_segment(r, e);
		if (rc == SHMEX_EJTORN) {
			r->at_torn_header = true;
			return 0;
		}
	}
	/* A failed open leaves nothing to close (callers retry: the audit
	 * writer follows the journals). */
	if (rc)
		shm_jreader_close(r);
	return rc;
}

/* Reads more of the current segment into the buffer; 0 at its end. */
static ssize_t fill(struct shm_jreader *r)
{
	if (r->lo > 0) {
		memmove(r->buf, r->buf + r->lo, r->hi - r->lo);
		r->hi -= r->lo;
		r->lo = 0;
	}
	ssize_t n =
		pread(r->fd, r->buf + r->hi, r->cap - r->hi, r->file_off + (off_t)r->hi);
	if (n > 0)
		r->hi += (size_t)n;
	return n;
}

int shm_jreader_next(struct shm_jreader *r, struct shm_jrec *out, struct shmex_error *e)
{
	if (r->at_torn_header)
		return shmex_error_set(e, SHMEX_EJTORN, "%s: segment header cut short",
				       r->good_path);
	for (;;) {
		if (r->fd < 0)
			return 0;
		size_t avail = r->hi - r->lo, len = 0;
		int rc = shm_jrec_check(r->buf + r->lo, avail, &len);
		if (rc == SHMEX_EJTORN) {
			ssize_t n = fill(r);
			if (n < 0) {
				rc = -errno;
				return shmex_error_set(e, rc, "read %s: %s", r->good_path,
						       strerror(-rc));
			}
			if (n > 0)
				continue;
			/* End of this segment's bytes. */
			bool last = r->si + 1 >= r->dir.nseg;
			if (r->hi == r->lo) {
				if (last)
					return 0;
			} else if (last) {
				if (r->follow)
					return 0; /* the writer is still writing it */
				return shmex_error_set(e, SHMEX_EJTORN,
						       "%s: a torn record "
						       "at byte %jd (%zu bytes of an "
						       "incomplete write)",
						       r->good_path,
						       (intmax_t)r->good_end,
						       r->hi - r->lo);
			} else {
				return shmex_error_set(e, SHMEX_EJCORRUPT,
						       "%s: byte %jd: an "
						       "incomplete record, and segment "
						       "%s follows",
						       r->good_path,
						       (intmax_t)r->good_end,
						       r->dir.seg[r->si + 1]);
			}
			close(r->fd);
			r->fd = -1;
			r->si++;
			rc = open_segment(r, e);
			if (rc)
				return rc;
			continue;
		}
		if (rc == SHMEX_EJCORRUPT) {
			/* Bytes that are there but wrong.  A torn write leaves
			 * a prefix of a correct record and nothing after it; a
			 * length we cannot trust means we cannot tell, so only
			 * a zero tail (preallocated, never written) passes as
			 * torn. */
			ssize_t n;
			while ((n = fill(r)) > 0)
				;
			bool zeros = true;
			for (size_t i = r->lo; i < r->hi && zeros; i++)
				zeros = r->buf[i] == 0;
			bool last = r->si + 1 >= r->dir.nseg;
			if (zeros && last && !r->follow)
				return shmex_error_set(e, SHMEX_EJTORN,
						       "%s: %zu zero bytes "
						       "after byte %jd",
						       r->good_path, r->hi - r->lo,
						       (intmax_t)r->good_end);
			if (zeros && last)
				return 0;
			return shmex_error_set(
				e, SHMEX_EJCORRUPT,
				"%s: byte %jd: bad record "
				"(length, type or checksum), %zu bytes follow",
				r->good_path, (intmax_t)r->good_end, r->hi - r->lo);
		}
		memcpy(out, r->buf + r->lo, len);
		if (out->h.seq != r->next_seq)
			return shmex_error_set(e, SHMEX_EJCORRUPT,
					       "%s: byte %jd: sequence %" PRIu64
					       ", expected %" PRIu64,
					       r->good_path, (intmax_t)r->good_end,
					       out->h.seq, r->next_seq);
		if (out->h.shard != r->shard)
			return shmex_error_set(e, SHMEX_EJCORRUPT,
					       "%s: byte %jd: a record of "
					       "shard %u",
					       r->good_path, (intmax_t)r->good_end,
					       out->h.shard);
		if (out->h.time_ns < r->last_time)
			return shmex_error_set(e, SHMEX_EJCORRUPT,
					       "%s: byte %jd: time goes "
					       "back",
					       r->good_path, (intmax_t)r->good_end);
		r->lo += len;
		r->file_off += (off_t)len;
		r->good_end += (off_t)len;
		r->next_seq++;
		r->last_time = out->h.time_ns;
		if (out->h.seq < r->skip_to)
			continue;
		return 1;
	}
}

void shm_jreader_close(struct shm_jreader *r)
{
	if (r->fd >= 0)
		close(r->fd);
	r->fd = -1;
	free(r->buf);
	r->buf = NULL;
	shm_jdir_free(&r->dir);
}

/* ---- snapshots ------------------------------------------------------------ */

void shm_jsnap_hdr_seal(struct shm_jsnap_hdr *h)
{
	h->magic = SHM_JSNAP_MAGIC;
	h->version = SHM_JSNAP_VERSION;
	h->hdr_crc = 0;
	h->hdr_crc = shm_crc32c(0, h, sizeof(*h));
}

int shm_jsnap_hdr_check(const struct shm_jsnap_hdr *h, struct shmex_error *e)
{
	struct shm_jsnap_hdr c = *h;
	c.hdr_crc = 0;
	if (h->magic != SHM_JSNAP_MAGIC)
		return shmex_error_set(e, SHMEX_EJCORRUPT, "not a shmex snapshot");
	if (h->version != SHM_JSNAP_VERSION)
		return shmex_error_set(e, SHMEX_EJCORRUPT,
				       "snapshot version %u, this build "
				       "reads %u",
				       h->version, SHM_JSNAP_VERSION);
	if (shm_crc32c(0, &c, sizeof(c)) != h->hdr_crc)
		return shmex_error_set(e, SHMEX_EJCORRUPT, "snapshot header checksum");
	return 0;
}

/* ---- the data directory ---------------------------------------------------- */

int shm_journal_mkdirs(const char *dir, struct shmex_error *e)
{
	char p[SHM_JOURNAL_PATH_MAX];
	int n = snprintf(p, sizeof(p), "%s", dir);
	if (n <= 0 || (size_t)n >= sizeof(p))
		return shmex_error_set(e, -ENAMETOOLONG, "data directory name too long");
	for (char *s = p + 1; *s; s++) {
		if (*s != '/')
			continue;
		*s = 0;
		if (mkdir(p, 0750) != 0 && errno != EEXIST) {
			int rc = -errno;
			return shmex_error_set(e, rc, "mkdir %s: %s", p, strerror(-rc));
		}
		*s = '/';
	}
	if (mkdir(p, 0750) != 0 && errno != EEXIST) {
		int rc = -errno;
		return shmex_error_set(e, rc, "mkdir %s: %s", p, strerror(-rc));
	}
	struct stat st;
	if (stat(p, &st) != 0 || !S_ISDIR(st.st_mode))
		return shmex_error_set(e, -ENOTDIR, "%s: not a directory", p);
	if (access(p, W_OK | X_OK) != 0) {
		int rc = -errno;
		return shmex_error_set(e, rc, "%s: %s", p, strerror(-rc));
	}
	return 0;
}

int shm_journal_sync_dir(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	int rc = fsync(fd) == 0 ? 0 : -errno;
	close(fd);
	return rc;
}

static int read_lock(const char *path, pid_t *pid, uint64_t *start)
{
	FILE *f = fopen(path, "re");
	if (!f)
		return -errno;
	long long p = 0;
	unsigned long long s = 0;
	int n = fscanf(f, "%lld %llu", &p, &s);
	fclose(f);
	if (n != 2 || p <= 0)
		return SHMEX_EJCORRUPT;
	*pid = (pid_t)p;
	*start = s;
	return 0;
}

int shm_journal_lock(const char *dir, int *fd, struct shmex_error *e)
{
	char path[SHM_JOURNAL_PATH_MAX + 8];
	snprintf(path, sizeof(path), "%s/lock", dir);
	for (int attempt = 0; attempt < 3; attempt++) {
		int f = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
		if (f >= 0) {
			char line[64];
			int n = snprintf(line, sizeof(line), "%d %" PRIu64 "\n",
					 (int)getpid(), shm_proc_self_start());
			if (write(f, line, (size_t)n) != n || fdatasync(f) != 0) {
				int rc = -errno;
				close(f);
				unlink(path);
				return shmex_error_set(e, rc, "writing %s: %s", path,
						       strerror(-rc));
			}
			*fd = f;
			return 0;
		}
		if (errno != EEXIST) {
			int rc = -errno;
			return shmex_error_set(e, rc, "creating %s: %s", path,
					       strerror(-rc));
		}
		pid_t pid;
		uint64_t start;
		int rc = read_lock(path, &pid, &start);
		if (rc == 0 && shm_proc_alive(pid, start))
			return shmex_error_set(e, SHMEX_EINUSE,
					       "data directory %s is in use by "
					       "a running exchange (pid %d, %s)",
					       dir, (int)pid, path);
		/* Stale (its process is gone) or unreadable: replace it. */
		if (unlink(path) != 0 && errno != ENOENT) {
			rc = -errno;
			return shmex_error_set(e, rc, "removing stale %s: %s", path,
					       strerror(-rc));
		}
	}
	return shmex_error_set(e, SHMEX_EINUSE,
			       "data directory %s: its lock keeps changing", dir);
}

void shm_journal_unlock(const char *dir, int fd)
{
	char path[SHM_JOURNAL_PATH_MAX + 8];
	snprintf(path, sizeof(path), "%s/lock", dir);
	pid_t pid;
	uint64_t start;
	if (read_lock(path, &pid, &start) == 0 && pid == getpid() &&
	    start == shm_proc_self_start())
		unlink(path);
	if (fd >= 0)
		close(fd);
}

/* ---- how far the audit log has merged -------------------------------------- */

int shm_jaudit_pos_read(const char *shard_dir, uint32_t shard, uint64_t *seq)
{
	char path[SHM_JOURNAL_PATH_MAX + 32];
	snprintf(path, sizeof(path), "%s/../audit.pos", shard_dir);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? -ENOENT : (*seq = 0, 0);
	struct shm_jaudit_pos p;
	ssize_t n = pread(fd, &p, sizeof(p), 0);
	close(fd);
	uint32_t crc = p.crc;
	p.crc = 0;
	*seq = 0;
	if (n == (ssize_t)sizeof(p) && p.magic == SHM_JAUDIT_POS_MAGIC &&
	    shm_crc32c(0, &p, sizeof(p)) == crc && shard < SHM_JAUDIT_POS_SHARDS &&
	    shard < p.nshards)
		*seq = p.merged[shard];
	return 0;
}

int shm_jaudit_pos_write(const char *dir, const struct shm_jaudit_pos *p)
{
	char path[SHM_JOURNAL_PATH_MAX + 32], tmp[SHM_JOURNAL_PATH_MAX + 40];
	snprintf(path, sizeof(path), "%s/audit.pos", dir);
	snprintf(tmp, sizeof(tmp), "%s/audit.pos.tmp", dir);
	struct shm_jaudit_pos c = *p;
	c.magic = SHM_JAUDIT_POS_MAGIC;
	c.crc = 0;
	c.crc = shm_crc32c(0, &c, sizeof(c));
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
	if (fd < 0)
		return -errno;
	int rc = write(fd, &c, sizeof(c)) == (ssize_t)sizeof(c) ? 0 : -EIO;
	if (close(fd) != 0 && rc == 0)
		rc = -errno;
	if (rc == 0 && rename(tmp, path) != 0)
		rc = -errno;
	if (rc)
		unlink(tmp);
	return rc;
}
