/*
 * eng_journal: the journal writer (contract in eng_journal.h).
 *
 * Shape.  The matcher fills `cur`, a private growable buffer, and seal()
 * moves it to the queue of sealed batches under a mutex (once per loop
 * round, never per record).  The writer thread sleeps on a condition
 * variable, takes every sealed batch at once, writes them with one
 * writev(), calls fdatasync() once, then publishes the last sequence with
 * a release store [JR1] and rings the matcher's doorbell.  Buffers go back
 * to a free list, so a steady flow allocates nothing.
 *
 * Why a thread: fdatasync costs a fraction of a millisecond to several;
 * the matcher keeps applying the next round's requests meanwhile, so
 * durability costs latency (one sync) but little throughput.
 *
 * Invariants: records reach the file in sequence order, every batch
 * entirely or (after a failure) not at all as far as `durable` says; a
 * failed writer never writes again.
 */
#include "engine/eng_journal.h"
#include "engine/eng_alloc.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "shm/shm_atomic.h"
#include "shm/shm_clock.h"

#define BATCH_CAP0 (64u << 10)
#define MAX_IOV 64

struct batch {
	uint8_t *buf;
	size_t len, cap;
	uint64_t first, last; /* sequences */
	struct batch *next;
};

struct eng_journal {
	struct eng_journal_cfg cfg;
	char dir[SHM_JOURNAL_PATH_MAX];
	/* Matcher thread only. */
	struct batch *cur;
	uint64_t next_seq;
	uint64_t last_appended;
	size_t last_off; /* offset of the last record in cur */
	uint64_t records;
	/* Shared by the two threads under `mu`. */
	pthread_mutex_t mu;
	pthread_cond_t cv;   /* writer: work or stop */
	pthread_cond_t done; /* matcher: a batch became durable */
	struct batch *queue, **queue_tail;
	struct batch *spare;
	bool stop;
	int err;
	struct shmex_error errmsg;
	struct eng_journal_stats st;
	/* W: writer, release [JR1]; R: matcher, acquire [JR2]. */
	uint64_t durable;
	/* Writer thread only. */
	int fd;
	uint64_t seg_bytes;
	/* Fault injection for tests (SHMEX_FAULT_HOLD=1): while DIR/hold
	 * exists the writer writes nothing, so records stay non-durable for
	 * as long as a test needs (docs/durability.md). */
	char hold[SHM_JOURNAL_PATH_MAX + 8];
	pthread_t thread;
	bool started;
};

static struct batch *batch_new(void)
{
	struct batch *b = eng_alloc_calloc(1, sizeof(*b));
	if (!b)
		return NULL;
	b->buf = eng_alloc_malloc(BATCH_CAP0);
	if (!b->buf) {
		eng_alloc_free(b);
		return NULL;
	}
	b->cap = BATCH_CAP0;
	return b;
}

static void batch_free(struct batch *b)
{
	while (b) {
		struct batch *n = b->next;
		eng_alloc_free(b->buf);
		eng_alloc_free(b);
		b = n;
	}
}

/* Writer: starts the segment whose first record is `first`. */
static int segment_open(struct eng_journal *j, uint64_t first)
{
	char path[SHM_JOURNAL_PATH_MAX + 64];
	snprintf(path, sizeof(path), "%s/journal-%016" PRIx64 ".log", j->dir, first);
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_APPEND | O_CLOEXEC, 0640);
	if (fd < 0) {
		int rc = -errno;
		return shmex_error_set(&j->errmsg, rc, "open %s: %s", path,
				       strerror(-rc));
	}
	struct shm_jseg_hdr h;
	shm_jseg_hdr_init(&h, j->cfg.shard, j->cfg.nshards, first,
			  shm_clock_ns(CLOCK_REALTIME));
	if (write(fd, &h, sizeof(h)) != (ssize_t)sizeof(h) ||
	    (j->cfg.sync && fdatasync(fd) != 0)) {
		int rc = errno ? -errno : -EIO;
		close(fd);
		/* Leave no header-less segment behind when we can help it. */
		unlink(path);
		return shmex_error_set(&j->errmsg, rc, "writing %s: %s", path,
				       strerror(-rc));
	}
	int rc = j->cfg.sync ? shm_journal_sync_dir(j->dir) : 0;
	if (rc) {
		close(fd);
		return shmex_error_set(&j->errmsg, rc, "fsync %s: %s", j->dir,
				       strerror(-rc));
	}
	if (j->fd >= 0)
		close(j->fd);
	j->fd = fd;
	j->seg_bytes = sizeof(h);
	j->st.segments++;
	return 0;
}

/* Writer: writes a chain of batches, without the mutex; 0 or the error
 * (in errmsg).  The bytes written go to *bytes, which the caller adds to
 * the stats under the mutex. */
