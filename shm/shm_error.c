/*
 * shm_error: messages and names for the error table in shm_error.h.
 */
#include "shm/shm_error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static const char *const err_msgs[] = {
#define SHMEX_ERR_MSG_(name, msg) msg,
	SHMEX_ERRNO_MAP(SHMEX_ERR_MSG_)
#undef SHMEX_ERR_MSG_
};

static const char *const err_names[] = {
#define SHMEX_ERR_NAME_(name, msg) "SHMEX_" #name,
	SHMEX_ERRNO_MAP(SHMEX_ERR_NAME_)
#undef SHMEX_ERR_NAME_
};

bool shmex_err_is_valid(int err)
{
	return err <= SHMEX_ERR_BASE && err >= SHMEX_ERR_LAST_;
}

const char *shmex_strerror(int err)
{
	if (err == 0)
		return "Success";
	if (shmex_err_is_valid(err))
		return err_msgs[SHMEX_ERR_BASE - err];
	if (err < 0 && err > -4096)
		return strerror(-err);
	return "Unknown error";
}

const char *shmex_errname(int err)
{
	if (err == 0)
		return "OK";
	if (shmex_err_is_valid(err))
		return err_names[SHMEX_ERR_BASE - err];
	if (err < 0 && err > -4096) {
		const char *n = strerrorname_np(-err);
		return n ? n : "E?";
	}
	return "E?";
}

int shmex_error_set(struct shmex_error *e, int code, const char *fmt, ...)
{
	if (!e)
		return code;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(e->msg, sizeof(e->msg), fmt, ap);
	va_end(ap);
	e->code = code;
	return code;
}

int shmex_error_wrap(struct shmex_error *e, int code, const char *fmt, ...)
{
	if (!e)
		return code;
	char old[SHMEX_ERROR_MAX];
	const char *prev = e->msg[0] ? e->msg : shmex_strerror(code);
	size_t olen = strlen(prev);
	if (olen >= sizeof(old))
		olen = sizeof(old) - 1;
	memcpy(old, prev, olen);
	old[olen] = 0;
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(e->msg, sizeof(e->msg), fmt, ap);
	va_end(ap);
	size_t at = n < 0 ? 0 : (size_t)n;
	if (at > sizeof(e->msg) - 1)
		at = sizeof(e->msg) - 1;
	/* "<context>: <old>", cut at the buffer's end. */
	const char *parts[2] = {": ", old};
	for (int i = 0; i < 2; i++) {
		size_t len = strlen(parts[i]);
		size_t room = sizeof(e->msg) - 1 - at;
		if (len > room)
			len = room;
		memcpy(e->msg + at, parts[i], len);
		at += len;
	}
	e->msg[at] = 0;
	e->code = code;
	return code;
}

const char *shmex_error_msg(const struct shmex_error *e, int code)
{
	if (e && e->msg[0])
		return e->msg;
	return shmex_strerror(code ? code : (e ? e->code : 0));
}

void shmex_error_clear(struct shmex_error *e)
{
	if (e) {
		e->code = 0;
		e->msg[0] = 0;
	}
}
