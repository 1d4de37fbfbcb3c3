/*
 * sagarow: a saga's state as stored in its row. The per-step state, the
 * history, the deadline and the trace context travel in the `steps`
 * column as one sagawire.StoredSteps message; the rest has columns of its
 * own (store.c). Pure: no I/O; used by the engine to write a batch and to
 * take a saga back from its row, by the unit tests to check both ways.
 */
#ifndef SAGAD_SAGAROW_H
#define SAGAD_SAGAROW_H

#include <stddef.h>
#include <stdint.h>

#include "sm.h"
#include "store.h"
#include "wire.h"

/* Packs s's steps, history, deadline and trace into a new StoredSteps
 * buffer (*out, malloc'ed, *len bytes). 0 or SAGA_ENOMEM. */
int sagarow_pack(const sm_saga *s, const wire_trace *trace, uint8_t **out, size_t *len);

/* Fills s (made by sm_saga_new for row's definition) from row: its
 * state, steps, history, error, next sequence and deadline, and *trace.
 * Returns 0, SAGA_EPROTO if the stored steps do not decode or do not
 * match the definition, or SAGA_ENOMEM. */
int sagarow_unpack(const store_saga *row, sm_saga *s, wire_trace *trace);

#endif
