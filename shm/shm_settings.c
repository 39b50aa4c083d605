/*
 * shm_settings: the settings table (contract in shm_settings.h).
 *
 * The descriptor array is generated from SHM_SETTINGS, so the field, the
 * option, the range and the default of a row cannot drift apart; the
 * ranges other modules enforce are tied to theirs by static assertions.
 */
#include "shm/shm_settings.h"

#include <errno.h>
#include <string.h>

#include "shm/shm_atomic.h"
#include "shm/shm_book.h"
#include "shm/shm_rcu.h"
#include "shm/shm_ring.h"

_Static_assert(SHM_SETTINGS_CAP_MAX == SHM_BOOK_CAP_MAX, "one capacity limit");
_Static_assert(SHM_SETTINGS_RING_MIN == SHM_RING_CAPACITY_MIN, "ring range");
_Static_assert(SHM_SETTINGS_RING_MAX == SHM_RING_CAPACITY_MAX, "ring range");
_Static_assert(SHM_SETTINGS_READERS_MAX == SHM_RCU_MAX_SLOTS, "reader slots");
_Static_assert(SHM_DEFAULT_STP == SHM_BOOK_STP_NONE, "self-trades allowed");

const char *const shm_stp_names[5] = {
	[SHM_BOOK_STP_NONE] = "none",
	[SHM_BOOK_STP_CANCEL_NEWEST] = "cancel-newest",
	[SHM_BOOK_STP_CANCEL_OLDEST] = "cancel-oldest",
	[SHM_BOOK_STP_CANCEL_BOTH] = "cancel-both",
	NULL,
};

const char *const shm_sync_names[3] = {"fsync", "none", NULL};

const struct shm_setting_desc shm_settings_desc[SHM_SETTINGS_COUNT] = {
#define SHM_SETTINGS_DESC_(f, opt, k, lo, hi, d, a, h) \
	{.field = #f,                                  \
	 .option = opt,                                \
	 .kind = k,                                    \
	 .min = lo,                                    \
	 .max = hi,                                    \
	 .def = d,                                     \
	 .arg = a,                                     \
	 .help = h,                                    \
	 .offset = offsetof(struct shm_settings, f)},
	SHM_SETTINGS(SHM_SETTINGS_DESC_)
#undef SHM_SETTINGS_DESC_
};

static uint64_t *field(struct shm_settings *s, size_t i)
{
	return (uint64_t *)((char *)s + shm_settings_desc[i].offset);
}

uint64_t shm_settings_get(const struct shm_settings *s, size_t i)
{
	return *(const uint64_t *)((const char *)s + shm_settings_desc[i].offset);
}

void shm_settings_default(struct shm_settings *s)
{
	memset(s, 0, sizeof(*s));
	for (size_t i = 0; i < SHM_SETTINGS_COUNT; i++)
		*field(s, i) = shm_settings_desc[i].def;
}

/* Row i's value v is in range; false with the reason in e otherwise. */
static bool row_ok(size_t i, uint64_t v, struct shmex_error *e, int code)
{
	const struct shm_setting_desc *d = &shm_settings_desc[i];
	if (v < d->min || v > d->max) {
		shmex_error_set(e, code, "setting %s = %llu is out of range %llu..%llu",
				d->option, (unsigned long long)v,
				(unsigned long long)d->min, (unsigned long long)d->max);
		return false;
	}
	if (d->kind == SHM_SET_POW2 && (v & (v - 1))) {
		shmex_error_set(e, code, "setting %s = %llu is not a power of two",
				d->option, (unsigned long long)v);
		return false;
	}
	return true;
}

int shm_settings_validate(const struct shm_settings *s, struct shmex_error *e)
{
	for (size_t i = 0; i < SHM_SETTINGS_COUNT; i++)
		if (!row_ok(i, shm_settings_get(s, i), e, -EINVAL))
			return -EINVAL;
	return 0;
}

void shm_settings_store(struct shm_settings_sh *sh, const struct shm_settings *s)
{
	memset(sh, 0, sizeof(*sh));
	for (size_t i = 0; i < SHM_SETTINGS_COUNT; i++)
		sh->slot[i] = shm_settings_get(s, i);
}

int shm_settings_load(const struct shm_settings_sh *sh, struct shm_settings *s,
		      struct shmex_error *e)
{
	memset(s, 0, sizeof(*s));
	for (size_t i = 0; i < SHM_SETTINGS_COUNT; i++) {
		/* Relaxed: immutable after the control region's R0, which
		 * the attacher acquired (A0) before calling this. */
		uint64_t v = load_relaxed(&sh->slot[i]);
		if (!row_ok(i, v, e, SHMEX_EBADLAYOUT))
			return SHMEX_EBADLAYOUT;
		*field(s, i) = v;
	}
	return 0;
}
