/*
 * shmex-journal: offline tools over a data directory's journals and its
 * audit log (docs/durability.md).
 *
 *   shmex-journal [--json] dump   DIR | SHARD_DIR | AUDIT_LOG
 *   shmex-journal          verify DIR | SHARD_DIR | AUDIT_LOG
 *   shmex-journal [--output FILE] merge DIR
 *   shmex-journal [--json] stats  DIR | SHARD_DIR | AUDIT_LOG
 *
 * DIR is a data directory (exchange.conf, shard-<k>/), SHARD_DIR one
 * shard's directory of segments, AUDIT_LOG a file written by shmex-audit
 * or by merge.  The tool only reads (merge writes its output), so it may
 * run next to a live exchange; a journal being appended to may then end
 * in a record still being written, which verify reports as a torn tail.
 *
 * Exit status: 0 ok, 1 a problem found or an error (one line on stderr
 * naming the file and byte offset), 2 usage error.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "shm/journal/jnl.h"
#include "shm/shm_dec.h"
#include "shm/shm_journal.h"
#include "shm/shm_opt.h"

#define PROG "shmex-journal"

static bool json;

/* ---- what a path names ------------------------------------------------- */

enum kind { P_DATA, P_SHARD, P_AUDIT };

struct target {
	enum kind kind;
	char path[SHM_JOURNAL_PATH_MAX];
	uint32_t shard;   /* P_SHARD */
	uint32_t nshards; /* P_DATA, P_AUDIT; P_SHARD: from its segments */
};

static int fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int fail(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, PROG ": ");
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	return 1;
}

static int classify(const char *path, struct target *t)
{
	memset(t, 0, sizeof(*t));
	if (strlen(path) >= sizeof(t->path))
		return fail("%s: path too long", path);
	snprintf(t->path, sizeof(t->path), "%s", path);
	struct stat st;
	if (stat(path, &st) != 0)
		return fail("%s: %s", path, strerror(errno));
	if (S_ISREG(st.st_mode)) {
		int fd = open(path, O_RDONLY | O_CLOEXEC);
		struct jnl_audit_hdr h;
		ssize_t n = fd >= 0 ? pread(fd, &h, sizeof(h), 0) : -1;
		if (fd >= 0)
			close(fd);
		if (n == (ssize_t)sizeof(h) && h.magic == JNL_AUDIT_MAGIC) {
			t->kind = P_AUDIT;
			t->nshards = h.nshards;
			return 0;
		}
		return fail("%s: not an audit log (give a segment's directory to read "
			    "a journal)",
			    path);
	}
	struct shmex_error e = {0};
	if (jnl_data_shards(path, &t->nshards, &e) == 0) {
		t->kind = P_DATA;
		return 0;
	}
	struct shm_jdir d;
	if (shm_jdir_list(&d, path, &e) != 0)
		return fail("%s", shmex_error_msg(&e, -EIO));
	if (d.nseg == 0) {
		shm_jdir_free(&d);
		return fail("%s: neither a data directory nor a shard directory "
			    "(no exchange.conf, shard-<k> or journal-*.log)",
			    path);
	}
	struct shm_jseg_hdr h;
	int fd = open(d.seg[0], O_RDONLY | O_CLOEXEC);
	ssize_t n = fd >= 0 ? pread(fd, &h, sizeof(h), 0) : -1;
	if (fd >= 0)
		close(fd);
	int rc = n == (ssize_t)sizeof(h) ? shm_jseg_hdr_check(&h, &e) : SHMEX_EJTORN;
	if (rc) {
		int r = fail("%s: %s", d.seg[0], shmex_error_msg(&e, rc));
		shm_jdir_free(&d);
		return r;
	}
	shm_jdir_free(&d);
	t->kind = P_SHARD;
	t->shard = h.shard;
	t->nshards = h.nshards;
	return 0;
}

/* ---- printing one record ------------------------------------------------ */

struct pr {
	FILE *f;
	bool first;
};

static void kv_raw(struct pr *p, const char *k, const char *v, bool quote)
{
	if (json)
		fprintf(p->f, "%s\"%s\":%s%s%s", p->first ? "" : ",", k,
			quote ? "\"" : "", v, quote ? "\"" : "");
	else
		fprintf(p->f, " %s=%s", k, v);
	p->first = false;
}

