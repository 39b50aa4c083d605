/*
 * shm_region: create, attach, detach and unlink named shared-memory
 * regions (see shm_region.h for the protocol).
 *
 * Failures fill r->err with the operation, the object's name and the
 * reason ("shm_open /shmex.default.book.0: Permission denied") so that every
 * tool can print one clear line.
 */
#include "shm/shm_region.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "shm/shm_error.h"
#include "shm/shm_proc.h"

static int fail(struct shm_region *r, int err, const char *what)
{
	return shmex_error_set(&r->err, err, "%s %s: %s", what, r->name,
			       shmex_strerror(err));
}

static bool name_ok(const char *s, bool region)
{
	size_t n = strlen(s);
	if (n == 0 || n > SHM_INSTANCE_MAX)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' ||
			  c == '-';
		if (!region)
			ok = ok || (c >= 'A' && c <= 'Z');
		else
			ok = ok || c == '.';
		if (!ok)
			return false;
	}
	return true;
}

bool shm_region_kind_per_shard(enum shm_region_kind kind)
{
	return kind == SHM_KIND_BOOK || kind == SHM_KIND_READERS ||
	       kind == SHM_KIND_POSITIONS || kind == SHM_KIND_LEDGER;
}

int shm_region_name(char out[SHM_REGION_NAME_MAX], enum shm_region_kind kind,
		    unsigned shard)
{
	static const char *const names[] = {
		[SHM_KIND_RINGS] = SHM_REGION_RINGS,
		[SHM_KIND_CONTROL] = SHM_REGION_CONTROL,
		[SHM_KIND_BOOK] = "book",
		[SHM_KIND_ACCOUNTS] = SHM_REGION_ACCOUNTS,
		[SHM_KIND_READERS] = "readers",
		[SHM_KIND_POSITIONS] = "positions",
		[SHM_KIND_LEDGER] = "ledger",
	};
	if ((unsigned)kind >= sizeof(names) / sizeof(names[0]) || !names[kind])
		return SHMEX_EBADNAME;
	int n = shm_region_kind_per_shard(kind)
			? snprintf(out, SHM_REGION_NAME_MAX, "%s.%u", names[kind], shard)
			: snprintf(out, SHM_REGION_NAME_MAX, "%s", names[kind]);
	return n > 0 && n < SHM_REGION_NAME_MAX ? 0 : SHMEX_EBADNAME;
}

int shm_name_format(char *out, size_t len, const char *instance, const char *region)
{
	if (!instance || !region || !name_ok(instance, false) || !name_ok(region, true))
		return SHMEX_EBADNAME;
	int n = snprintf(out, len, "/shmex.%s.%s", instance, region);
	if (n < 0 || (size_t)n >= len)
		return SHMEX_EBADNAME;
	return 0;
}

static int set_name(struct shm_region *r, const char *instance, const char *region)
{
	memset(r, 0, sizeof(*r));
	int rc = shm_name_format(r->name, sizeof(r->name), instance, region);
	if (rc) {
		snprintf(r->name, sizeof(r->name), "/shmex.%.40s.%.40s",
			 instance ? instance : "?", region ? region : "?");
		return fail(r, rc, "name");
	}
	return 0;
}

int shm_region_create(struct shm_region *r, const char *instance, const char *region,
		      uint32_t kind, size_t body_size, const uint64_t *caps, size_t ncaps,
		      mode_t mode)
{
	int rc = set_name(r, instance, region);
	if (rc)
		return rc;
	if (ncaps > 6 || body_size > SIZE_MAX - SHM_REGION_HDR_SIZE)
		return fail(r, -EINVAL, "create");
	size_t size = SHM_REGION_HDR_SIZE + body_size;

	int fd = shm_open(r->name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, mode);
	if (fd < 0)
		return fail(r, -errno, "shm_open");
	/* The umask may have narrowed mode: set it explicitly. */
	if (fchmod(fd, mode) != 0) {
		rc = fail(r, -errno, "fchmod");
		goto out_unlink;
	}
	/* posix_fallocate reserves the pages now, so a full /dev/shm is an
	 * error here rather than a SIGBUS on first touch. */
	rc = posix_fallocate(fd, 0, (off_t)size);
	if (rc != 0) {
		rc = fail(r, -rc, "posix_fallocate");
		goto out_unlink;
	}
	void *base = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE,
			  fd, 0);
	if (base == MAP_FAILED) {
		rc = fail(r, -errno, "mmap");
		goto out_unlink;
	}
	close(fd);
	r->base = base;
	r->size = size;
	r->map_size = size;
	r->writable = true;

	struct shm_region_hdr_sh *h = base;
	h->magic = SHM_REGION_MAGIC;
	h->version = SHM_LAYOUT_VERSION;
	h->kind = kind;
	h->signature = shm_layout_signature();
	h->size = size;
	for (size_t i = 0; i < ncaps; i++)
		h->capacity[i] = caps[i];
	h->creator_pid = getpid();
	h->cache_line = SHM_CACHE_LINE;
	h->creator_start = shm_proc_self_start();
	/* state stays CREATING until shm_region_publish (R0). */
	return 0;

out_unlink:
	close(fd);
	shm_unlink(r->name);
	return rc;
}

void shm_region_publish(struct shm_region *r)
{
	struct shm_region_hdr_sh *h = shm_region_hdr(r);
	/* R0: publishes the header and the initialised body; pairs with A0
	 * in shm_region_attach and shm_region_inspect. */
	store_release(&h->state, (uint32_t)SHM_STATE_READY);
}

/* Validates the header of a fresh mapping and returns its size in *size.
 * Every field is read once, from a private copy taken after A0: an
 * attacher with a writable mapping could change the header under us, and
 * the size we validated must be the size we keep. */
