/* wire: bounded protobuf decoding and small shared helpers. See wire.h. */
#include "wire.h"

#include <nng/nng.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <fcntl.h>
#include <sys/random.h>

#include "saga_base.h"
#include "utf8.h"
#include "varint.h"

/* ---- schema walk ------------------------------------------------------- */

static const ProtobufCFieldDescriptor *
find_field(const ProtobufCMessageDescriptor *d, uint32_t id)
{
	/* Fields are sorted by id in protobuf-c descriptors. */
	unsigned lo = 0, hi = d->n_fields;
	while (lo < hi) {
		unsigned mid = (lo + hi) / 2;
		if (d->fields[mid].id == id)
			return &d->fields[mid];
		if (d->fields[mid].id < id)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

static int
walk(const ProtobufCMessageDescriptor *d, const uint8_t *buf, size_t len, unsigned depth,
    unsigned max_depth, size_t *fields, size_t max_fields, int strings)
{
	size_t pos = 0;
	int rv;

	if (depth > max_depth)
		return SAGA_ETOOBIG;
	while (pos < len) {
		uint64_t key, v;
		if ((rv = cm_varint_read(buf, len, &pos, &key)) != 0)
			return rv;
		uint32_t id = (uint32_t)(key >> 3);
		unsigned wt = (unsigned)(key & 7);
		if (id == 0 || key >> 3 > 0x1fffffff)
			return SAGA_EPROTO;
		if (++*fields > max_fields)
			return SAGA_ETOOBIG;
		switch (wt) {
		case 0:
			if ((rv = cm_varint_read(buf, len, &pos, &v)) != 0)
				return rv;
			break;
		case 1:
			if (len - pos < 8)
				return SAGA_EPROTO;
			pos += 8;
			break;
		case 5:
			if (len - pos < 4)
				return SAGA_EPROTO;
			pos += 4;
			break;
		case 2: {
			if ((rv = cm_varint_read(buf, len, &pos, &v)) != 0)
				return rv;
			if (v > len - pos)
				return SAGA_EPROTO;
			const ProtobufCFieldDescriptor *f = d ? find_field(d, id) : NULL;
			if (f != NULL && f->type == PROTOBUF_C_TYPE_MESSAGE) {
				rv = walk(f->descriptor, buf + pos, (size_t)v, depth + 1, max_depth,
				    fields, max_fields, strings);
				if (rv != 0)
					return rv;
			} else if (strings && f != NULL && f->type == PROTOBUF_C_TYPE_STRING &&
			    !cm_utf8_ok((const char *)buf + pos, (size_t)v)) {
				/* protobuf-c hands strings on as C strings: an
				 * embedded NUL would silently cut one short
				 * ("a.Saga\0junk" read as "a.Saga"), and
				 * invalid UTF-8 is not a proto3 string. */
				return SAGA_EPROTO;
			}
			pos += (size_t)v;
			break;
		}
		default:
			/* Groups (3, 4) are not used by proto3 and protobuf-c
			 * would recurse into them unbounded: refuse. */
			return SAGA_EPROTO;
		}
	}
	return 0;
}

int
wire_check(const ProtobufCMessageDescriptor *d, const uint8_t *buf, size_t len, unsigned max_depth,
    size_t max_fields)
{
	size_t fields = 0;
	if (buf == NULL && len > 0)
		return SAGA_EINVAL;
	return walk(d, buf, len, 1, max_depth, &fields, max_fields, 0);
}

/* ---- quota allocator --------------------------------------------------- */

typedef struct quota {
	size_t used;
	size_t limit;
} quota;

/* Each block carries its size in front so free can give the quota back
 * and so a plain free-only allocator can release an unpacked message. */
#define HDR 16

static void *
quota_alloc(void *data, size_t size)
{
	quota *q = data;
	if (size > q->limit || q->used + size + HDR > q->limit)
		return NULL;
	unsigned char *p = malloc(size + HDR);
	if (p == NULL)
		return NULL;
	memcpy(p, &size, sizeof(size));
	q->used += size + HDR;
	return p + HDR;
}

static void
block_free(void *data, void *ptr)
{
	(void)data;
	if (ptr != NULL)
		free((unsigned char *)ptr - HDR);
}

static void
quota_free(void *data, void *ptr)
{
	quota *q = data;
	if (ptr == NULL)
		return;
	size_t size;
	memcpy(&size, (unsigned char *)ptr - HDR, sizeof(size));
	q->used -= size + HDR;
	block_free(NULL, ptr);
}

static ProtobufCAllocator free_only = {
	.alloc = NULL,
	.free = block_free,
	.allocator_data = NULL,
};

static ProtobufCMessage *
unpack(const ProtobufCMessageDescriptor *d, const uint8_t *buf, size_t len, size_t limit, int *err,
    int strings)
{
	int rv;
	size_t fields = 0;
	if (buf == NULL && len > 0)
		rv = SAGA_EINVAL;
	else
		rv = walk(d, buf, len, 1, WIRE_MAX_DEPTH, &fields, WIRE_MAX_FIELDS, strings);
	if (rv != 0) {
		if (err)
			*err = rv;
		return NULL;
	}
	quota q = { 0, limit ? limit : 64 * len + 65536 };
	ProtobufCAllocator a = { .alloc = quota_alloc, .free = quota_free, .allocator_data = &q };
	ProtobufCMessage *m = protobuf_c_message_unpack(d, &a, len, buf);
	if (m == NULL && err)
		*err = q.used + 4096 >= q.limit ? SAGA_ETOOBIG : SAGA_EPROTO;
	return m;
}

ProtobufCMessage *
wire_unpack(
    const ProtobufCMessageDescriptor *d, const uint8_t *buf, size_t len, size_t limit, int *err)
{
	return unpack(d, buf, len, limit, err, 0);
}

void
wire_free(ProtobufCMessage *m)
{
	if (m != NULL)
		protobuf_c_message_free_unpacked(m, &free_only);
}

Sagawire__Request *
wire_unpack_request(const uint8_t *buf, size_t len, int *err)
{
	/* What sagad reads from the network: every string must be valid
	 * UTF-8 without NUL bytes (see walk()). */
	return (Sagawire__Request *)unpack(&sagawire__request__descriptor, buf, len, 0, err, 1);
}

Sagawire__Response *
wire_unpack_response(const uint8_t *buf, size_t len, int *err)
{
	return (Sagawire__Response *)wire_unpack(&sagawire__response__descriptor, buf, len, 0, err);
}

int
wire_pack_msg(const ProtobufCMessage *m, nng_msg **out)
{
	size_t n = protobuf_c_message_get_packed_size(m);
	nng_msg *msg;
	if (nng_msg_alloc(&msg, n) != 0)
		return SAGA_ENOMEM;
	if (n > 0)
		protobuf_c_message_pack(m, nng_msg_body(msg));
	*out = msg;
	return 0;
}

/* ---- uuid -------------------------------------------------------------- */

/* Lower-case hex of n bytes, then a NUL. */
static void
to_hex(const uint8_t *b, size_t n, char *out)
{
	static const char hx[] = "0123456789abcdef";
	for (size_t i = 0; i < n; i++) {
		out[2 * i] = hx[b[i] >> 4];
		out[2 * i + 1] = hx[b[i] & 15];
	}
	out[2 * n] = '\0';
}

void
wire_uuid_format(const uint8_t id[16], char out[WIRE_UUID_STRLEN])
{
	static const size_t group[] = { 4, 2, 2, 2, 6 }; /* bytes: 8-4-4-4-12 digits */
	char *p = out;
	for (size_t g = 0, off = 0; g < 5; off += group[g++]) {
		if (g > 0)
			*p++ = '-';
		to_hex(id + off, group[g], p);
		p += 2 * group[g];
	}
}

static int
hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int
wire_uuid_parse(const char *s, uint8_t out[16])
{
	if (s == NULL || strlen(s) != 36)
		return SAGA_EINVAL;
	int j = 0;
	for (int i = 0; i < 36;) {
		if (i == 8 || i == 13 || i == 18 || i == 23) {
			if (s[i] != '-')
				return SAGA_EINVAL;
			i++;
			continue;
		}
		int hi = hexval(s[i]), lo = hexval(s[i + 1]);
		if (hi < 0 || lo < 0)
			return SAGA_EINVAL;
		out[j++] = (uint8_t)(hi << 4 | lo);
		i += 2;
	}
	return 0;
}

void
wire_uuid_v7(uint8_t out[16])
{
	/* 48-bit ms timestamp, then 74 random bits. A per-process counter in
	 * the random part keeps ids generated in the same millisecond ordered
	 * and unique even if getrandom is short. */
	static _Atomic uint64_t counter;
	uint64_t ms = (uint64_t)(wire_now_us() / 1000);
	uint8_t rnd[10];
	if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd)) {
		uint64_t c = atomic_fetch_add(&counter, 1) ^ (uint64_t)getpid() << 32;
		memcpy(rnd, &c, 8);
		rnd[8] = (uint8_t)ms;
		rnd[9] = (uint8_t)(ms >> 8);
	}
	for (int i = 0; i < 6; i++)
		out[i] = (uint8_t)(ms >> (40 - 8 * i));
	memcpy(out + 6, rnd, 10);
	out[6] = (uint8_t)(0x70 | (out[6] & 0x0f)); /* version 7 */
	out[8] = (uint8_t)(0x80 | (out[8] & 0x3f)); /* variant 10 */
}