static void kv_u(struct pr *p, const char *k, uint64_t v)
{
	char b[32];
	snprintf(b, sizeof(b), "%" PRIu64, v);
	kv_raw(p, k, b, false);
}

/* Fixed-point values: exact decimals in text, scaled integers in JSON. */
static void kv_dec(struct pr *p, const char *k, int64_t v, int digits)
{
	char b[40];
	if (json)
		snprintf(b, sizeof(b), "%" PRId64, v);
	else if (shm_dec_format(b, sizeof(b), v, digits) < 0)
		snprintf(b, sizeof(b), "?");
	kv_raw(p, k, b, false);
}

/* 128-bit cash: in JSON the raw units (as kv_dec), else the decimal. */
static void kv_cash(struct pr *p, const char *k, shm_cash_t v)
{
	char b[SHM_DEC_CASH_BUF];
	if (json) {
		char t[SHM_DEC_CASH_BUF];
		unsigned __int128 m =
			v < 0 ? -(unsigned __int128)v : (unsigned __int128)v;
		size_t n = 0;
		do {
			t[n++] = (char)('0' + (unsigned)(m % 10));
			m /= 10;
		} while (m);
		size_t o = 0;
		if (v < 0)
			b[o++] = '-';
		while (n)
			b[o++] = t[--n];
		b[o] = '\0';
	} else if (shm_dec_format_cash(b, sizeof(b), v) < 0) {
		snprintf(b, sizeof(b), "?");
	}
	kv_raw(p, k, b, false);
}

static void kv_sym(struct pr *p, const char *k, const char sym[16])
{
	char b[17];
	size_t n = 0;
	for (; n < 16 && sym[n]; n++)
		b[n] = sym[n] >= 0x21 && sym[n] < 0x7f && sym[n] != '"' && sym[n] != '\\'
			       ? sym[n]
			       : '?';
	b[n] = 0;
	kv_raw(p, k, b, true);
}

static void kv_side(struct pr *p, const char *k, uint8_t side)
{
	kv_raw(p, k, side == 0 ? "buy" : side == 1 ? "sell" : "?", true);
}

static void origin(struct pr *p, const struct shm_jrec_origin *o)
{
	kv_u(p, "gateway", o->gateway);
	kv_u(p, "req_id", o->req_id);
	kv_u(p, "ring_pos", o->ring_pos);
}

