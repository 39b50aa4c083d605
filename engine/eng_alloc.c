/*
 * eng_alloc: the engine's allocations, defaulting to the C library and a
 * private mapping, replaceable for the whole process (contract in
 * eng_alloc.h).
 *
 * The hooks are a plain copy and a flag, written only while one thread
 * runs (before the engine allocates anything, after it freed everything),
 * so reading them needs no ordering.  With the flag clear every function
 * is the call the engine made before this module existed.
 */
#include "engine/eng_alloc.h"

#include <stdbool.h>
#include <stdlib.h>
#include <sys/mman.h>

static struct eng_alloc_hooks hooks;
static bool hooked;

void eng_alloc_set(const struct eng_alloc_hooks *h)
{
	hooked = h != NULL;
	if (h)
		hooks = *h;
}

void *eng_alloc_malloc(size_t size)
{
	return hooked ? hooks.malloc(size) : malloc(size);
}

void *eng_alloc_calloc(size_t n, size_t size)
{
	return hooked ? hooks.calloc(n, size) : calloc(n, size);
}

void *eng_alloc_realloc(void *p, size_t size)
{
	return hooked ? hooks.realloc(p, size) : realloc(p, size);
}

void eng_alloc_free(void *p)
{
	if (hooked)
		hooks.free(p);
	else
		free(p);
}

void *eng_alloc_reserve(size_t len)
{
	if (hooked)
		return hooks.calloc(1, len);
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	return p == MAP_FAILED ? NULL : p;
}

void eng_alloc_unreserve(void *p, size_t len)
{
	if (!p)
		return;
	if (hooked)
		hooks.free(p);
	else
		munmap(p, len);
}
