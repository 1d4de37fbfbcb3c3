/*
 * Fuzz target: pbjson (common/pbjson/), both directions, with
 * the types of tests/fixtures/alltypes.proto (embedded at build time).
 *
 * Input: one mode byte, then the payload.
 *   bit 0     0: payload is protobuf bytes -> JSON; 1: payload is JSON
 *   bits 1-4  the message type (types[] below)
 *   bits 5-6  indent for printing (0-3)
 *   bit 7     the payload starts with its own descriptor set instead:
 *             varint length, the set, a NUL-terminated type name, then
 *             the bytes or JSON (hostile descriptors; no oracle then)
 * Oracle, with the fixture's types: whatever converts must convert back.
 * Bytes b that print as JSON j must read back, and print as j again; JSON
 * that reads as bytes b must print, and that print must read as b again.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alltypes_fdset.h"
#include "pbjson.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const types[16] = {
	"alltypes.AllTypes",
	"alltypes.AllTypes",
	"alltypes.AllTypes",
	"alltypes.Nested",
	"alltypes.p2.Legacy",
	"google.protobuf.Struct",
	"google.protobuf.Value",
	"google.protobuf.ListValue",
	"google.protobuf.Timestamp",
	"google.protobuf.Duration",
	"google.protobuf.FieldMask",
	"google.protobuf.Int64Value",
	"google.protobuf.BytesValue",
	"google.protobuf.FloatValue",
	"google.protobuf.Any",
	"google.protobuf.Empty",
};

static void
broken(const char *what, const char *type, const char *detail)
{
	fprintf(stderr, "fuzz_pbjson: %s (%s): %s\n", what, type, detail);
	abort();
}

/* Both directions once; with check, the round trips too. */
static void
run(const pbjson *p, const char *type, int json, int indent, const uint8_t *buf, size_t len,
    int check)
{
	char err[512], *j = NULL, *j2 = NULL;
	uint8_t *b = NULL, *b2 = NULL;
	size_t bl = 0, bl2 = 0;
	if (!json) {
		if (pbjson_to_json(p, type, buf, len, indent, &j, err, sizeof(err)) != 0 || !check)
			goto out;
		if (pbjson_from_json(p, type, j, strlen(j), &b, &bl, err, sizeof(err)) != 0)
			broken("printed JSON does not read back", type, err);
		if (pbjson_to_json(p, type, b, bl, indent, &j2, err, sizeof(err)) != 0)
			broken("bytes read from printed JSON do not print", type, err);
		if (strcmp(j, j2) != 0)
			broken("JSON changed on a round trip", type, j2);
	} else {
		if (pbjson_from_json(p, type, (const char *)buf, len, &b, &bl, err, sizeof(err)) !=
			0 ||
		    !check)
			goto out;
		if (pbjson_to_json(p, type, b, bl, indent, &j, err, sizeof(err)) != 0)
			broken("bytes read from JSON do not print", type, err);
		if (pbjson_from_json(p, type, j, strlen(j), &b2, &bl2, err, sizeof(err)) != 0)
			broken("printed JSON does not read back", type, err);
		if (bl != bl2 || (bl > 0 && memcmp(b, b2, bl) != 0))
			broken("bytes changed on a round trip", type, j);
	}
out:
	free(j);
	free(j2);
	free(b);
	free(b2);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static pbjson *fixture;
	char err[512];
	if (fixture == NULL &&
	    pbjson_new(ALLTYPES_FDSET, ALLTYPES_FDSET_LEN, &fixture, err, sizeof(err)) != 0)
		broken("the embedded descriptor set does not load", "", err);
	if (size == 0)
		return 0;
	int json = data[0] & 1, indent = (data[0] >> 5) & 3;
	const char *type = types[(data[0] >> 1) & 15];
	data++;
	size--;
	if ((data[-1] & 0x80) == 0) {
		run(fixture, type, json, indent, data, size, 1);
		return 0;
	}
	/* Own descriptor set: varint length, set, type name, payload. */
	uint64_t n = 0;
	size_t pos = 0;
	for (unsigned shift = 0; pos < size && shift < 35; shift += 7) {
		n |= (uint64_t)(data[pos] & 0x7f) << shift;
		if ((data[pos++] & 0x80) == 0)
			break;
	}
	if (n > size - pos)
		return 0;
	const uint8_t *set = data + pos;
	pos += (size_t)n;
	const uint8_t *nul = memchr(data + pos, 0, size - pos);
	if (nul == NULL)
		return 0;
	type = (const char *)data + pos;
	pos = (size_t)(nul - data) + 1;
	pbjson *p = NULL;
	if (pbjson_new(set, (size_t)n, &p, err, sizeof(err)) != 0)
		return 0;
	run(p, type, json, indent, data + pos, size - pos, 0);
	pbjson_has_message(p, type);
	pbjson_free(p);
	return 0;
}