static void iso_time(char *b, size_t len, uint64_t ns)
{
	time_t s = (time_t)(ns / 1000000000u);
	struct tm tm;
	gmtime_r(&s, &tm);
	size_t n = strftime(b, len, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(b + n, len - n, ".%09" PRIu64 "Z", ns % 1000000000u);
}

static void print_record(const struct shm_jrec *r, const char *file, off_t off)
{
	struct pr p = {stdout, true};
	char t[48];
	iso_time(t, sizeof(t), r->h.time_ns);
	if (json) {
		fputc('{', stdout);
		kv_u(&p, "shard", r->h.shard);
		kv_u(&p, "seq", r->h.seq);
		kv_u(&p, "time_ns", r->h.time_ns);
		kv_raw(&p, "time", t, true);
		kv_raw(&p, "type", shm_jrec_type_name(r->h.type), true);
		kv_raw(&p, "end", r->h.flags & SHM_JREC_END ? "true" : "false", false);
		kv_raw(&p, "file", file, true);
		kv_u(&p, "offset", (uint64_t)off);
		kv_u(&p, "len", r->h.len);
	} else {
		printf("%u %" PRIu64 " %s %-8s%s", r->h.shard, r->h.seq, t,
		       shm_jrec_type_name(r->h.type),
		       r->h.flags & SHM_JREC_END ? " end" : "");
		p.first = false;
	}
	const struct shm_jrec_fill *fl = &r->u.fill;
	switch (r->h.type) {
	case SHM_JREC_START:
		kv_u(&p, "incarnation", r->u.start.incarnation);
		kv_u(&p, "pid", (uint64_t)(uint32_t)r->u.start.pid);
		kv_u(&p, "nshards", r->u.start.nshards);
		kv_u(&p, "recovered", r->u.start.recovered);
		break;
	case SHM_JREC_ACCOUNT:
		origin(&p, &r->u.account.o);
		kv_u(&p, "account", r->u.account.account);
		kv_cash(&p, "balance", shm_jrec_balance(&r->u.account));
		break;
	case SHM_JREC_SHARES:
		origin(&p, &r->u.shares.o);
		kv_u(&p, "account", r->u.shares.account);
		kv_sym(&p, "symbol", r->u.shares.symbol);
		kv_dec(&p, "qty", r->u.shares.qty, SHM_QTY_DIGITS);
		break;
	case SHM_JREC_ORDER:
		origin(&p, &r->u.order.o);
		kv_u(&p, "order", r->u.order.order_id);
		kv_u(&p, "account", r->u.order.account);
		kv_sym(&p, "symbol", r->u.order.symbol);
		kv_side(&p, "side", r->u.order.side);
		kv_dec(&p, "qty", r->u.order.qty, SHM_QTY_DIGITS);
		kv_dec(&p, "price", r->u.order.price, SHM_PRICE_DIGITS);
		kv_u(&p, "tif", r->u.order.tif);
		if (r->u.order.flags)
			kv_u(&p, "flags", r->u.order.flags);
		kv_dec(&p, "hold", r->u.order.hold,
		       r->u.order.side == 0 ? SHM_CASH_DIGITS : SHM_QTY_DIGITS);
		kv_u(&p, "event", r->u.order.event);
		break;
	case SHM_JREC_CANCEL:
		origin(&p, &r->u.cancel.o);
		kv_u(&p, "order", r->u.cancel.order_id);
		kv_u(&p, "account", r->u.cancel.account);
		break;
	case SHM_JREC_MODIFY:
		origin(&p, &r->u.modify.o);
		kv_u(&p, "order", r->u.modify.order_id);
		kv_u(&p, "account", r->u.modify.account);
		kv_dec(&p, "qty", r->u.modify.qty, SHM_QTY_DIGITS);
		kv_dec(&p, "price", r->u.modify.price, SHM_PRICE_DIGITS);
		break;
	case SHM_JREC_FILL:
		kv_u(&p, "taker", fl->taker_id);
		kv_u(&p, "maker", fl->maker_id);
		kv_u(&p, "taker_account", fl->taker_account);
		kv_u(&p, "maker_account", fl->maker_account);
		kv_side(&p, "taker_side", fl->taker_side);
		kv_dec(&p, "qty", fl->qty, SHM_QTY_DIGITS);
		kv_dec(&p, "price", fl->price, SHM_PRICE_DIGITS);
		kv_dec(&p, "taker_limit", fl->taker_limit, SHM_PRICE_DIGITS);
		kv_dec(&p, "maker_limit", fl->maker_limit, SHM_PRICE_DIGITS);
		kv_dec(&p, "buyer_refund", fl->buyer_refund, SHM_CASH_DIGITS);
		kv_dec(&p, "seller_credit", fl->seller_credit, SHM_CASH_DIGITS);
		kv_u(&p, "event", fl->event);
		break;
	case SHM_JREC_DONE:
		kv_u(&p, "order", r->u.done.order_id);
		kv_u(&p, "account", r->u.done.account);
		kv_side(&p, "side", r->u.done.side);
		kv_dec(&p, "qty", r->u.done.qty, SHM_QTY_DIGITS);
		kv_dec(&p, "price", r->u.done.price, SHM_PRICE_DIGITS);
		kv_u(&p, "reason", r->u.done.reason);
		kv_u(&p, "event", r->u.done.event);
		break;
	case SHM_JREC_MODIFIED:
		kv_u(&p, "order", r->u.modified.order_id);
		kv_u(&p, "account", r->u.modified.account);
		kv_side(&p, "side", r->u.modified.side);
		kv_dec(&p, "old_qty", r->u.modified.old_qty, SHM_QTY_DIGITS);
		kv_dec(&p, "old_price", r->u.modified.old_price, SHM_PRICE_DIGITS);
		kv_dec(&p, "new_qty", r->u.modified.new_qty, SHM_QTY_DIGITS);
		kv_dec(&p, "new_price", r->u.modified.new_price, SHM_PRICE_DIGITS);
		kv_u(&p, "event", r->u.modified.event);
		break;
	case SHM_JREC_SYMBOL:
		kv_sym(&p, "symbol", r->u.symbol.symbol);
		break;
	case SHM_JREC_POSITION:
		kv_u(&p, "account", r->u.position.account);
		kv_sym(&p, "symbol", r->u.position.symbol);
		break;
	case SHM_JREC_RECYCLE:
		kv_u(&p, "count", r->u.recycle.count);
		break;
	default:
		break;
	}
	fputs(json ? "}\n" : "\n", stdout);
}

/* ---- walking records ------------------------------------------------------ */

/* Called for each record in file order; returns 0 to go on. */
typedef int (*visit_fn)(void *arg, const struct shm_jrec *r, const char *file, off_t off);

/* Every record of one shard, in sequence.  Returns 0, or 1 after printing
 * the problem (file and byte). */
static int walk_shard(const char *shard_dir, uint32_t shard, uint32_t nshards,
		      visit_fn fn, void *arg, uint64_t *last_end_seq, uint64_t *last_seq)
{
	struct shm_jreader rd;
	struct shmex_error e = {0};
	*last_end_seq = *last_seq = 0;
	/* From the first segment there is (older ones may have been removed
	 * after a snapshot covered them). */
	struct shm_jdir d;
	int rc = shm_jdir_list(&d, shard_dir, &e);
	if (rc == -ENOENT)
		return 0; /* a shard that never wrote */
	if (rc)
		return fail("%s", shmex_error_msg(&e, rc));
	uint64_t from = d.nseg ? d.seg_first[0] : 0;
	shm_jdir_free(&d);
	rc = shm_jreader_open(&rd, shard_dir, shard, nshards, from, &e);
	if (rc)
		return fail("%s", shmex_error_msg(&e, rc));
	struct shm_jrec r;
	int out = 0;
	for (;;) {
		rc = shm_jreader_next(&rd, &r, &e);
		if (rc != 1)
			break;
		*last_seq = r.h.seq;
		if (r.h.flags & SHM_JREC_END)
			*last_end_seq = r.h.seq;
		if (fn && fn(arg, &r, rd.good_path, rd.good_end - (off_t)r.h.len) != 0) {
			out = 1;
			rc = 0;
			break;
		}
	}
	if (rc < 0)
		out = fail("%s", shmex_error_msg(&e, rc));
	shm_jreader_close(&rd);
	return out;
}

/* Every record of an audit log, in file order.  Returns 0, or 1 after
 * printing the problem. */
static int walk_audit(const char *path, visit_fn fn, void *arg)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return fail("%s: %s", path, strerror(errno));
	struct jnl_audit_hdr h;
	struct shmex_error e = {0};
	int out = 0;
	if (pread(fd, &h, sizeof(h), 0) != (ssize_t)sizeof(h)) {
		out = fail("%s: byte 0: header cut short", path);
		goto out_close;
	}
	int rc = jnl_audit_hdr_check(&h, &e);
	if (rc) {
		out = fail("%s: byte 0: %s", path, shmex_error_msg(&e, rc));
		goto out_close;
	}
	FILE *f = fdopen(fd, "r");
	if (!f) {
		out = fail("%s: %s", path, strerror(errno));
		goto out_close;
	}
	setvbuf(f, NULL, _IOFBF, 1u << 20);
	fseeko(f, (off_t)sizeof(h), SEEK_SET);
	off_t off = (off_t)sizeof(h);
	struct shm_jrec r;
	for (;;) {
		size_t n = fread(&r, 1, SHM_JREC_HDR, f);
		if (n == 0)
			break;
		if (n < SHM_JREC_HDR) {
			out = fail("%s: byte %jd: a torn record (%zu bytes)", path,
				   (intmax_t)off, n);
			break;
		}
		size_t len;
		len = r.h.len;
		if (len < SHM_JREC_HDR || len > SHM_JREC_MAX || (len & 7)) {
			out = fail("%s: byte %jd: bad record length %zu", path,
				   (intmax_t)off, len);
			break;
		}
		size_t m = fread((uint8_t *)&r + SHM_JREC_HDR, 1, len - SHM_JREC_HDR, f);
		if (m < len - SHM_JREC_HDR) {
			out = fail("%s: byte %jd: a torn record (%zu of %zu bytes)", path,
				   (intmax_t)off, SHM_JREC_HDR + m, len);
			break;
		}
		if (shm_jrec_check(&r, len, &len) != 0) {
			out = fail("%s: byte %jd: bad record (length, type or checksum)",
				   path, (intmax_t)off);
			break;
		}
		if (fn && fn(arg, &r, path, off) != 0) {
			out = 1;
			break;
		}
		off += (off_t)len;
	}
	fclose(f);
	return out;
out_close:
	close(fd);
	return out;
}