/* ---- trace context ----------------------------------------------------- */

static int
hex_bytes(const char *s, uint8_t *out, size_t n)
{
	int any = 0;
	for (size_t i = 0; i < n; i++) {
		int hi = hexval(s[2 * i]), lo = hexval(s[2 * i + 1]);
		/* upper case is invalid in a traceparent */
		if (hi < 0 || lo < 0 || (s[2 * i] >= 'A' && s[2 * i] <= 'F') ||
		    (s[2 * i + 1] >= 'A' && s[2 * i + 1] <= 'F'))
			return -1;
		out[i] = (uint8_t)(hi << 4 | lo);
		any |= out[i];
	}
	return any ? 0 : 1; /* 1: all zero */
}

int
wire_trace_parse(const char *s, wire_trace *out)
{
	uint8_t ver;
	size_t len;
	if (s == NULL)
		return SAGA_EINVAL;
	len = strlen(s);
	if (len < WIRE_TRACEPARENT_LEN || s[2] != '-' || s[35] != '-' || s[52] != '-')
		return SAGA_EINVAL;
	if (hex_bytes(s, &ver, 1) < 0 || ver == 0xff)
		return SAGA_EINVAL;
	/* Version 00 is exactly 55 characters; a later one may append fields
	 * after a dash, which are ignored. */
	if ((ver == 0 && len != WIRE_TRACEPARENT_LEN) ||
	    (len > WIRE_TRACEPARENT_LEN && s[WIRE_TRACEPARENT_LEN] != '-'))
		return SAGA_EINVAL;
	if (hex_bytes(s + 3, out->trace_id, 16) != 0 || hex_bytes(s + 36, out->parent_id, 8) != 0 ||
	    hex_bytes(s + 53, &out->flags, 1) < 0)
		return SAGA_EINVAL;
	return 0;
}