static int validate(struct shm_region *r, uint32_t kind, size_t *size)
{
	struct shm_region_hdr_sh *hs = shm_region_hdr(r);
	/* A0: pairs with R0; everything the creator wrote before publishing
	 * is visible after this load. */
	uint32_t state = load_acquire(&hs->state);
	struct shm_region_hdr_sh h;
	memcpy(&h, hs, sizeof(h));
	/* A header still all zero is a region its creator has not written
	 * yet (a restarting matcher lays its book out again), not a foreign
	 * object. */
	if (h.magic == 0 && state != SHM_STATE_READY)
		return SHMEX_ENOTREADY;
	if (h.magic != SHM_REGION_MAGIC)
		return SHMEX_EBADMAGIC;
	if (h.version != SHM_LAYOUT_VERSION)
		return SHMEX_EBADVERSION;
	if (state != SHM_STATE_READY)
		return SHMEX_ENOTREADY;
	if (h.signature != shm_layout_signature() || h.cache_line != SHM_CACHE_LINE)
		return SHMEX_EBADLAYOUT;
	if (kind != SHM_KIND_ANY && h.kind != kind)
		return SHMEX_EBADKIND;
	if (h.size > r->size || h.size < SHM_REGION_HDR_SIZE)
		return SHMEX_ETOOSHORT;
	*size = (size_t)h.size;
	return 0;
}

int shm_region_attach(struct shm_region *r, const char *instance, const char *region,
		      uint32_t kind, enum shm_attach_mode mode)
{
	int rc = set_name(r, instance, region);
	if (rc)
		return rc;
	bool rw = mode == SHM_RDWR;
	int fd = shm_open(r->name, (rw ? O_RDWR : O_RDONLY) | O_CLOEXEC, 0);
	if (fd < 0)
		return fail(r, -errno, "shm_open");
	struct stat st;
	if (fstat(fd, &st) != 0) {
		rc = fail(r, -errno, "fstat");
		close(fd);
		return rc;
	}
	if ((size_t)st.st_size < SHM_REGION_HDR_SIZE) {
		close(fd);
		return fail(r, SHMEX_ETOOSHORT, "attach");
	}
	void *base = mmap(NULL, (size_t)st.st_size,
			  rw ? PROT_READ | PROT_WRITE : PROT_READ, MAP_SHARED, fd, 0);
	rc = -errno;
	close(fd);
	if (base == MAP_FAILED)
		return fail(r, rc, "mmap");
	r->base = base;
	r->size = (size_t)st.st_size;
	r->map_size = r->size;
	r->writable = rw;
	size_t size;
	rc = validate(r, kind, &size);
	if (rc) {
		munmap(base, r->map_size);
		r->base = NULL;
		r->size = 0;
		r->map_size = 0;
		return fail(r, rc, "attach");
	}
	/* Use no more than the header claims (the validated copy, never a
	 * re-read), as seen by later readers. */
	r->size = size;
	return 0;
}

void shm_region_detach(struct shm_region *r)
{
	if (r->base)
		munmap(r->base, r->map_size);
	r->base = NULL;
	r->size = 0;
	r->map_size = 0;
}

int shm_region_unlink(const char *instance, const char *region)
{
	char name[SHM_NAME_MAX];
	int rc = shm_name_format(name, sizeof(name), instance, region);
	if (rc)
		return rc;
	return shm_unlink(name) == 0 ? 0 : -errno;
}

int shm_region_inspect(const char *instance, const char *region,
		       struct shm_region_info *info)
{
	struct shm_region r;
	int rc = set_name(&r, instance, region);
	if (rc)
		return rc;
	memset(info, 0, sizeof(*info));
	int fd = shm_open(r.name, O_RDONLY | O_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	struct stat st;
	if (fstat(fd, &st) != 0) {
		rc = -errno;
		close(fd);
		return rc;
	}
	info->size = (size_t)st.st_size;
	info->have_owner = true;
	info->owner_uid = (uint32_t)st.st_uid;
	if ((size_t)st.st_size < SHM_REGION_HDR_SIZE) {
		close(fd);
		return SHMEX_ETOOSHORT;
	}
	struct shm_region_hdr_sh *h =
		mmap(NULL, SHM_REGION_HDR_SIZE, PROT_READ, MAP_SHARED, fd, 0);
	rc = -errno;
	close(fd);
	if (h == MAP_FAILED)
		return rc;
	info->state = load_acquire(&h->state); /* A0 */
	if (h->magic != SHM_REGION_MAGIC) {
		munmap(h, SHM_REGION_HDR_SIZE);
		return SHMEX_EBADMAGIC;
	}
	info->creator_pid = h->creator_pid;
	info->creator_start = h->creator_start;
	info->version = h->version;
	info->signature = h->signature;
	info->creator_alive = shm_proc_alive(h->creator_pid, h->creator_start);
	munmap(h, SHM_REGION_HDR_SIZE);
	return 0;
}

int shm_region_remove_stale(const char *instance, const char *region)
{
	struct shm_region_info info;
	int rc = shm_region_inspect(instance, region, &info);
	if (rc == -ENOENT)
		return 0;
	/* Only our own objects can be our leftovers: one we may not read, or
	 * one of another user (whatever its header claims), is refused and
	 * left alone. */
	if (rc == -EACCES || rc == -EPERM ||
	    (info.have_owner && info.owner_uid != (uint32_t)geteuid()))
		return SHMEX_EFOREIGN;
	/* A region whose header is unreadable or foreign to us, or whose
	 * creator is gone, is a leftover; a live creator keeps it. */
	if (rc == 0 && info.creator_alive && info.state != SHM_STATE_CLOSED)
		return SHMEX_EINUSE;
	rc = shm_region_unlink(instance, region);
	return rc == -ENOENT ? 0 : rc;
}