/* ---- dump ---------------------------------------------------------------- */

static int dump_one(void *arg, const struct shm_jrec *r, const char *file, off_t off)
{
	(void)arg;
	print_record(r, file, off);
	return ferror(stdout) ? 1 : 0;
}

static int cmd_dump(const struct target *t)
{
	if (t->kind == P_AUDIT)
		return walk_audit(t->path, dump_one, NULL);
	uint64_t a, b;
	if (t->kind == P_SHARD)
		return walk_shard(t->path, t->shard, t->nshards, dump_one, NULL, &a, &b);
	for (uint32_t k = 0; k < t->nshards; k++) {
		char dir[SHM_JOURNAL_PATH_MAX];
		if (shm_journal_shard_dir(dir, sizeof(dir), t->path, k) != 0)
			return fail("%s: path too long", t->path);
		if (walk_shard(dir, k, t->nshards, dump_one, NULL, &a, &b))
			return 1;
	}
	return 0;
}

/* ---- verify ---------------------------------------------------------------- */

struct averify {
	uint32_t nshards;
	bool has_prev;
	struct shm_jrec_hdr prev;
	uint64_t last[64]; /* per shard: last sequence seen, 0 none */
	uint64_t records;
};

static int verify_audit_rec(void *arg, const struct shm_jrec *r, const char *file,
			    off_t off)
{
	struct averify *v = arg;
	if (r->h.shard >= v->nshards || r->h.shard >= 64)
		return fail("%s: byte %jd: a record of shard %u, the log merges %u", file,
			    (intmax_t)off, r->h.shard, v->nshards);
	if (v->has_prev && jnl_key_cmp(&v->prev, &r->h) >= 0)
		return fail("%s: byte %jd: out of order: (time %" PRIu64 ", shard %u, "
			    "seq %" PRIu64 ") after (time %" PRIu64
			    ", shard %u, seq %" PRIu64 ")",
			    file, (intmax_t)off, r->h.time_ns, r->h.shard, r->h.seq,
			    v->prev.time_ns, v->prev.shard, v->prev.seq);
	uint64_t *l = &v->last[r->h.shard];
	if (*l && r->h.seq != *l + 1)
		return fail("%s: byte %jd: shard %u sequence %" PRIu64 " follows %" PRIu64
			    " (a gap or a duplicate)",
			    file, (intmax_t)off, r->h.shard, r->h.seq, *l);
	*l = r->h.seq;
	v->prev = r->h;
	v->has_prev = true;
	v->records++;
	return 0;
}

