/*
 * wire: code shared by sagad, libsaga and sagactl for the messages of
 * proto/sagawire.proto. Prefix wire_. Not part of the public API.
 *
 * Decoding is bounded (shared/STACK-NOTES.md: protobuf-c 1.4.1 has no
 * recursion limit and may allocate ~30x its input): wire_unpack() first
 * walks the bytes against the schema to bound nesting depth and field count,
 * then unpacks with an allocator that fails cleanly past a byte quota.
 */
#ifndef SAGA_WIRE_H
#define SAGA_WIRE_H

#include <protobuf-c/protobuf-c.h>
#include <stddef.h>
#include <stdint.h>

#include "sagawire.pb-c.h"

/* The participant protocol version (docs/PROTOCOL.md, "Versions"), sent by
 * libsaga in every Request.protocol as MAJOR * 1000 + MINOR. A MINOR adds
 * fields that older peers skip; a MAJOR changes meaning, and sagad refuses
 * a MAJOR it does not speak. Bump WIRE_PROTOCOL_MINOR with every field
 * added to sagawire.proto that a peer may rely on. */
#define WIRE_PROTOCOL_MAJOR       1u
#define WIRE_PROTOCOL_MINOR       0u
#define WIRE_PROTOCOL_VERSION     (WIRE_PROTOCOL_MAJOR * 1000u + WIRE_PROTOCOL_MINOR)
/* The major and minor of a Request.protocol value; 0 (not sent) is 1.0. */
#define WIRE_PROTOCOL_MAJOR_OF(v) ((v) == 0 ? 1u : (unsigned)(v) / 1000u)
#define WIRE_PROTOCOL_MINOR_OF(v) ((v) == 0 ? 0u : (unsigned)(v) % 1000u)

/* Deepest message nesting accepted (sagawire needs 4; descriptor sets
 * about 10 for ordinary .proto files). */
#define WIRE_MAX_DEPTH  32
/* Most fields (at all depths) in one message. */
#define WIRE_MAX_FIELDS (1u << 20)

/* Checks that buf is well-formed protobuf for descriptor d, nesting no
 * deeper than max_depth and with at most max_fields fields in all.
 * Returns 0, or SAGA_EPROTO (malformed), SAGA_ETOOBIG (too deep / too many
 * fields). Never recurses more than max_depth frames. */
int wire_check(const ProtobufCMessageDescriptor *d, const uint8_t *buf, size_t len,
    unsigned max_depth, size_t max_fields);

/* wire_check, then unpack with an allocation quota of `quota` bytes
 * (0 = 64 * len + 64 KiB). Returns NULL on any failure; *err (may be NULL)
 * receives the saga_err. Free with wire_free(). */
ProtobufCMessage *wire_unpack(
    const ProtobufCMessageDescriptor *d, const uint8_t *buf, size_t len, size_t quota, int *err);
void wire_free(ProtobufCMessage *m);

/* Convenience for the envelope types. Requests (what sagad reads from the
 * network) are also refused when a string field holds invalid UTF-8 or a
 * NUL byte (protobuf-c would hand it on cut short at the NUL). */
Sagawire__Request *wire_unpack_request(const uint8_t *buf, size_t len, int *err);
Sagawire__Response *wire_unpack_response(const uint8_t *buf, size_t len, int *err);

/* Packs a message into a new nng message body. Returns 0 or SAGA_ENOMEM. */
struct nng_msg;
int wire_pack_msg(const ProtobufCMessage *m, struct nng_msg **out);

/* UUIDs: 16 bytes <-> canonical 36-char lower-case text (+NUL). */
#define WIRE_UUID_STRLEN 37
void wire_uuid_format(const uint8_t id[16], char out[WIRE_UUID_STRLEN]);
/* Returns 0 if s is a canonical UUID (hex, dashes at 8-4-4-4-12), else
 * SAGA_EINVAL. */
int wire_uuid_parse(const char *s, uint8_t out[16]);
/* A version 7 (time-ordered) UUID: new sagas sort by creation in btrees. */
void wire_uuid_v7(uint8_t out[16]);

/* W3C trace context (https://www.w3.org/TR/trace-context/): the
 * traceparent header "00-<32 hex trace id>-<16 hex parent id>-<2 hex
 * flags>", lower-case. */
#define WIRE_TRACEPARENT_LEN 55
typedef struct wire_trace {
	uint8_t trace_id[16];
	uint8_t parent_id[8];
	uint8_t flags;
} wire_trace;
/* Returns 0 if s is a valid traceparent (version 00, or a later version
 * read as 00 as the spec asks; all-zero ids and version ff refused), else
 * SAGA_EINVAL. */
int wire_trace_parse(const char *s, wire_trace *out);
void wire_trace_format(const wire_trace *t, char out[WIRE_TRACEPARENT_LEN + 1]);
/* The trace id alone as 32 hex digits + NUL. */
void wire_trace_id_hex(const wire_trace *t, char out[33]);
/* Same trace and flags, parent id derived from t's and salt: stable for
 * the same inputs, never zero. */
void wire_trace_child(const wire_trace *t, uint64_t salt, wire_trace *child);
/* A new trace: trace id `id` (a saga's UUID), random parent id, sampled. */
void wire_trace_new(const uint8_t id[16], wire_trace *out);

/* Wall-clock microseconds since the Unix epoch; monotonic milliseconds. */
int64_t wire_now_us(void);
int64_t wire_mono_ms(void);
int64_t wire_mono_us(void);

/* 32-bit FNV-1a of a NUL-terminated string: for hash tables keyed by
 * names (participants, idempotency keys). Not for anything adversarial
 * that needs more than spread. */
unsigned wire_hash_str(const char *s);

/* Maps an nng error to a saga_err (the one place this is done). */
int wire_err_from_nng(int nng_rv);

#endif
