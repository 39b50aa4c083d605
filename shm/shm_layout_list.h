/*
 * The sizes and offsets that make up the layout signature (shm_layout.c).
 * Every header that defines a shared struct is included here and its struct
 * listed; X(value) is applied to each.
 */
#ifndef SHMEX_SHM_LAYOUT_LIST_H
#define SHMEX_SHM_LAYOUT_LIST_H

#include "shm/shm_region.h"
#include "shm/shm_msg.h"

#define SHM_LAYOUT_LIST(X)                                                     \
	X(sizeof(struct shm_region_hdr_sh))                                    \
	X(offsetof(struct shm_region_hdr_sh, state))                           \
	X(sizeof(struct shm_msg))

#endif