static int verify_audit(const char *path, uint32_t nshards)
{
	struct averify v;
	memset(&v, 0, sizeof(v));
	v.nshards = nshards;
	if (walk_audit(path, verify_audit_rec, &v))
		return 1;
	printf("%s: %" PRIu64 " records, sorted, no gaps\n", path, v.records);
	return 0;
}

static int first_of(void *arg, const struct shm_jrec *r, const char *file, off_t off)
{
	(void)file;
	(void)off;
	uint64_t *first = arg;
	if (*first == 0)
		*first = r->h.seq;
	return 0;
}

static int verify_shard(const char *dir, uint32_t shard, uint32_t nshards)
{
	uint64_t end, last, first = 0;
	if (walk_shard(dir, shard, nshards, first_of, &first, &end, &last))
		return 1;
	if (last != end)
		return fail("%s: records %" PRIu64 "..%" PRIu64
			    " are an incomplete request (no end mark; "
			    "the next start cuts them)",
			    dir, end + 1, last);
	if (first > 1)
		printf("%s: records %" PRIu64 "..%" PRIu64
		       " good (the ones before were removed after a snapshot)\n",
		       dir, first, last);
	else
		printf("%s: records 1..%" PRIu64 " good\n", dir, last);
	return 0;
}

/* The audit log against the journals: record for record, it must be the
 * beginning of their merge (it may lag a live exchange). */
