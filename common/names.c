/* names: error and state names. See names.h. */
#include "names.h"

#include <string.h>

#define STR_(x)  #x
#define STR(x)   STR_(x)
#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

const char *
cm_strerror(int err)
{
	switch (err) {
	case SAGA_OK:
		return "success";
	case SAGA_EINVAL:
		return "invalid argument";
	case SAGA_ENOMEM:
		return "out of memory";
	case SAGA_ENOTFOUND:
		return "not found";
	case SAGA_EEXIST:
		return "already exists";
	case SAGA_ETIMEDOUT:
		return "timed out";
	case SAGA_ECONN:
		return "cannot reach sagad";
	case SAGA_EPROTO:
		return "malformed or unexpected message";
	case SAGA_ETOOBIG:
		return "message or field too large";
	case SAGA_EDEFINITION:
		return "invalid saga definition";
	case SAGA_ESTATE:
		return "not allowed in the current state";
	case SAGA_EDB:
		return "database error in sagad";
	case SAGA_ECLOSED:
		return "closed or shutting down";
	case SAGA_EINTERNAL:
		return "internal error (a bug: please report it)";
	case SAGA_EBUSY:
		return "sagad is overloaded; try again";
	case SAGA_EUNSUPPORTED:
		return "not supported by the server";
	case SAGA_EAUTH:
		return "not authenticated";
	case SAGA_EPERM:
		return "permission denied";
	}
	return "unknown error";
}

const char *
cm_version(void)
{
	return STR(SAGA_VERSION_MAJOR) "." STR(SAGA_VERSION_MINOR) "." STR(SAGA_VERSION_PATCH);
}

/* Indexed by sagawire.SagaState. */
static const char *const saga_states[] = {
	[1] = "running",      /* SAGA_RUNNING */
	[2] = "compensating", /* SAGA_COMPENSATING */
	[3] = "completed",    /* SAGA_COMPLETED */
	[4] = "compensated",  /* SAGA_COMPENSATED */
	[5] = "failed",       /* SAGA_FAILED */
	[6] = "terminated",   /* SAGA_TERMINATED */
};

/* Indexed by sagawire.StepState. */
static const char *const step_states[] = {
	[1] = "pending",         /* STEP_PENDING */
	[2] = "running",         /* STEP_RUNNING */
	[3] = "retry_wait",      /* STEP_RETRY_WAIT */
	[4] = "succeeded",       /* STEP_SUCCEEDED */
	[5] = "failed",          /* STEP_FAILED */
	[6] = "compensating",    /* STEP_COMPENSATING */
	[7] = "comp_retry_wait", /* STEP_COMP_RETRY_WAIT */
	[8] = "compensated",     /* STEP_COMPENSATED */
	[9] = "comp_failed",     /* STEP_COMP_FAILED */
};

static const char *
name_in(const char *const *names, size_t n, int v)
{
	return (unsigned)v < n && names[v] != NULL ? names[v] : "unknown";
}

const char *
cm_saga_state_name(int state)
{
	return name_in(saga_states, NELEM(saga_states), state);
}

const char *
cm_step_state_name(int state)
{
	return name_in(step_states, NELEM(step_states), state);
}

int
cm_saga_state_parse(const char *name)
{
	if (name == NULL)
		return 0;
	for (unsigned i = 0; i < NELEM(saga_states); i++)
		if (saga_states[i] != NULL && strcmp(name, saga_states[i]) == 0)
			return (int)i;
	return 0;
}