static int write_batches(struct eng_journal *j, struct batch *b, uint64_t *bytes)
{
	*bytes = 0;
	while (b) {
		if (j->seg_bytes >= j->cfg.segment_bytes) {
			int rc = segment_open(j, b->first);
			if (rc)
				return rc;
		}
		struct iovec iov[MAX_IOV];
		int n = 0;
		size_t total = 0;
		struct batch *x = b;
		/* One write for as many batches as fit the segment. */
		for (; x && n < MAX_IOV; x = x->next) {
			if (n > 0 && j->seg_bytes + total >= j->cfg.segment_bytes)
				break;
			iov[n].iov_base = x->buf;
			iov[n].iov_len = x->len;
			total += x->len;
			n++;
		}
		size_t done = 0;
		while (done < total) {
			/* Skip what was written already (a short write). */
			struct iovec rest[MAX_IOV];
			int m = 0;
			size_t skip = done;
			for (int i = 0; i < n; i++) {
				if (skip >= iov[i].iov_len) {
					skip -= iov[i].iov_len;
					continue;
				}
				rest[m].iov_base = (char *)iov[i].iov_base + skip;
				rest[m].iov_len = iov[i].iov_len - skip;
				skip = 0;
				m++;
			}
			ssize_t w = writev(j->fd, rest, m);
			if (w < 0 && errno == EINTR)
				continue;
			if (w <= 0) {
				int rc = w < 0 ? -errno : -EIO;
				return shmex_error_set(&j->errmsg, rc,
						       "write %s/journal: %s", j->dir,
						       strerror(-rc));
			}
			done += (size_t)w;
		}
		j->seg_bytes += total;
		*bytes += total;
		b = x;
	}
	return 0;
}

static void *writer_main(void *arg)
{
	struct eng_journal *j = arg;
	pthread_mutex_lock(&j->mu);
	for (;;) {
		while (!j->queue && !j->stop)
			pthread_cond_wait(&j->cv, &j->mu);
		if (!j->queue && j->stop)
			break;
		struct batch *b = j->queue;
		j->queue = NULL;
		j->queue_tail = &j->queue;
		int failed = j->err;
		pthread_mutex_unlock(&j->mu);

		uint64_t last = 0;
		unsigned nb = 0;
		for (struct batch *x = b; x; x = x->next) {
			last = x->last;
			nb++;
		}
		while (j->hold[0] && access(j->hold, F_OK) == 0 &&
		       !load_relaxed(&j->stop))
			usleep(1000);
		uint64_t bytes = 0;
		int rc = failed ? failed : write_batches(j, b, &bytes);
		uint64_t t0 = shm_clock_ns(CLOCK_MONOTONIC), t1 = t0;
		if (!rc && j->cfg.sync) {
			if (fdatasync(j->fd) != 0) {
				rc = -errno;
				shmex_error_set(&j->errmsg, rc,
						"fdatasync %s/journal: %s", j->dir,
						strerror(-rc));
			}
			t1 = shm_clock_ns(CLOCK_MONOTONIC);
		}

		pthread_mutex_lock(&j->mu);
		if (rc && !j->err)
			j->err = rc;
		/* Under the mutex: eng_journal_get_stats reads them. */
		j->st.bytes += bytes;
		if (!rc) {
			j->st.batches += nb;
			j->st.syncs += j->cfg.sync;
			j->st.sync_ns += t1 - t0;
			/* JR1: release; pairs with JR2 in eng_journal_durable:
			 * a matcher that sees `last` may answer every request
			 * whose records are at or before it. */
			store_release(&j->durable, last);
		}
		/* Buffers back to the free list. */
		while (b) {
			struct batch *n = b->next;
			b->len = 0;
			b->next = j->spare;
			j->spare = b;
			b = n;
		}
		pthread_cond_broadcast(&j->done);
		pthread_mutex_unlock(&j->mu);
		if (j->cfg.wake)
			shm_doorbell_ring(j->cfg.wake);
		pthread_mutex_lock(&j->mu);
	}
	pthread_mutex_unlock(&j->mu);
	return NULL;
}

int eng_journal_open(struct eng_journal **out, const struct eng_journal_cfg *cfg,
		     struct shmex_error *e)
{
	*out = NULL;
	struct eng_journal *j = eng_alloc_calloc(1, sizeof(*j));
	if (!j)
		return shmex_error_set(e, -ENOMEM, "out of memory");
	j->cfg = *cfg;
	if (!j->cfg.segment_bytes)
		j->cfg.segment_bytes = ENG_JOURNAL_SEGMENT_DEFAULT;
	snprintf(j->dir, sizeof(j->dir), "%s", cfg->shard_dir);
	j->cfg.shard_dir = j->dir;
	const char *fault = getenv("SHMEX_FAULT_HOLD");
	if (fault && strcmp(fault, "1") == 0)
		snprintf(j->hold, sizeof(j->hold), "%s/hold", j->dir);
	j->next_seq = cfg->next_seq ? cfg->next_seq : 1;
	j->last_appended = j->next_seq - 1;
	j->durable = j->last_appended;
	j->fd = -1;
	j->queue_tail = &j->queue;
	pthread_mutex_init(&j->mu, NULL);
	pthread_cond_init(&j->cv, NULL);
	pthread_cond_init(&j->done, NULL);
	j->cur = batch_new();
	if (!j->cur) {
		eng_journal_close(j);
		return shmex_error_set(e, -ENOMEM, "out of memory");
	}
	int rc = segment_open(j, j->next_seq);
	if (rc) {
		if (e)
			*e = j->errmsg;
		eng_journal_close(j);
		return rc;
	}
	/* The writer takes no signals: the matcher's handlers run in the
	 * matcher thread. */
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	rc = -pthread_create(&j->thread, NULL, writer_main, j);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc) {
		eng_journal_close(j);
		return shmex_error_set(e, rc, "journal writer thread: %s", strerror(-rc));
	}
	j->started = true;
	*out = j;
	return 0;
}