struct amatch {
	FILE *f;
	const char *path;
	off_t off;
	uint64_t same;
	bool ended; /* the log ended before the merge */
	int bad;
};

static int match_one(void *arg, const struct shm_jrec *r)
{
	struct amatch *m = arg;
	uint8_t buf[SHM_JREC_MAX];
	size_t n = fread(buf, 1, r->h.len, m->f);
	if (n == 0 && feof(m->f)) {
		m->ended = true;
		return -ECANCELED; /* stops the merge: the rest is not merged yet */
	}
	if (n != r->h.len || memcmp(buf, r, r->h.len) != 0) {
		m->bad = fail("%s: byte %jd: not the journals' merge (expected shard %u "
			      "sequence %" PRIu64 " here)",
			      m->path, (intmax_t)m->off, r->h.shard, r->h.seq);
		return -ECANCELED;
	}
	m->off += (off_t)n;
	m->same++;
	return 0;
}

static int match_journals(const char *dir, const char *audit, uint32_t nshards)
{
	struct jnl_src *src = calloc(nshards, sizeof(*src));
	if (!src)
		return fail("out of memory");
	struct shmex_error e = {0};
	int rc = 0, out = 0;
	bool trimmed = false;
	for (uint32_t k = 0; k < nshards && !rc; k++) {
		rc = jnl_src_open(&src[k], dir, k, nshards, false, NULL, &e);
		if (rc == -ENOENT) {
			rc = 0;
			continue;
		}
		if (!rc)
			rc = jnl_src_find_limit(&src[k], &e);
		if (!rc && src[k].rd.dir.nseg && src[k].rd.dir.seg_first[0] > 1)
			trimmed = true;
	}
	if (rc) {
		out = fail("%s", shmex_error_msg(&e, rc));
	} else if (trimmed) {
		printf("%s: not compared with the journals (their first segments were "
		       "removed after snapshots)\n",
		       audit);
	} else {
		struct amatch m = {.path = audit, .off = sizeof(struct jnl_audit_hdr)};
		m.f = fopen(audit, "rb");
		if (!m.f) {
			out = fail("%s: %s", audit, strerror(errno));
		} else {
			fseeko(m.f, m.off, SEEK_SET);
			int64_t n = jnl_merge_step(src, nshards, UINT64_MAX, UINT64_MAX,
						   match_one, &m, &e);
			if (m.bad) {
				out = 1;
			} else if (n < 0 && !m.ended) {
				out = fail("%s", shmex_error_msg(&e, (int)n));
			} else if (!m.ended && fgetc(m.f) != EOF) {
				out = fail(
					"%s: byte %jd: records the journals do not have",
					audit, (intmax_t)m.off);
			} else {
				printf("%s: the journals' merge, record for record (%" PRIu64
				       " records%s)\n",
				       audit, m.same,
				       m.ended ? "; the journals have more, not merged yet"
					       : "");
			}
			fclose(m.f);
		}
	}
	for (uint32_t k = 0; k < nshards; k++)
		jnl_src_close(&src[k]);
	free(src);
	return out;
}

