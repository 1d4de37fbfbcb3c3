/*
 * names: the text of the values sagad, libsaga and sagactl share. Prefix
 * cm_ (common/, not part of any public API).
 *
 *  - error codes: saga_err (saga_base.h);
 *  - saga and step states: the values of sagawire.SagaState and
 *    sagawire.StepState (proto/sagawire.proto), which saga.h's saga_state
 *    and saga_step_state equal (client-lib/src/common.c asserts it).
 *
 * Every name is a static string, never NULL.
 */
#ifndef SAGA_CM_NAMES_H
#define SAGA_CM_NAMES_H

#include "saga_base.h"

/* A description of an error code; "unknown error" for other values. */
const char *cm_strerror(int err);

/* "MAJOR.MINOR.PATCH" from saga_base.h. */
const char *cm_version(void);

/* Lower-case names: "running", "comp_retry_wait", ...; "unknown" for a
 * value that is no state (0 included). */
const char *cm_saga_state_name(int state);
const char *cm_step_state_name(int state);

/* The saga state named as cm_saga_state_name() prints it, or 0 (no state)
 * for NULL or any other text. */
int cm_saga_state_parse(const char *name);

#endif