void
wire_trace_format(const wire_trace *t, char out[WIRE_TRACEPARENT_LEN + 1])
{
	memcpy(out, "00-", 3);
	to_hex(t->trace_id, 16, out + 3);
	out[35] = '-';
	to_hex(t->parent_id, 8, out + 36);
	out[52] = '-';
	to_hex(&t->flags, 1, out + 53);
}

void
wire_trace_id_hex(const wire_trace *t, char out[33])
{
	to_hex(t->trace_id, 16, out);
}

void
wire_trace_child(const wire_trace *t, uint64_t salt, wire_trace *child)
{
	uint64_t x = 0;
	memcpy(&x, t->parent_id, 8);
	x ^= salt * 0x9e3779b97f4a7c15ULL;
	/* splitmix64's finaliser: every input bit moves every output bit. */
	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ULL;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebULL;
	x ^= x >> 31;
	if (x == 0)
		x = 1;
	memcpy(child->trace_id, t->trace_id, 16);
	memcpy(child->parent_id, &x, 8);
	child->flags = t->flags;
}

void
wire_trace_new(const uint8_t id[16], wire_trace *out)
{
	memcpy(out->trace_id, id, 16);
	if (getrandom(out->parent_id, 8, 0) != 8) {
		uint64_t x = (uint64_t)wire_now_us() ^ (uint64_t)getpid() << 40;
		memcpy(out->parent_id, &x, 8);
	}
	if (out->parent_id[0] == 0)
		out->parent_id[0] = 1; /* never all zero */
	out->flags = 0x01;             /* sampled: sagad starts the trace */
}

/* ---- time, hashes, errors --------------------------------------------- */

int64_t
wire_now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int64_t
wire_mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t
wire_mono_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

unsigned
wire_hash_str(const char *s)
{
	unsigned h = 2166136261u;
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 16777619u;
	return h;
}

int
wire_err_from_nng(int rv)
{
	switch (rv) {
	case 0:
		return SAGA_OK;
	case NNG_ENOMEM:
		return SAGA_ENOMEM;
	case NNG_ETIMEDOUT:
		return SAGA_ETIMEDOUT;
	case NNG_ECLOSED:
		return SAGA_ECLOSED;
	case NNG_EINVAL:
	case NNG_EADDRINVAL:
		return SAGA_EINVAL;
	case NNG_EMSGSIZE:
		return SAGA_ETOOBIG;
	case NNG_EPROTO:
	case NNG_ECRYPTO:
		return SAGA_EPROTO;
	case NNG_ENOTSUP:
		return SAGA_EUNSUPPORTED;
	case NNG_ECONNREFUSED:
	case NNG_ECONNRESET:
	case NNG_ECONNSHUT:
	case NNG_ECONNABORTED:
	case NNG_EADDRINUSE:
	case NNG_EUNREACHABLE:
	case NNG_ENOENT:
	case NNG_EPEERAUTH:
		return SAGA_ECONN;
	case NNG_EAGAIN:
	case NNG_EBUSY:
		return SAGA_EBUSY;
	default:
		return SAGA_EINTERNAL;
	}
}