uint64_t eng_journal_append(struct eng_journal *j, struct shm_jrec *r)
{
	struct batch *b = j->cur;
	r->h.seq = j->next_seq++;
	r->h.shard = (uint16_t)j->cfg.shard;
	size_t len = shm_jrec_seal(r);
	if (b->len + len > b->cap) {
		size_t cap = b->cap * 2;
		uint8_t *nb = eng_alloc_realloc(b->buf, cap);
		if (!nb) {
			/* Out of memory in the matcher: treat it as a write
			 * failure, so that nothing further is acknowledged. */
			pthread_mutex_lock(&j->mu);
			if (!j->err)
				j->err = shmex_error_set(&j->errmsg, -ENOMEM,
							 "journal buffer: out of memory");
			pthread_mutex_unlock(&j->mu);
			return r->h.seq;
		}
		b->buf = nb;
		b->cap = cap;
	}
	if (b->len == 0)
		b->first = r->h.seq;
	j->last_off = b->len;
	memcpy(b->buf + b->len, r, len);
	b->len += len;
	b->last = r->h.seq;
	j->last_appended = r->h.seq;
	j->records++;
	return r->h.seq;
}

void eng_journal_mark_end(struct eng_journal *j)
{
	struct batch *b = j->cur;
	if (!b || b->len == 0 || b->last != j->last_appended)
		return;
	/* The last record starts at last_off (set by append). */
	struct shm_jrec r;
	size_t len = b->len - j->last_off;
	memcpy(&r, b->buf + j->last_off, len);
	r.h.flags |= SHM_JREC_END;
	(void)shm_jrec_seal(&r);
	memcpy(b->buf + j->last_off, &r, len);
}

uint64_t eng_journal_last(const struct eng_journal *j)
{
	return j->last_appended;
}

void eng_journal_seal(struct eng_journal *j)
{
	if (!j->cur || j->cur->len == 0)
		return;
	pthread_mutex_lock(&j->mu);
	struct batch *b = j->cur;
	b->next = NULL;
	*j->queue_tail = b;
	j->queue_tail = &b->next;
	struct batch *s = j->spare;
	if (s)
		j->spare = s->next;
	pthread_cond_signal(&j->cv);
	pthread_mutex_unlock(&j->mu);
	if (!s)
		s = batch_new();
	if (s)
		s->next = NULL;
	/* Without a buffer every later append fails over to the error path
	 * above; batch_new failing means the process is out of memory. */
	j->cur = s ? s : batch_new();
}

uint64_t eng_journal_durable(const struct eng_journal *j)
{
	/* JR2: acquire; pairs with the writer's JR1. */
	return load_acquire(&j->durable);
}

int eng_journal_error(const struct eng_journal *j, struct shmex_error *e)
{
	struct eng_journal *m = (struct eng_journal *)j;
	pthread_mutex_lock(&m->mu);
	int rc = m->err;
	if (rc && e)
		*e = m->errmsg;
	pthread_mutex_unlock(&m->mu);
	return rc;
}

int eng_journal_flush(struct eng_journal *j, struct shmex_error *e)
{
	eng_journal_seal(j);
	pthread_mutex_lock(&j->mu);
	while (!j->err && load_relaxed(&j->durable) < j->last_appended)
		pthread_cond_wait(&j->done, &j->mu);
	int rc = j->err;
	if (rc && e)
		*e = j->errmsg;
	pthread_mutex_unlock(&j->mu);
	return rc;
}

void eng_journal_get_stats(const struct eng_journal *j, struct eng_journal_stats *st)
{
	struct eng_journal *m = (struct eng_journal *)j;
	pthread_mutex_lock(&m->mu);
	*st = m->st;
	st->records = m->records;
	pthread_mutex_unlock(&m->mu);
}

void eng_journal_close(struct eng_journal *j)
{
	if (!j)
		return;
	if (j->started) {
		struct shmex_error ignored;
		if (eng_journal_flush(j, &ignored) != 0) {
			/* Reported by eng_journal_error to whoever cares. */
		}
		pthread_mutex_lock(&j->mu);
		j->stop = true;
		pthread_cond_signal(&j->cv);
		pthread_mutex_unlock(&j->mu);
		pthread_join(j->thread, NULL);
	}
	if (j->fd >= 0)
		close(j->fd);
	batch_free(j->cur);
	batch_free(j->queue);
	batch_free(j->spare);
	pthread_mutex_destroy(&j->mu);
	pthread_cond_destroy(&j->cv);
	pthread_cond_destroy(&j->done);
	eng_alloc_free(j);
}
