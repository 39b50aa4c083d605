/*
 * rpl_report: report lines and the client id map (see rpl_report.h).
 */
#include "engine/replay/rpl_report.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

void rpl_report_reset(struct rpl_report *r, bool format, bool sha256, rpl_line_fn sink,
		      void *ctx)
{
	r->format = format;
	r->sha256 = format && sha256;
	r->sink = format ? sink : NULL;
	r->ctx = ctx;
	memset(r->counts, 0, sizeof(r->counts));
	r->rejected = 0;
	r->oom = false;
	r->len = 0;
	r->n = 0;
	r->any = false;
	rpl_sha256_init(&r->sha);
}

static char *fmt_u64(char *p, uint64_t v)
{
	char tmp[24];
	int n = 0;
	do {
		tmp[n++] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	while (n)
		*p++ = tmp[--n];
	return p;
}

static char *fmt_i64(char *p, int64_t v)
{
	if (v < 0) {
		*p++ = '-';
		return fmt_u64(p, (uint64_t)0 - (uint64_t)v);
	}
	return fmt_u64(p, (uint64_t)v);
}

/* Room for one more line of up to 160 bytes (a type and five fields). */
static char *line_room(struct rpl_report *r)
{
	if (r->len + 160 > r->cap) {
		size_t cap = r->cap ? 2 * r->cap : 4096;
		char *nb = realloc(r->buf, cap);
		if (!nb)
			return NULL;
		r->buf = nb;
		r->cap = cap;
	}
	if (r->n == r->lcap) {
		size_t cap = r->lcap ? 2 * r->lcap : 64;
		struct rpl_line_ref *nl = realloc(r->lines, cap * sizeof(*nl));
		if (!nl)
			return NULL;
		r->lines = nl;
		r->lcap = cap;
	}
	return r->buf + r->len;
}

void rpl_report_line(struct rpl_report *r, unsigned type, int n, const int64_t *f)
{
	r->counts[type]++;
	if (!r->format)
		return;
	char *start = line_room(r);
	if (!start) {
		r->oom = true;
		return;
	}
	char *p = start;
	*p++ = (char)('0' + type);
	for (int i = 0; i < n && i < 5; i++) {
		*p++ = ',';
		p = fmt_i64(p, f[i]);
	}
	struct rpl_line_ref *l = &r->lines[r->n++];
	l->off = (uint32_t)r->len;
	l->len = (uint32_t)(p - start);
	l->type = (uint8_t)type;
	r->len += l->len;
}

void rpl_report_flush(struct rpl_report *r)
{
	for (unsigned t = 0; t < 6 && r->n; t++) {
		for (size_t i = 0; i < r->n; i++) {
			const struct rpl_line_ref *l = &r->lines[i];
			if (l->type != t)
				continue;
			const char *s = r->buf + l->off;
			if (r->sha256) {
				if (r->any)
					rpl_sha256_update(&r->sha, "\n", 1);
				rpl_sha256_update(&r->sha, s, l->len);
			}
			r->any = true;
			if (r->sink)
				r->sink(r->ctx, s, l->len);
		}
	}
	r->n = 0;
	r->len = 0;
}

void rpl_report_sha256_hex(struct rpl_report *r, char out[65])
{
	uint8_t d[32];
	rpl_sha256_final(&r->sha, d);
	rpl_sha256_hex(d, out);
}

void rpl_report_free(struct rpl_report *r)
{
	free(r->buf);
	free(r->lines);
	r->buf = NULL;
	r->lines = NULL;
	r->cap = r->lcap = r->len = r->n = 0;
}

static size_t idmap_hash(uint64_t k)
{
	k ^= k >> 33;
	k *= UINT64_C(0xff51afd7ed558ccd);
	k ^= k >> 33;
	return (size_t)k;
}

int rpl_idmap_init(struct rpl_idmap *m, size_t cap)
{
	m->key = calloc(cap, sizeof(uint64_t));
	m->val = calloc(cap, sizeof(uint64_t));
	m->mask = cap - 1;
	m->used = 0;
	if (m->key && m->val)
		return 0;
	rpl_idmap_free(m);
	return -ENOMEM;
}

uint64_t rpl_idmap_get(const struct rpl_idmap *m, uint64_t k)
{
	for (size_t i = idmap_hash(k) & m->mask; m->val[i]; i = (i + 1) & m->mask)
		if (m->key[i] == k)
			return m->val[i];
	return 0;
}

static void put_nogrow(struct rpl_idmap *m, uint64_t k, uint64_t v)
{
	size_t i = idmap_hash(k) & m->mask;
	for (; m->val[i]; i = (i + 1) & m->mask) {
		if (m->key[i] == k) {
			m->val[i] = v;
			return;
		}
	}
	m->key[i] = k;
	m->val[i] = v;
	m->used++;
}

int rpl_idmap_put(struct rpl_idmap *m, uint64_t k, uint64_t v)
{
	if (2 * (m->used + 1) > m->mask + 1) {
		struct rpl_idmap bigger;
		if (rpl_idmap_init(&bigger, 2 * (m->mask + 1)) != 0)
			return -ENOMEM;
		for (size_t i = 0; i <= m->mask; i++)
			if (m->val[i])
				put_nogrow(&bigger, m->key[i], m->val[i]);
		rpl_idmap_free(m);
		*m = bigger;
	}
	put_nogrow(m, k, v);
	return 0;
}

void rpl_idmap_free(struct rpl_idmap *m)
{
	free(m->key);
	free(m->val);
	m->key = m->val = NULL;
	m->mask = m->used = 0;
}
