/*
 * shmex-audit: many writers, one sorted writer.  Merges the journals of
 * every shard of a running exchange into DIR/audit.log, in (time, shard,
 * sequence) order, as they are written (docs/durability.md, "Audit log").
 *
 *   shmex-audit --instance NAME
 *
 * The supervisor starts one when the exchange has a data directory and
 * restarts it when it dies, like a gateway.  It maps the control region
 * and each shard's book region read-only (it cannot change the exchange)
 * and reads the journal files.
 *
 * The merge rule.  Each matcher publishes, next to its book's
 * durable_event, a watermark W_k (durable_time_ns, release [BK11]): every
 * record of shard k with a time below W_k is on disk, and no later record
 * of k will have a time below W_k; an idle matcher moves W_k to the clock
 * every idle tick, so a quiet shard never holds the merge back.  This
 * process loads every W_k (acquire [BK12]), takes M = min W_k, and
 * appends, in merge order, every record with a time below M: all of them
 * are durable and already in the files, and none can still come, so the
 * order is final.  A record is written exactly once, only after every
 * shard has advanced past its time.
 *
 * A dead matcher's watermark stays where it was (nothing below it can be
 * lost: it was durable), so the merge waits for its successor; when the
 * book region has a new creator the shard's journal is reopened after
 * the last record taken, because recovery may have cut a torn tail that
 * this process had read ahead (but never written: it was above W_k).
 *
 * Durability and restart.  Every step's records go out with one write and
 * one fdatasync (unless the exchange runs --sync none).  After a SIGKILL
 * the next start reads only the end of audit.log, cuts a torn tail, and
 * takes its last record's key as the cursor: exactly the records at or
 * below it are in the log (they were written in key order), so every
 * shard resumes after it, without gap or duplicate.
 *
 * Memory: one record ahead per shard, one read buffer per shard and one
 * output buffer, whatever the journals' size and the merge's lag.
 *
 * Exit status: 0 after SIGTERM/SIGINT (what could be merged is on disk),
 * 1 on an error (a corrupted journal or audit log, a failed write), 2
 * usage error.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "shm/journal/jnl.h"
#include "shm/shm_atomic.h"
#include "shm/shm_book.h"
#include "shm/shm_clock.h"
#include "shm/shm_instance.h"
#include "shm/shm_opt.h"
#include "shm/shm_proc.h"
#include "shm/shm_region.h"

#define PROG "shmex-audit"
#define STEP_MAX 65536u     /* records per write group */
#define POLL_NS 2000000u    /* sleep when nothing could be merged */
#define CHECK_NS 20000000u  /* how often a quiet shard's matcher is checked */
#define ATTACH_NS 10000000u /* retry interval of an absent book */
#define POS_NS 100000000u   /* audit.pos rewritten at most this often */

static volatile sig_atomic_t stop_flag;

static void on_signal(int sig)
{
	(void)sig;
	stop_flag = 1;
}

struct shard {
	struct shm_region book;
	bool attached;
	const struct shm_book_hdr_sh *hdr;
	int32_t creator_pid; /* of the book we follow (or followed) */
	uint64_t creator_start;
	bool ever;            /* attached at least once */
	uint64_t wm;          /* last watermark loaded */
	uint64_t next_try_ns; /* attach or liveness check */
};

struct audit {
	const char *instance;
	bool quiet;
	struct shm_instance inst;
	char dir[SHM_DATA_DIR_MAX];
	char path[SHM_DATA_DIR_MAX + 16];
	uint32_t n;
	bool sync;
	int fd;
	struct jnl_out out;
	struct shard sh[SHM_INSTANCE_SHARDS_MAX];
	struct jnl_src src[SHM_INSTANCE_SHARDS_MAX];
	bool src_ok[SHM_INSTANCE_SHARDS_MAX];
	bool has_cursor;
	struct shm_jrec_hdr cursor;
	uint64_t merged, out_of_order;
	/* The bound of the last step that took everything below it: while
	 * the bound stays there, nothing new can be merged. */
	uint64_t done_below;
	bool reopened; /* a source was reopened since */
	/* DIR/audit.pos: what the log holds of each shard, for the
	 * matchers' segment removal; rewritten at most every POS_NS. */
	struct shm_jaudit_pos pos;
	bool pos_dirty;
	uint64_t pos_next_ns;
};

