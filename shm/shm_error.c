/*
 * shm_error: messages and names for the error table in shm_error.h.
 */
#include "shm/shm_error.h"

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