static int cmd_verify(const struct target *t)
{
	if (t->kind == P_AUDIT)
		return verify_audit(t->path, t->nshards);
	if (t->kind == P_SHARD)
		return verify_shard(t->path, t->shard, t->nshards);
	for (uint32_t k = 0; k < t->nshards; k++) {
		char dir[SHM_JOURNAL_PATH_MAX];
		if (shm_journal_shard_dir(dir, sizeof(dir), t->path, k) != 0)
			return fail("%s: path too long", t->path);
		struct stat st;
		if (stat(dir, &st) != 0)
			continue;
		if (verify_shard(dir, k, t->nshards))
			return 1;
	}
	char audit[SHM_JOURNAL_PATH_MAX + 16];
	snprintf(audit, sizeof(audit), "%s/" JNL_AUDIT_NAME, t->path);
	if (access(audit, F_OK) == 0)
		return verify_audit(audit, t->nshards) ||
		       match_journals(t->path, audit, t->nshards);
	return 0;
}

/* ---- stats ------------------------------------------------------------------ */

struct sstat {
	uint64_t n, bytes, first_seq, last_seq, first_time, last_time;
	uint64_t by_type[SHM_JREC_TYPE_LAST_ + 1];
};

struct stats {
	uint32_t nshards;
	struct sstat s[64];
};

static int stats_rec(void *arg, const struct shm_jrec *r, const char *file, off_t off)
{
	(void)file;
	(void)off;
	struct stats *st = arg;
	if (r->h.shard >= 64)
		return 0;
	struct sstat *s = &st->s[r->h.shard];
	if (s->n == 0) {
		s->first_seq = r->h.seq;
		s->first_time = r->h.time_ns;
	}
	s->n++;
	s->bytes += r->h.len;
	s->last_seq = r->h.seq;
	s->last_time = r->h.time_ns;
	if (r->h.type <= SHM_JREC_TYPE_LAST_)
		s->by_type[r->h.type]++;
	return 0;
}

static void print_stats(const struct stats *st, uint32_t from, uint32_t to)
{
	for (uint32_t k = from; k < to; k++) {
		const struct sstat *s = &st->s[k];
		char t0[48], t1[48];
		iso_time(t0, sizeof(t0), s->first_time);
		iso_time(t1, sizeof(t1), s->last_time);
		struct pr p = {stdout, true};
		if (json) {
			fputc('{', stdout);
			kv_u(&p, "shard", k);
		} else {
			printf("shard %u:", k);
			p.first = false;
		}
		kv_u(&p, "records", s->n);
		kv_u(&p, "bytes", s->bytes);
		if (s->n) {
			kv_u(&p, "first_seq", s->first_seq);
			kv_u(&p, "last_seq", s->last_seq);
			if (json) {
				kv_u(&p, "first_time_ns", s->first_time);
				kv_u(&p, "last_time_ns", s->last_time);
			} else {
				kv_raw(&p, "first_time", t0, false);
				kv_raw(&p, "last_time", t1, false);
			}
		}
		if (json) {
			fputs(",\"types\":{", stdout);
			p.first = true;
		}
		for (uint16_t ty = 1; ty <= SHM_JREC_TYPE_LAST_; ty++)
			if (s->by_type[ty])
				kv_u(&p, shm_jrec_type_name(ty), s->by_type[ty]);
		fputs(json ? "}}\n" : "\n", stdout);
	}
}

static int cmd_stats(const struct target *t)
{
	struct stats *st = calloc(1, sizeof(*st));
	if (!st)
		return fail("out of memory");
	int rc = 0;
	uint64_t a, b;
	if (t->kind == P_AUDIT) {
		rc = walk_audit(t->path, stats_rec, st);
		if (!rc)
			print_stats(st, 0, t->nshards < 64 ? t->nshards : 64);
	} else if (t->kind == P_SHARD) {
		rc = walk_shard(t->path, t->shard, t->nshards, stats_rec, st, &a, &b);
		if (!rc)
			print_stats(st, t->shard, t->shard + 1);
	} else {
		for (uint32_t k = 0; k < t->nshards && !rc && k < 64; k++) {
			char dir[SHM_JOURNAL_PATH_MAX];
			if (shm_journal_shard_dir(dir, sizeof(dir), t->path, k) != 0)
				rc = fail("%s: path too long", t->path);
			else
				rc = walk_shard(dir, k, t->nshards, stats_rec, st, &a,
						&b);
		}
		if (!rc)
			print_stats(st, 0, t->nshards < 64 ? t->nshards : 64);
	}
	free(st);
	return rc;
}