static void logm(const struct audit *a, bool always, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void logm(const struct audit *a, bool always, const char *fmt, ...)
{
	if (a->quiet && !always)
		return;
	char buf[768];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	fprintf(stderr, PROG ": %s\n", buf);
}

/* ---- the audit log's file ---------------------------------------------- */

/* Opens DIR/audit.log, cuts a torn tail, writes the header of a new one,
 * and sets the cursor from its last record. */
static int open_log(struct audit *a)
{
	snprintf(a->path, sizeof(a->path), "%s/" JNL_AUDIT_NAME, a->dir);
	a->fd = open(a->path, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
	if (a->fd < 0) {
		logm(a, true, "open %s: %s", a->path, strerror(errno));
		return -1;
	}
	struct shmex_error e = {0};
	off_t end;
	int rc = jnl_audit_tail(a->fd, a->path, a->n, &end, &a->has_cursor, &a->cursor,
				&e);
	if (rc) {
		logm(a, true, "%s; move it away to start a new audit log",
		     shmex_error_msg(&e, rc));
		return -1;
	}
	off_t size = lseek(a->fd, 0, SEEK_END);
	bool fresh = end < (off_t)sizeof(struct jnl_audit_hdr);
	if (end < size) {
		logm(a, true, "%s: cutting %jd bytes after byte %jd (a write cut short)",
		     a->path, (intmax_t)(size - end), (intmax_t)(fresh ? 0 : end));
		if (ftruncate(a->fd, fresh ? 0 : end) != 0 || fdatasync(a->fd) != 0) {
			logm(a, true, "truncating %s: %s", a->path, strerror(errno));
			return -1;
		}
	}
	if (jnl_out_init(&a->out, a->fd) != 0) {
		logm(a, true, "out of memory");
		return -1;
	}
	if (fresh) {
		/* A new log holds nothing yet, whatever an old audit.pos says. */
		memset(a->pos.merged, 0, sizeof(a->pos.merged));
		a->pos_dirty = true;
		struct jnl_audit_hdr h;
		jnl_audit_hdr_init(&h, a->n);
		if (jnl_out_raw(&a->out, &h, sizeof(h)) != 0 ||
		    jnl_out_flush(&a->out) != 0 || fdatasync(a->fd) != 0 ||
		    shm_journal_sync_dir(a->dir) != 0) {
			logm(a, true, "writing %s: %s", a->path, strerror(errno));
			return -1;
		}
	}
	if (a->has_cursor) {
		a->out.last = a->cursor;
		a->out.has_last = true;
		logm(a, false,
		     "%s: resuming after shard %u sequence %" PRIu64 " (time %" PRIu64
		     ")",
		     a->path, a->cursor.shard, a->cursor.seq, a->cursor.time_ns);
	}
	return 0;
}

/* Appends one record; notes (never hides) a record that arrives behind
 * the cursor, which only a realtime clock stepped back across a matcher
 * restart can cause. */
static int put(void *arg, const struct shm_jrec *r)
{
	struct audit *a = arg;
	if (a->out.has_last && jnl_key_cmp(&a->out.last, &r->h) >= 0) {
		if (a->out_of_order++ == 0)
			logm(a, true,
			     "shard %u record %" PRIu64 " has a time before records "
			     "already merged (the clock went back across a matcher "
			     "restart); written out of order",
			     r->h.shard, r->h.seq);
	}
	return jnl_out_put(&a->out, r);
}

/* ---- telling the matchers what is merged ----------------------------------- */

/* Starts from the previous run's audit.pos (every value in it is merged:
 * it was written after the records were durable here), so that a shard
 * this run has not read yet is still protected. */
static void pos_load(struct audit *a)
{
	memset(&a->pos, 0, sizeof(a->pos));
	a->pos.nshards = a->n;
	for (uint32_t k = 0; k < a->n && k < SHM_JAUDIT_POS_SHARDS; k++) {
		char sd[SHM_JOURNAL_PATH_MAX];
		uint64_t v = 0;
		if (shm_journal_shard_dir(sd, sizeof(sd), a->dir, k) == 0 &&
		    shm_jaudit_pos_read(sd, k, &v) == 0)
			a->pos.merged[k] = v;
	}
	a->pos_dirty = true;
}

/* After a durable step: each shard's last merged record; the file is
 * rewritten when it changed and POS_NS has passed (or at the end). */
static void pos_update(struct audit *a, bool now_or_never)
{
	for (uint32_t k = 0; k < a->n && k < SHM_JAUDIT_POS_SHARDS; k++)
		if (a->src_ok[k] && a->src[k].last_seq > a->pos.merged[k]) {
			a->pos.merged[k] = a->src[k].last_seq;
			a->pos_dirty = true;
		}
	uint64_t t = shm_clock_ns(CLOCK_MONOTONIC);
	if (!a->pos_dirty || (!now_or_never && t < a->pos_next_ns))
		return;
	int rc = shm_jaudit_pos_write(a->dir, &a->pos);
	if (rc)
		logm(a, true,
		     "writing %s/audit.pos: %s (matchers then keep more journal)", a->dir,
		     strerror(-rc));
	a->pos_dirty = rc != 0;
	a->pos_next_ns = t + POS_NS;
}

/* ---- the shards' watermarks ---------------------------------------------- */

static void detach_book(struct shard *s)
{
	if (s->attached)
		shm_region_detach(&s->book);
	s->attached = false;
	s->hdr = NULL;
}

/* Follows shard k's current book: attaches when there is one made by a
 * live matcher, drops it when its matcher died, and reopens the shard's
 * journal after a restart. */
static int track(struct audit *a, uint32_t k, uint64_t now)
{
	struct shard *s = &a->sh[k];
	if (now < s->next_try_ns)
		return 0;
	if (s->attached) {
		s->next_try_ns = now + CHECK_NS;
		if (shm_proc_alive(s->creator_pid, s->creator_start))
			return 0;
		detach_book(s);
		logm(a, false,
		     "matcher of shard %u (pid %d) is gone; waiting for its "
		     "successor",
		     k, (int)s->creator_pid);
	}
	s->next_try_ns = now + ATTACH_NS;
	char name[SHM_REGION_NAME_MAX];
	if (shm_region_name(name, SHM_KIND_BOOK, k) != 0)
		return -1;
	if (shm_region_attach(&s->book, a->instance, name, SHM_KIND_BOOK, SHM_RDONLY) !=
	    0)
		return 0; /* not there or not ready yet */
	const struct shm_region_hdr_sh *rh = s->book.base;
	struct shm_book_view v;
	if (shm_book_view_init(&v, (const uint8_t *)s->book.base + SHM_REGION_HDR_SIZE,
			       s->book.size - SHM_REGION_HDR_SIZE) != 0 ||
	    !shm_proc_alive(rh->creator_pid, rh->creator_start)) {
		shm_region_detach(&s->book); /* a dead matcher's book */
		return 0;
	}
	bool same = s->ever && rh->creator_pid == s->creator_pid &&
		    rh->creator_start == s->creator_start;
	s->attached = true;
	s->hdr = v.hdr;
	s->creator_pid = rh->creator_pid;
	s->creator_start = rh->creator_start;
	s->next_try_ns = now + CHECK_NS;
	struct shmex_error e = {0};
	int rc = 0;
	if (!a->src_ok[k]) {
		rc = jnl_src_open(&a->src[k], a->dir, k, a->n, true,
				  a->has_cursor ? &a->cursor : NULL, &e);
		a->src_ok[k] = rc == 0;
		a->reopened = true;
		const struct shm_jdir *d = rc == 0 ? &a->src[k].rd.dir : NULL;
		if (d && d->nseg && d->seg_first[0] > a->pos.merged[k] + 1 &&
		    (a->has_cursor || a->pos.merged[k] == 0))
			logm(a, true,
			     "shard %u: its journal starts at sequence %" PRIu64
			     " and the audit log holds it up to %" PRIu64
			     " at most: the records between were removed before they "
			     "were merged",
			     k, d->seg_first[0], a->pos.merged[k]);
	} else if (s->ever && !same) {
		/* A new matcher: read again after the last record taken. */
		rc = jnl_src_reopen(&a->src[k], &e);
		a->reopened = true;
		logm(a, false, "shard %u: following its new matcher (pid %d)", k,
		     (int)s->creator_pid);
	}
	s->ever = true;
	if (rc) {
		logm(a, true, "shard %u: %s", k, shmex_error_msg(&e, rc));
		return -1;
	}
	return 0;
}

/* The merge bound: every shard's watermark, 0 while one has none yet. */
static uint64_t bound(struct audit *a)
{
	uint64_t m = UINT64_MAX;
	for (uint32_t k = 0; k < a->n; k++) {
		struct shard *s = &a->sh[k];
		if (s->attached) {
			/* BK12: acquire; pairs with the matcher's BK11: every
			 * record below it is in the file before we read it. */
			uint64_t w = load_acquire(&s->hdr->durable_time_ns);
			if (w > s->wm)
				s->wm = w;
		}
		if (!a->src_ok[k])
			return 0;
		if (s->wm < m)
			m = s->wm;
	}
	return m;
}

/* One group: merge what the bound allows, write it, make it durable.
 * Returns records merged, or -1. */
static int64_t step(struct audit *a)
{
	uint64_t m = bound(a);
	if (m == 0 || (m == a->done_below && !a->reopened))
		return 0;
	a->reopened = false;
	struct shmex_error e = {0};
	int64_t n = jnl_merge_step(a->src, a->n, m, STEP_MAX, put, a, &e);
	a->done_below = n >= 0 && (uint64_t)n < STEP_MAX ? m : 0;
	if (n < 0) {
		if (a->out.err)
			logm(a, true, "writing %s: %s", a->path, strerror((int)-n));
		else
			logm(a, true, "%s", shmex_error_msg(&e, (int)n));
		return -1;
	}
	if (n == 0)
		return 0;
	if (jnl_out_flush(&a->out) != 0 || (a->sync && fdatasync(a->fd) != 0)) {
		logm(a, true, "writing %s: %s", a->path,
		     strerror(a->out.err ? -a->out.err : errno));
		return -1;
	}
	a->merged += (uint64_t)n;
	pos_update(a, false);
	return n;
}

static int run(struct audit *a)
{
	for (;;) {
		bool stopping = stop_flag != 0;
		uint64_t now = shm_clock_ns(CLOCK_MONOTONIC);
		for (uint32_t k = 0; k < a->n; k++)
			if (track(a, k, now) != 0)
				return 1;
		int64_t n = step(a);
		if (n < 0)
			return 1;
		if (stopping)
			break;
		if (n == 0 && a->pos_dirty)
			pos_update(a, false);
		if (n == 0) {
			struct timespec ts = {0, POLL_NS};
			nanosleep(&ts, NULL);
		}
	}
	pos_update(a, true);
	logm(a, false, "stopping: %" PRIu64 " records merged into %s", a->merged,
	     a->path);
	return 0;
}

int main(int argc, char **argv)
{
	static struct audit a;
	a.instance = "default";
	a.fd = -1;
	const struct shm_opt opts[] = {
		{.name = "instance",
		 .type = SHM_OPT_INSTANCE,
		 .arg = "NAME",
		 .dst = &a.instance,
		 .show_default = true,
		 .help = "exchange instance"},
		{.name = "quiet",
		 .type = SHM_OPT_FLAG,
		 .dst = &a.quiet,
		 .help = "log only errors"},
	};
	const struct shm_opt_prog prog = {
		.name = PROG,
		.synopsis = "--instance NAME",
		.about =
			"Merges the journals of every shard of a running exchange into\n"
			"DATA_DIR/audit.log in (time, shard, sequence) order.  Started by shmex.",
		.opts = opts,
		.nopts = sizeof(opts) / sizeof(opts[0]),
	};
	int first;
	enum shm_opt_result pr = shm_opt_parse(&prog, argc, argv, &first);
	if (pr != SHM_OPT_RUN)
		return pr == SHM_OPT_EXIT ? 0 : 2;
	if (!shm_instance_name_valid(a.instance))
		return shm_opt_usage_error(&prog, "--instance: invalid name '%s'",
					   a.instance);
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal; /* no SA_RESTART: a sleep ends */
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);

	int rc = shm_instance_attach(a.instance, SHM_ROLE_OBSERVER, 0, &a.inst);
	if (rc) {
		logm(&a, true, "instance %s: %s", a.instance,
		     shmex_error_msg(&a.inst.err, rc));
		return 1;
	}
	snprintf(a.dir, sizeof(a.dir), "%s", a.inst.data_dir);
	a.n = a.inst.nshards;
	a.sync = a.inst.settings.sync == 0;
	a.quiet = a.quiet || a.inst.settings.quiet;
	if (!a.dir[0]) {
		logm(&a, true,
		     "instance %s runs without a journal (--no-journal): "
		     "nothing to audit",
		     a.instance);
		shm_instance_detach(&a.inst);
		return 1;
	}
	pos_load(&a);
	rc = open_log(&a) == 0 ? run(&a) : 1;
	for (uint32_t k = 0; k < a.n; k++) {
		detach_book(&a.sh[k]);
		if (a.src_ok[k])
			jnl_src_close(&a.src[k]);
	}
	jnl_out_free(&a.out);
	if (a.fd >= 0)
		close(a.fd);
	shm_instance_detach(&a.inst);
	return rc;
}
