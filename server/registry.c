/* registry: registered definitions, see registry.h. */
#include "registry.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "saga_base.h"

/* A small sorted-by-nothing array is enough: definitions number in the
 * tens, and lookups by the engine are cached per start in practice. A
 * hash would only matter with thousands of definitions. */
static pthread_rwlock_t lock = PTHREAD_RWLOCK_INITIALIZER;
static defn_saga **defs;
static size_t n_defs, cap_defs;

int
registry_init(void)
{
	return 0;
}

void
registry_fini(void)
{
	pthread_rwlock_wrlock(&lock);
	for (size_t i = 0; i < n_defs; i++)
		defn_free(defs[i]);
	free(defs);
	defs = NULL;
	n_defs = cap_defs = 0;
	pthread_rwlock_unlock(&lock);
}

int
registry_add(defn_saga *d)
{
	int rv = 0;
	pthread_rwlock_wrlock(&lock);
	for (size_t i = 0; i < n_defs; i++) {
		if (defs[i]->version == d->version && strcmp(defs[i]->name, d->name) == 0) {
			rv = SAGA_EEXIST;
			goto out;
		}
	}
	if (n_defs == cap_defs) {
		size_t ncap = cap_defs ? cap_defs * 2 : 16;
		defn_saga **nd = realloc(defs, ncap * sizeof(*nd));
		if (nd == NULL) {
			rv = SAGA_ENOMEM;
			goto out;
		}
		defs = nd;
		cap_defs = ncap;
	}
	defs[n_defs++] = d;
out:
	pthread_rwlock_unlock(&lock);
	return rv;
}

static const defn_saga *
registry_latest_locked(const char *name)
{
	const defn_saga *best = NULL;
	for (size_t i = 0; i < n_defs; i++)
		if (strcmp(defs[i]->name, name) == 0 &&
		    (best == NULL || defs[i]->version > best->version))
			best = defs[i];
	return best;
}

const defn_saga *
registry_get(const char *name, uint32_t version)
{
	const defn_saga *best = NULL;
	pthread_rwlock_rdlock(&lock);
	if (version == 0)
		best = registry_latest_locked(name);
	else
		for (size_t i = 0; i < n_defs && best == NULL; i++)
			if (defs[i]->version == version && strcmp(defs[i]->name, name) == 0)
				best = defs[i];
	pthread_rwlock_unlock(&lock);
	return best;
}

size_t
registry_count(void)
{
	pthread_rwlock_rdlock(&lock);
	size_t n = n_defs;
	pthread_rwlock_unlock(&lock);
	return n;
}

static int
cmp_listed(const void *a, const void *b)
{
	const defn_saga *x = *(const defn_saga *const *)a, *y = *(const defn_saga *const *)b;
	int r = strcmp(x->name, y->name);
	if (r != 0)
		return r;
	return x->version < y->version ? 1 : x->version > y->version ? -1 : 0;
}

size_t
registry_list(const char *name, const defn_saga **out, size_t max)
{
	size_t n = 0;
	pthread_rwlock_rdlock(&lock);
	for (size_t i = 0; i < n_defs; i++) {
		const defn_saga *d = defs[i];
		if (name != NULL && strcmp(d->name, name) != 0)
			continue;
		if (name == NULL && registry_latest_locked(d->name) != d)
			continue;
		if (n < max)
			out[n] = d;
		n++;
	}
	pthread_rwlock_unlock(&lock);
	qsort(out, n < max ? n : max, sizeof(*out), cmp_listed);
	return n;
}