/* ---- merge ------------------------------------------------------------------ */

static int cmd_merge(const struct target *t, const char *output)
{
	if (t->kind != P_DATA)
		return fail("merge: %s is not a data directory", t->path);
	int fd = 1;
	if (output) {
		fd = open(output, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
		if (fd < 0)
			return fail("%s: %s", output, strerror(errno));
	}
	uint64_t n = 0;
	struct shmex_error e = {0};
	int rc = jnl_merge_dir(t->path, fd, PROG, &n, &e);
	if (rc == 0 && output && fdatasync(fd) != 0)
		rc = shmex_error_set(&e, -errno, "fdatasync %s: %s", output,
				     strerror(errno));
	if (output && close(fd) != 0 && rc == 0)
		rc = shmex_error_set(&e, -errno, "close %s: %s", output, strerror(errno));
	if (rc)
		return fail("merge: %s", shmex_error_msg(&e, rc));
	if (output)
		fprintf(stderr, PROG ": merged %" PRIu64 " records into %s\n", n, output);
	return 0;
}

int main(int argc, char **argv)
{
	const char *output = NULL;
	const struct shm_opt opts[] = {
		{.name = "json",
		 .type = SHM_OPT_FLAG,
		 .dst = &json,
		 .help = "dump, stats: one JSON object per line (fixed-point values "
			 "as scaled integers)"},
		{.name = "output",
		 .key = 'o',
		 .type = SHM_OPT_STR,
		 .arg = "FILE",
		 .dst = &output,
		 .help = "merge: write to FILE instead of stdout"},
	};
	const struct shm_opt_prog prog = {
		.name = PROG,
		.synopsis = "[--json] [--output FILE] COMMAND PATH",
		.about =
			"Reads the journals and the audit log of a shmex data directory.",
		.opts = opts,
		.nopts = sizeof(opts) / sizeof(opts[0]),
		.min_args = 0,
		.max_args = -1,
		.operands =
			"Commands (PATH: a data directory, a shard-<k> directory or an "
			"audit log):\n"
			"  dump PATH     every record, one line each (--json: JSON lines)\n"
			"  verify PATH   checksums, sequence gaps, time order (and the "
			"audit log's\n"
			"                merge order); exit 1 naming file and byte of the "
			"first problem\n"
			"  merge DIR     every shard's journal merged by (time, shard, seq), "
			"in the\n"
			"                audit-log format, to --output or stdout\n"
			"  stats PATH    records per type per shard, first/last sequence and "
			"time, bytes\n"
			"\n"
			"Exit status: 0 ok, 1 a problem or an error, 2 usage error.",
	};
	int first;
	enum shm_opt_result pr = shm_opt_parse(&prog, argc, argv, &first);
	if (pr != SHM_OPT_RUN)
		return pr == SHM_OPT_EXIT ? 0 : 2;
	if (first >= argc)
		return shm_opt_usage_error(&prog, "%s", "missing COMMAND");
	const char *cmd = argv[first];
	bool dump = !strcmp(cmd, "dump"), verify = !strcmp(cmd, "verify"),
	     merge = !strcmp(cmd, "merge"), stats = !strcmp(cmd, "stats");
	if (!dump && !verify && !merge && !stats)
		return shm_opt_usage_error(&prog, "unknown command '%s'", cmd);
	if (argc - first != 2)
		return shm_opt_usage_error(&prog, "'%s' takes one PATH", cmd);
	if (output && !merge)
		return shm_opt_usage_error(&prog, "--output goes with merge, not '%s'",
					   cmd);
	if (json && (verify || merge))
		return shm_opt_usage_error(
			&prog, "--json goes with dump or stats, not '%s'", cmd);
	struct target t;
	if (classify(argv[first + 1], &t))
		return 1;
	int rc = dump     ? cmd_dump(&t)
		 : verify ? cmd_verify(&t)
		 : merge  ? cmd_merge(&t, output)
			  : cmd_stats(&t);
	if (fflush(stdout) != 0 && rc == 0)
		return fail("writing output: %s", strerror(errno));
	return rc;
}
