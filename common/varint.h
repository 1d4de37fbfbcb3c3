/*
 * varint: protobuf's base-128 varints, read with a bound and written.
 * Prefix cm_. For the code that walks protobuf bytes itself: wire.c's
 * schema walk, sagad's option and business-key readers, pbjson.
 */
#ifndef SAGA_CM_VARINT_H
#define SAGA_CM_VARINT_H

#include <stddef.h>
#include <stdint.h>

/* The longest varint: 10 bytes hold 64 bits. */
#define CM_VARINT_MAX 10

/* Reads the varint at p[*pos..len). Returns 0 with its value in *v and
 * *pos moved past it, or SAGA_EPROTO (*pos unchanged) if it runs past len
 * or past CM_VARINT_MAX bytes. Bits beyond the 64th are dropped, as
 * protobuf parsers do. */
int cm_varint_read(const uint8_t *p, size_t len, size_t *pos, uint64_t *v);

/* Writes v as a varint into out; returns its length (1 to 10). */
size_t cm_varint_write(uint8_t out[CM_VARINT_MAX], uint64_t v);

#endif
