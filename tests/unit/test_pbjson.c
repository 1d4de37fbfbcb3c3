/*
 * Unit tests of common/pbjson/: protobuf <-> JSON driven by a
 * descriptor set. Types come from tests/fixtures/alltypes.proto, compiled
 * by protoc as users compile theirs; alltypes_values.binpb is what
 * `protoc --encode` writes for alltypes_values.txtpb, the reference for
 * the bytes pbjson writes. Other byte vectors are written out by hand
 * from the protobuf encoding rules.
 *
 * One Check case per meson test (CK_RUN_CASE picks it):
 *   roundtrip  JSON -> binary -> JSON for every field type and edge value
 *   protoc     the bytes equal protoc's, and hand-made vectors
 *   unknown    unknown binary fields survive as "@unknown" and back
 *   errors     bad input in both directions: the code and the JSON path
 *   limits     nesting depth, hostile sizes, missing imports, the API edges
 */
#include <check.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pbjson.h"
#include "saga_base.h"

#define ERRLEN 512
#define AT     "alltypes.AllTypes"

static pbjson *P;

static void *
xmalloc(size_t n)
{
	void *p = malloc(n);
	if (p == NULL)
		abort();
	return p;
}

/* ---- fixtures ---------------------------------------------------------- */

static uint8_t *
load_fixture(const char *name, size_t *len)
{
	const char *dir = getenv("PBJSON_FIXTURES");
	char path[4096];
	ck_assert_msg(dir != NULL, "PBJSON_FIXTURES is not set (run through meson test)");
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	FILE *f = fopen(path, "rb");
	ck_assert_msg(f != NULL, "cannot open %s", path);
	ck_assert_int_eq(fseek(f, 0, SEEK_END), 0);
	long n = ftell(f);
	ck_assert_int_ge(n, 0);
	rewind(f);
	uint8_t *buf = xmalloc((size_t)n + 1);
	ck_assert_uint_eq(fread(buf, 1, (size_t)n, f), (size_t)n);
	fclose(f);
	*len = (size_t)n;
	return buf;
}

static pbjson *
load_pool(const char *name)
{
	size_t len;
	char err[ERRLEN];
	pbjson *p = NULL;
	uint8_t *buf = load_fixture(name, &len);
	int rv = pbjson_new(buf, len, &p, err, sizeof(err));
	free(buf);
	ck_assert_msg(rv == 0, "%s: rv %d: %s", name, rv, err);
	return p;
}

static void
setup(void)
{
	P = load_pool("alltypes.binpb");
}

static void
teardown(void)
{
	pbjson_free(P);
	P = NULL;
}

/* ---- helpers ----------------------------------------------------------- */

static char *
hex(const uint8_t *b, size_t n)
{
	char *s = xmalloc(3 * n + 1);
	s[0] = '\0';
	for (size_t i = 0; i < n; i++)
		sprintf(s + 3 * i, "%02x ", b[i]);
	return s;
}

static void
assert_bytes(
    const uint8_t *got, size_t gotlen, const uint8_t *want, size_t wantlen, const char *what)
{
	if (gotlen == wantlen && (wantlen == 0 || memcmp(got, want, wantlen) == 0))
		return;
	char *g = hex(got, gotlen), *w = hex(want, wantlen);
	ck_abort_msg("%s:\n got  %s\n want %s", what, g, w);
}

static void
assert_printable(const char *s)
{
	for (; *s; s++)
		ck_assert_msg((unsigned char)*s >= 0x20 && (unsigned char)*s < 0x7f,
		    "non-printable byte 0x%02x in an error message", (unsigned char)*s);
}

/* JSON -> bytes that must succeed. */
static uint8_t *
enc(const char *type, const char *json, size_t *len)
{
	char err[ERRLEN];
	uint8_t *out = (uint8_t *)1;
	int rv = pbjson_from_json(P, type, json, strlen(json), &out, len, err, sizeof(err));
	ck_assert_msg(rv == 0, "from_json(%s) rv %d: %s", json, rv, err);
	ck_assert_msg(err[0] == '\0', "err not empty on success");
	ck_assert(*len == 0 ? out == NULL : out != NULL);
	return out;
}

/* bytes -> JSON that must succeed. */
static char *
dec(const char *type, const uint8_t *buf, size_t len, int indent)
{
	char err[ERRLEN];
	char *out = (char *)1;
	int rv = pbjson_to_json(P, type, buf, len, indent, &out, err, sizeof(err));
	ck_assert_msg(rv == 0, "to_json rv %d: %s", rv, err);
	ck_assert_ptr_nonnull(out);
	return out;
}

/* json_in is read, written as bytes, printed: the print must be
 * `canonical`, and reading `canonical` must give the same bytes. */
static void
roundtrip(const char *type, const char *json_in, const char *canonical)
{
	size_t n1, n2;
	uint8_t *b1 = enc(type, json_in, &n1);
	char *j = dec(type, b1, n1, 0);
	ck_assert_msg(
	    strcmp(j, canonical) == 0, "%s\n printed %s\n want    %s", json_in, j, canonical);
	uint8_t *b2 = enc(type, canonical, &n2);
	assert_bytes(b2, n2, b1, n1, canonical);
	free(b1);
	free(b2);
	free(j);
}

/* bytes printed must be exactly `want`. */
static void
prints(const char *type, const uint8_t *buf, size_t len, const char *want)
{
	char *j = dec(type, buf, len, 0);
	ck_assert_msg(strcmp(j, want) == 0, "printed %s\n want    %s", j, want);
	free(j);
}

/* JSON that must be refused with rv and a message containing needle. */
static void
json_refused(const char *type, const char *json, size_t len, int want, const char *needle)
{
	char err[ERRLEN];
	uint8_t *out = (uint8_t *)1;
	size_t outlen = 99;
	int rv = pbjson_from_json(P, type, json, len, &out, &outlen, err, sizeof(err));
	ck_assert_msg(rv == want, "from_json(%s): rv %d, want %d; message: %s", json, rv, want,
	    rv ? err : "(none)");
	ck_assert_ptr_null(out);
	ck_assert_uint_eq(outlen, 0);
	assert_printable(err);
	ck_assert_msg(strstr(err, needle) != NULL, "from_json(%s):\n message %s\n lacks   %s", json,
	    err, needle);
}

static void
jrefused(const char *json, int want, const char *needle)
{
	json_refused(AT, json, strlen(json), want, needle);
}

/* Bytes that must be refused with rv and a message containing needle. */
static void
bin_refused(const char *type, const uint8_t *buf, size_t len, int want, const char *needle)
{
	char err[ERRLEN];
	char *out = (char *)1;
	int rv = pbjson_to_json(P, type, buf, len, 0, &out, err, sizeof(err));
	char *h = hex(buf, len > 40 ? 40 : len);
	ck_assert_msg(
	    rv == want, "to_json(%s): rv %d, want %d; message: %s", h, rv, want, rv ? err : out);
	ck_assert_ptr_null(out);
	assert_printable(err);
	ck_assert_msg(
	    strstr(err, needle) != NULL, "to_json(%s):\n message %s\n lacks   %s", h, err, needle);
	free(h);
}

#define B(...) (const uint8_t[]) { __VA_ARGS__ }, sizeof((const uint8_t[]) { __VA_ARGS__ })

/* alltypes_values.txtpb as canonical JSON: what protoc's bytes print as. */
static const char ALLTYPES_JSON[] =
    "{\"fDouble\":1.5,\"fFloat\":-2.25,\"fInt32\":-2147483648,\"fInt64\":\"-9223372036854775808\","
    "\"fUint32\":4294967295,\"fUint64\":\"18446744073709551615\",\"fSint32\":-7,"
    "\"fSint64\":\"-9223372036854775808\","
    "\"fFixed32\":4294967295,\"fFixed64\":\"18446744073709551615\",\"fSfixed32\":-2147483648,"
    "\"fSfixed64\":\"9223372036854775807\",\"fBool\":true,"
    "\"fString\":\"h\xc3\xa9llo \\\"q\\\"\\n\\t\\u0001 \xf0\x9f\x98\x80\","
    "\"fBytes\":\"AAH/"
    "\",\"fEnum\":\"INFRARED\",\"fNested\":{\"a\":1,\"b\":\"x\",\"child\":{\"a\":2}},"
    "\"rDouble\":[1,-0,\"Infinity\",\"-Infinity\",\"NaN\",2.2250738585072014e-308,"
    "1.7976931348623157e+308],"
    "\"rFloat\":[0.1,3.4028235e+38,1e-45],\"rInt32\":[1,-1,0],\"rInt64\":[\"5\",\"-5\"],"
    "\"rUint32\":[0,4294967295],\"rUint64\":[\"18446744073709551615\"],\"rSint32\":[-1,"
    "2147483647,-2147483648],\"rSint64\":[\"-9223372036854775808\",\"9223372036854775807\"],"
    "\"rFixed32\":[7],\"rFixed64\":[\"8\"],\"rSfixed32\":[-9],\"rSfixed64\":[\"-10\"],\"rBool\":["
    "true,"
    "false],\"rString\":[\"a\",\"\"],\"rBytes\":[\"\",\"eA==\"],\"rEnum\":[\"RED\",\"GREEN\"],"
    "\"rNested\":[{\"a\":1},{}],\"rInt32Unpacked\":[1,2],\"rDoubleUnpacked\":[0.5],"
    "\"mStringInt32\":{\"k\":0},\"mInt32String\":{\"-1\":\"v\"},\"mInt64Nested\":{\"9\":{\"a\":3}},"
    "\"mUint32Bytes\":{\"7\":\"AQ==\"},\"mBoolEnum\":{\"true\":\"BLUE\"},\"mSint64Double\":{\"-2\":"
    "2.5},"
    "\"mFixed32Bool\":{\"3\":true},\"mSfixed64Uint64\":{\"-4\":\"1\"},"
    "\"mUint64String\":{\"18446744073709551615\":\"max\"},"
    "\"oNested\":{},\"optInt32\":0,\"optString\":\"\",\"optEnum\":\"COLOR_UNSPECIFIED\","
    "\"optDouble\":0,\"optBool\":false,\"optBytes\":\"\",\"tTimestamp\":\"2023-11-14T22:13:20."
    "500Z\","
    "\"tDuration\":\"-1.500s\",\"wDouble\":0,\"wFloat\":1.5,\"wInt64\":\"-3\",\"wUint64\":\"3\","
    "\"wInt32\":0,\"wUint32\":4,\"wBool\":false,\"wString\":\"s\",\"wBytes\":\"Yg==\",\"tStruct\":{"
    "\"a\":1},"
    "\"tValue\":{},\"tList\":[null,true,\"s\",[-0.5]],\"tMask\":\"fooBar.baz,x\",\"tEmpty\":{},"
    "\"rTimestamp\":[\"1970-01-01T00:00:00Z\",\"0001-01-01T00:00:00Z\","
    "\"9999-12-31T23:59:59.999999999Z\"],"
    "\"mValue\":{\"n\":null},\"customName\":3,\"legacy\":{\"count\":0,\"name\":\"\",\"plain\":[1,"
    "2],\"packed\":[3,4],\"item\":{\"x\":1},\"ok\":false}}";

/* ======================================================================
 * roundtrip
 * ====================================================================== */

START_TEST(every_field_type_with_edge_values_round_trips)
{
	roundtrip(AT, ALLTYPES_JSON, ALLTYPES_JSON);
	/* Pretty output reads back to the same bytes. */
	size_t n1, n2;
	uint8_t *b1 = enc(AT, ALLTYPES_JSON, &n1);
	char *pretty = dec(AT, b1, n1, 2);
	ck_assert_ptr_nonnull(strstr(pretty, "{\n  \"fDouble\": 1.5,\n  \"fFloat\": -2.25,"));
	ck_assert_ptr_nonnull(
	    strstr(pretty, "\"rNested\": [\n    {\n      \"a\": 1\n    },\n    {}\n  ]"));
	uint8_t *b2 = enc(AT, pretty, &n2);
	assert_bytes(b2, n2, b1, n1, "pretty JSON read back");
	free(b1);
	free(b2);
	free(pretty);
}
END_TEST

START_TEST(bytes_with_all_256_values_round_trip_in_both_base64_alphabets)
{
	uint8_t bin[3 + 256];
	bin[0] = 0x7a; /* field 15 (fBytes), length-delimited */
	bin[1] = 0x80; /* length 256 */
	bin[2] = 0x02;
	for (int i = 0; i < 256; i++)
		bin[3 + i] = (uint8_t)i;
	char *j = dec(AT, bin, sizeof(bin), 0);
	ck_assert_ptr_nonnull(strstr(j, "\"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIj"));
	ck_assert_ptr_nonnull(strstr(j, "+/w==\"}"));
	size_t n;
	uint8_t *b = enc(AT, j, &n);
	assert_bytes(b, n, bin, sizeof(bin), "standard base64");
	free(b);
	/* URL-safe, unpadded. */
	char *u = strdup(j);
	size_t o = 0;
	for (size_t i = 0; u[i]; i++) {
		if (u[i] == '=')
			continue;
		u[o++] = u[i] == '+' ? '-' : u[i] == '/' ? '_' : u[i];
	}
	u[o] = '\0';
	b = enc(AT, u, &n);
	assert_bytes(b, n, bin, sizeof(bin), "URL-safe base64 without padding");
	free(b);
	free(u);
	free(j);
}
END_TEST

START_TEST(every_accepted_input_form_reads_as_the_canonical_one)
{
	static const char *const cases[][2] = {
		/* names: json_name or proto name */
		{ "{\"f_int32\":12,\"f_renamed\":1}", "{\"fInt32\":12,\"customName\":1}" },
		/* integers as strings, with exponents, with .0 */
		{ "{\"fInt32\":\"-12\",\"fInt64\":1e3,\"fUint32\":1.0e2,\"fSint64\":\"-5E0\"}",
		    "{\"fInt32\":-12,\"fInt64\":\"1000\",\"fUint32\":100,\"fSint64\":\"-5\"}" },
		{ "{\"fUint64\":18446744073709551615,\"fSfixed64\":-9223372036854775808}",
		    "{\"fUint64\":\"18446744073709551615\",\"fSfixed64\":\"-"
		    "9223372036854775808\"}" },
		/* floats as strings, specials, rounding to float */
		{ "{\"fDouble\":\"1e-3\",\"fFloat\":\"NaN\",\"rDouble\":[\"Infinity\",\"-"
		  "Infinity\",5e-324]}",
		    "{\"fDouble\":0.001,\"fFloat\":\"NaN\",\"rDouble\":[\"Infinity\",\"-Infinity\","
		    "5e-324]}" },
		{ "{\"fFloat\":0.1,\"rFloat\":[3.40282347e+38,-1.17549435e-38]}",
		    "{\"fFloat\":0.1,\"rFloat\":[3.4028235e+38,-1.1754944e-38]}" },
		{ "{\"fDouble\":-0.0}", "{\"fDouble\":-0}" },
		/* enums by number, unknown numbers kept */
		{ "{\"fEnum\":2,\"rEnum\":[7,-1,\"BLUE\"]}",
		    "{\"fEnum\":\"GREEN\",\"rEnum\":[7,\"INFRARED\",\"BLUE\"]}" },
		/* implicit presence: zero values and nulls leave the field out */
		{ "{\"fInt32\":0,\"fString\":\"\",\"fBool\":false,\"fBytes\":\"\",\"fEnum\":"
		  "\"COLOR_UNSPECIFIED\","
		  "\"fDouble\":0,\"fNested\":null,\"rInt32\":[],\"mStringInt32\":{},\"wInt32\":"
		  "null,"
		  "\"tNull\":null,\"oString\":null}",
		    "{}" },
		/* explicit presence: zero values stay */
		{ "{\"optInt32\":0,\"optString\":\"\",\"oInt32\":0}",
		    "{\"oInt32\":0,\"optInt32\":0,\"optString\":\"\"}" },
		{ "{\"oString\":null,\"oNested\":{\"a\":0}}", "{\"oNested\":{}}" },
		/* strings: escapes, surrogate pairs, NUL */
		{ "{\"fString\":\"\\u00e9\\ud83d\\ude00\\u0000\\/\\b\\f\\r\"}",
		    "{\"fString\":\"\xc3\xa9\xf0\x9f\x98\x80\\u0000/\\b\\f\\r\"}" },
		/* maps: every key type */
		{ "{\"mBoolEnum\":{\"false\":\"RED\",\"true\":0},\"mInt64Nested\":{\"-"
		  "9223372036854775808\":{}},"
		  "\"mFixed32Bool\":{\"4294967295\":false},\"mSint64Double\":{\"0\":\"NaN\"}}",
		    "{\"mInt64Nested\":{\"-9223372036854775808\":{}},\"mBoolEnum\":{\"false\":"
		    "\"RED\","
		    "\"true\":\"COLOR_UNSPECIFIED\"},\"mSint64Double\":{\"0\":\"NaN\"},"
		    "\"mFixed32Bool\":{\"4294967295\":false}}" },
		/* well-known types */
		{ "{\"tTimestamp\":\"2024-01-02T03:04:05+01:30\",\"tDuration\":\"0.000000001s\"}",
		    "{\"tTimestamp\":\"2024-01-02T01:34:05Z\",\"tDuration\":\"0.000000001s\"}" },
		{ "{\"tTimestamp\":\"1970-01-01t00:00:00.1z\",\"tDuration\":\"-0.5s\","
		  "\"rTimestamp\":["
		  "\"2000-02-29T23:59:59.123456Z\",\"1969-12-31T23:59:59.999999999Z\"]}",
		    "{\"tTimestamp\":\"1970-01-01T00:00:00.100Z\",\"tDuration\":\"-0.500s\","
		    "\"rTimestamp\":["
		    "\"2000-02-29T23:59:59.123456Z\",\"1969-12-31T23:59:59.999999999Z\"]}" },
		{ "{\"tValue\":null,\"tStruct\":{\"a\":{\"b\":[1,\"x\",false,null,{},[]]},\"\":-2."
		  "5e-3}}",
		    "{\"tStruct\":{\"a\":{\"b\":[1,\"x\",false,null,{},[]]},\"\":-0.0025},"
		    "\"tValue\":null}" },
		{ "{\"wInt64\":\"7\",\"wUint32\":0,\"wBool\":true,\"wString\":\"\",\"wBytes\":"
		  "\"AA\",\"wFloat\":\"-Infinity\"}",
		    "{\"wFloat\":\"-Infinity\",\"wInt64\":\"7\",\"wUint32\":0,\"wBool\":true,"
		    "\"wString\":\"\","
		    "\"wBytes\":\"AA==\"}" },
		{ "{\"tMask\":\"a.fooBar,b\",\"tEmpty\":{},\"mValue\":{\"x\":[null]}}",
		    "{\"tMask\":\"a.fooBar,b\",\"tEmpty\":{},\"mValue\":{\"x\":[null]}}" },
		{ "{\"tMask\":\"\"}", "{\"tMask\":\"\"}" },
		{ "{\"tMask\":\"a\\\"\\u0001.b\"}", "{\"tMask\":\"a\\\"\\u0001.b\"}" },
		/* NullValue: 0 is null, another number an unknown value */
		{ "{\"tNull\":5,\"mValue\":{\"a\":null}}",
		    "{\"tNull\":5,\"mValue\":{\"a\":null}}" },
		/* proto2: presence for every singular field, a group */
		{ "{\"legacy\":{\"ok\":false,\"count\":0,\"item\":{}}}",
		    "{\"legacy\":{\"count\":0,\"item\":{},\"ok\":false}}" },
		/* white space everywhere */
		{ " \t\r\n{ \"fInt32\" : 1 , \"rInt32\" : [ 1 , 2 ] }\n",
		    "{\"fInt32\":1,\"rInt32\":[1,2]}" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		roundtrip(AT, cases[i][0], cases[i][1]);

	/* Well-known types at the root. */
	roundtrip("google.protobuf.Value", "[1,{\"a\":null}]", "[1,{\"a\":null}]");
	roundtrip("google.protobuf.Value", "null", "null");
	roundtrip(
	    ".google.protobuf.Timestamp", "\"2024-05-06T07:08:09Z\"", "\"2024-05-06T07:08:09Z\"");
	roundtrip("google.protobuf.Int64Value", "5", "\"5\"");
	roundtrip("google.protobuf.Struct", "{}", "{}");
	roundtrip("google.protobuf.ListValue", "[]", "[]");
	roundtrip("alltypes.Nested", "{}", "{}");
}
END_TEST

START_TEST(binary_follows_protobuf_merge_rules)
{
	/* last value of a singular scalar wins; an explicit zero in an
	 * implicit-presence field prints nothing */
	prints(AT, B(0x18, 0x01, 0x18, 0x02), "{\"fInt32\":2}");
	prints(AT, B(0x18, 0x00), "{}");
	/* -0.0 is not the default (its bits are not zero) */
	prints(AT, B(0x09, 0, 0, 0, 0, 0, 0, 0, 0x80), "{\"fDouble\":-0}");
	/* a varint longer than the type keeps the low 32 bits, as protobuf */
	prints(AT, B(0x18, 0xff, 0xff, 0xff, 0xff, 0x1f), "{\"fInt32\":-1}");
	/* packed and unpacked both read, for any repeated scalar */
	prints(AT, B(0xb8, 0x01, 0x05, 0xba, 0x01, 0x02, 0x06, 0x07, 0xb2, 0x02, 0x02, 0x01, 0x02),
	    "{\"rInt32\":[5,6,7],\"rInt32Unpacked\":[1,2]}");
	/* an empty packed run is no element */
	prints(AT, B(0xba, 0x01, 0x00), "{}");
	/* occurrences of a singular message merge */
	prints(AT, B(0x8a, 0x01, 0x02, 0x08, 0x01, 0x8a, 0x01, 0x03, 0x12, 0x01, 0x78),
	    "{\"fNested\":{\"a\":1,\"b\":\"x\"}}");
	/* the last member of a oneof wins, and a message member merges only
	 * what came after another member */
	prints(AT, B(0x9a, 0x03, 0x01, 0x61, 0xa0, 0x03, 0x05), "{\"oInt32\":5}");
	prints(AT,
	    B(0xaa, 0x03, 0x02, 0x08, 0x01, 0xa0, 0x03, 0x05, 0xaa, 0x03, 0x03, 0x12, 0x01, 0x79),
	    "{\"oNested\":{\"b\":\"y\"}}");
	/* a repeated map key: the last entry wins; a missing value is the
	 * default */
	prints(AT,
	    B(0xca, 0x02, 0x05, 0x0a, 0x01, 0x61, 0x10, 0x01, 0xca, 0x02, 0x05, 0x0a, 0x01, 0x62,
		0x10, 0x02, 0xca, 0x02, 0x05, 0x0a, 0x01, 0x61, 0x10, 0x03, 0xca, 0x02, 0x03, 0x0a,
		0x01, 0x63),
	    "{\"mStringInt32\":{\"b\":2,\"a\":3,\"c\":0}}");
	/* an empty entry: key and value defaults */
	prints(AT, B(0xda, 0x02, 0x00), "{\"mInt64Nested\":{\"0\":{}}}");
	/* Value: the last kind wins */
	prints("google.protobuf.Value", B(0x08, 0x00, 0x20, 0x01), "true");
	prints("google.protobuf.Value", (const uint8_t *)"", 0, "null");
}
END_TEST

/* ======================================================================
 * protoc
 * ====================================================================== */

START_TEST(bytes_equal_what_protoc_encodes)
{
	size_t want_len, n;
	uint8_t *want = load_fixture("alltypes_values.binpb", &want_len);
	uint8_t *got = enc(AT, ALLTYPES_JSON, &n);
	assert_bytes(got, n, want, want_len, "pbjson vs protoc --encode");
	prints(AT, want, want_len, ALLTYPES_JSON);
	free(got);
	free(want);
}
END_TEST

static void
encodes_to(const char *type, const char *json, const uint8_t *want, size_t wantlen)
{
	size_t n;
	uint8_t *got = enc(type, json, &n);
	assert_bytes(got, n, want, wantlen, json);
	free(got);
}

START_TEST(bytes_follow_the_encoding_rules)
{
	/* negative int32: sign-extended ten-byte varint */
	encodes_to(AT, "{\"fInt32\":-1}",
	    B(0x18, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01));
	/* sint32/sint64: zigzag */
	encodes_to(AT, "{\"fSint32\":-1,\"fSint64\":\"1\"}", B(0x38, 0x01, 0x40, 0x02));
	/* fixed-width types, little-endian */
	encodes_to(AT, "{\"fFloat\":1.5,\"fSfixed32\":-2}",
	    B(0x15, 0x00, 0x00, 0xc0, 0x3f, 0x5d, 0xfe, 0xff, 0xff, 0xff));
	/* proto3 repeated scalars packed, [packed = false] not */
	encodes_to(AT, "{\"rInt32\":[1,2,300],\"rInt32Unpacked\":[1,2]}",
	    B(0xba, 0x01, 0x04, 0x01, 0x02, 0xac, 0x02, 0xb0, 0x02, 0x01, 0xb0, 0x02, 0x02));
	/* a map entry has its key and value even when zero, as C++ writes */
	encodes_to(
	    AT, "{\"mStringInt32\":{\"a\":0}}", B(0xca, 0x02, 0x05, 0x0a, 0x01, 0x61, 0x10, 0x00));
	/* a oneof member and a proto3 optional are written when zero */
	encodes_to(AT, "{\"oInt32\":0,\"optBool\":false}", B(0xa0, 0x03, 0x00, 0x88, 0x04, 0x00));
	/* fields in number order whatever the JSON order */
	encodes_to(AT, "{\"fBool\":true,\"fInt32\":1}", B(0x18, 0x01, 0x68, 0x01));
	/* proto2: repeated unpacked unless [packed = true]; a group has
	 * start and end tags; zero values are written */
	encodes_to(AT,
	    "{\"legacy\":{\"packed\":[3,4],\"plain\":[1,2],\"item\":{\"x\":0},\"count\":0}}",
	    B(0xe2, 0x05, 0x0e, 0x08, 0x00, 0x18, 0x01, 0x18, 0x02, 0x22, 0x02, 0x03, 0x04, 0x2b,
		0x30, 0x00, 0x2c));
	/* Value kinds */
	encodes_to("google.protobuf.Value", "null", B(0x08, 0x00));
	encodes_to("google.protobuf.Value", "false", B(0x20, 0x00));
	encodes_to("google.protobuf.Value", "[\"a\"]", B(0x32, 0x05, 0x0a, 0x03, 0x1a, 0x01, 0x61));
	/* an empty message is no bytes at all */
	size_t n = 99;
	uint8_t *b = enc(AT, "{}", &n);
	ck_assert_ptr_null(b);
	ck_assert_uint_eq(n, 0);
}
END_TEST

/* ======================================================================
 * unknown
 * ====================================================================== */

START_TEST(unknown_binary_fields_print_under_at_unknown_and_read_back)
{
	static const uint8_t bin[] = {
		0x18, 0x01,             /* fInt32: 1 */
		0x08, 0x07,             /* field 1 (a double) as varint */
		0xc0, 0x3e, 0x96, 0x01, /* 1000 varint 150 */
		0xc9, 0x3e, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, /* 1001 fixed64 */
		0xd2, 0x3e, 0x02, 0x68, 0x69,                               /* 1002 bytes "hi" */
		0xdb, 0x3e, 0x08, 0x01, 0xdc, 0x3e, /* 1003 group { 1: 1 } */
		0xe5, 0x3e, 0xff, 0xff, 0xff, 0xff, /* 1004 fixed32 */
	};
	static const char want[] =
	    "{\"fInt32\":1,\"@unknown\":[{\"field\":1,\"wire\":\"varint\",\"value\":\"7\"},"
	    "{\"field\":1000,\"wire\":\"varint\",\"value\":\"150\"},"
	    "{\"field\":1001,\"wire\":\"fixed64\",\"value\":\"18446744073709551615\"},"
	    "{\"field\":1002,\"wire\":\"bytes\",\"value\":\"aGk=\"},"
	    "{\"field\":1003,\"wire\":\"group\",\"value\":\"CAE=\"},"
	    "{\"field\":1004,\"wire\":\"fixed32\",\"value\":4294967295}]}";
	prints(AT, bin, sizeof(bin), want);
	/* known fields first, then the unknown ones in their order: the same
	 * bytes */
	encodes_to(AT, want, bin, sizeof(bin));

	/* In nested messages too, with the path kept. */
	static const uint8_t nested[] = { 0x8a, 0x01, 0x04, 0x08, 0x01, 0x28, 0x09 };
	prints(AT, nested, sizeof(nested),
	    "{\"fNested\":{\"a\":1,\"@unknown\":[{\"field\":5,\"wire\":\"varint\",\"value\":\"9\"}]"
	    "}}");
	encodes_to(AT,
	    "{\"fNested\":{\"a\":1,\"@unknown\":[{\"field\":5,\"wire\":\"varint\",\"value\":\"9\"}]"
	    "}}",
	    nested, sizeof(nested));

	/* proto2 extensions are unknown fields here. */
	prints(AT, B(0xe2, 0x05, 0x03, 0xa0, 0x06, 0x2a),
	    "{\"legacy\":{\"@unknown\":[{\"field\":100,\"wire\":\"varint\",\"value\":\"42\"}]}}");
}
END_TEST

START_TEST(at_unknown_entries_are_checked)
{
	jrefused("{\"@unknown\":[{\"field\":3,\"wire\":\"varint\",\"value\":\"1\"}]}", SAGA_EINVAL,
	    "@unknown[0]: field 3 is fInt32 of alltypes.AllTypes: give it by name");
	jrefused("{\"@unknown\":[{\"field\":0,\"wire\":\"varint\",\"value\":\"1\"}]}", SAGA_EINVAL,
	    "@unknown[0]: expected a field number from 1 to 536870911, got 0");
	jrefused("{\"@unknown\":[{\"field\":9,\"wire\":\"nibble\",\"value\":\"1\"}]}", SAGA_EINVAL,
	    "@unknown[0]: expected wire \"varint\"");
	jrefused("{\"@unknown\":[{\"field\":999,\"wire\":\"fixed32\",\"value\":4294967296}]}",
	    SAGA_EINVAL, "@unknown[0].value: 4294967296 is out of range for fixed32");
	jrefused("{\"@unknown\":[{\"field\":9,\"wire\":\"group\",\"value\":\"DA==\"}]}",
	    SAGA_EINVAL, "@unknown[0].value: group content holds an unmatched end-group tag");
	jrefused("{\"@unknown\":[{\"field\":9,\"wire\":\"group\",\"value\":\"CA==\"}]}",
	    SAGA_EINVAL, "@unknown[0].value: truncated varint field 1");
	jrefused("{\"@unknown\":[{\"field\":9,\"wire\":\"bytes\"}]}", SAGA_EINVAL,
	    "@unknown[0]: an unknown-field entry needs field, wire and value");
}
END_TEST

/* ======================================================================
 * errors
 * ====================================================================== */

START_TEST(bad_json_is_refused_with_its_path)
{
	/* wrong JSON type */
	jrefused(
	    "{\"rNested\":[{},{\"b\":5}]}", SAGA_EINVAL, "rNested[1].b: expected a string, got 5");
	jrefused("{\"fDouble\":\"abc\"}", SAGA_EINVAL,
	    "fDouble: expected a number (or \"NaN\", \"Infinity\", \"-Infinity\"), got \"abc\"");
	jrefused("{\"fBool\":1}", SAGA_EINVAL, "fBool: expected true or false, got 1");
	jrefused("{\"fNested\":[]}", SAGA_EINVAL,
	    "fNested: expected an object for alltypes.Nested, got an array");
	jrefused("{\"rInt32\":5}", SAGA_EINVAL, "rInt32: expected an array, got 5");
	jrefused(
	    "{\"mStringInt32\":[]}", SAGA_EINVAL, "mStringInt32: expected an object, got an array");
	jrefused("{\"fInt32\":true}", SAGA_EINVAL, "fInt32: expected an integer, got true");
	jrefused("[]", SAGA_EINVAL, "expected an object for alltypes.AllTypes, got an array");
	/* integers out of range or not whole */
	jrefused("{\"fInt32\":2147483648}", SAGA_EINVAL,
	    "fInt32: 2147483648 is out of range for int32 (-2147483648 to 2147483647)");
	jrefused("{\"fUint32\":-1}", SAGA_EINVAL, "fUint32: -1 is out of range for uint32");
	jrefused("{\"fInt64\":\"9223372036854775808\"}", SAGA_EINVAL,
	    "fInt64: \"9223372036854775808\" is out of range for int64");
	jrefused("{\"fUint64\":1e20}", SAGA_EINVAL, "fUint64: 1e20 is out of range for uint64");
	jrefused("{\"rSint32\":[1,1.5]}", SAGA_EINVAL,
	    "rSint32[1]: expected an integer, got 1.5 (not a whole number)");
	jrefused("{\"fInt32\":\" 1\"}", SAGA_EINVAL, "fInt32: expected an integer, got \" 1\"");
	jrefused("{\"fFloat\":1e39}", SAGA_EINVAL, "fFloat: 1e39 is out of range for float");
	jrefused("{\"fDouble\":1e400}", SAGA_EINVAL, "fDouble: 1e400 is out of range for double");
	jrefused(
	    "{\"fEnum\":2147483648}", SAGA_EINVAL, "fEnum: 2147483648 is out of range for enum");
	/* bad base64 */
	jrefused("{\"fBytes\":\"YW=j\"}", SAGA_EINVAL,
	    "fBytes: invalid base64 at character 2 of \"YW=j\"");
	jrefused("{\"rBytes\":[\"\",\"Y\"]}", SAGA_EINVAL, "rBytes[1]: invalid base64");
	jrefused("{\"fBytes\":\"YQ=\"}", SAGA_EINVAL, "fBytes: invalid base64");
	jrefused("{\"wBytes\":\"a b\"}", SAGA_EINVAL, "wBytes: invalid base64 at character 1");
	/* unknown keys, listing the type's fields */
	jrefused("{\"nope\":1}", SAGA_EINVAL,
	    "unknown field \"nope\" in alltypes.AllTypes (its fields: fDouble, fFloat, fInt32,");
	jrefused("{\"fNested\":{\"child\":{\"zz\":1}}}", SAGA_EINVAL,
	    "fNested.child: unknown field \"zz\" in alltypes.Nested (its fields: a, b, child)");
	jrefused("{\"FInt32\":1}", SAGA_EINVAL, "unknown field \"FInt32\"");
	/* enums */
	jrefused("{\"rEnum\":[\"RED\",\"PURPLE\"]}", SAGA_EINVAL,
	    "rEnum[1]: unknown value \"PURPLE\" for enum alltypes.Color (expected one of "
	    "COLOR_UNSPECIFIED, RED, GREEN, BLUE, INFRARED, or a number)");
	jrefused("{\"fEnum\":\"red\"}", SAGA_EINVAL, "fEnum: unknown value \"red\"");
	/* maps */
	jrefused("{\"mInt32String\":{\"1\":\"a\",\"x\":\"y\"}}", SAGA_EINVAL,
	    "mInt32String[\"x\"]: map key \"x\" is not a valid int32 key");
	jrefused("{\"mInt32String\":{\"01\":\"a\"}}", SAGA_EINVAL,
	    "mInt32String[\"01\"]: map key \"01\"");
	jrefused("{\"mBoolEnum\":{\"True\":\"RED\"}}", SAGA_EINVAL,
	    "mBoolEnum[\"True\"]: map key \"True\" is not true or false");
	jrefused("{\"mStringInt32\":{\"k\":\"v\"}}", SAGA_EINVAL,
	    "mStringInt32[\"k\"]: expected an integer, got \"v\"");
	jrefused("{\"mStringInt32\":{\"k\":null}}", SAGA_EINVAL,
	    "mStringInt32[\"k\"]: null is not a valid map value");
	jrefused("{\"mInt64Nested\":{\"1\":{\"a\":\"b\"}}}", SAGA_EINVAL,
	    "mInt64Nested[\"1\"].a: expected an integer");
	/* oneof, duplicates, nulls */
	jrefused("{\"oString\":\"a\",\"oInt32\":1}", SAGA_EINVAL,
	    "\"oString\" and \"oInt32\" are both set, but oneof choice takes one");
	jrefused("{\"f_int32\":1,\"fInt32\":2}", SAGA_EINVAL,
	    "field fInt32 is given twice (as \"f_int32\" and \"fInt32\")");
	jrefused("{\"rInt32\":[1,null]}", SAGA_EINVAL,
	    "rInt32[1]: null is not allowed in a repeated field");
	/* well-known types */
	jrefused("{\"tTimestamp\":\"2023-02-29T00:00:00Z\"}", SAGA_EINVAL,
	    "tTimestamp: expected an RFC 3339 timestamp");
	jrefused("{\"rTimestamp\":[\"10000-01-01T00:00:00Z\"]}", SAGA_EINVAL,
	    "rTimestamp[0]: expected an RFC 3339");
	jrefused("{\"tTimestamp\":\"0001-01-01T00:00:00+00:01\"}", SAGA_EINVAL,
	    "tTimestamp: expected an RFC 3339");
	jrefused("{\"tTimestamp\":\"2024-01-01T00:00:00.1234567890Z\"}", SAGA_EINVAL, "tTimestamp");
	jrefused(
	    "{\"tDuration\":\"1.5\"}", SAGA_EINVAL, "tDuration: expected a duration like \"1.5s\"");
	jrefused(
	    "{\"tDuration\":\"315576000001s\"}", SAGA_EINVAL, "tDuration: expected a duration");
	jrefused("{\"wInt32\":\"x\"}", SAGA_EINVAL, "wInt32: expected an integer, got \"x\"");
	jrefused("{\"tStruct\":[]}", SAGA_EINVAL, "tStruct: expected an object, got an array");
	jrefused("{\"tStruct\":{\"a\":{\"b\":1e999}}}", SAGA_EINVAL,
	    "tStruct[\"a\"][\"b\"]: 1e999 is out of range");
	jrefused("{\"tMask\":\"foo_bar\"}", SAGA_EINVAL,
	    "tMask: expected lowerCamelCase FieldMask paths");
	jrefused("{\"tMask\":\"a,,b\"}", SAGA_EINVAL, "tMask: expected a FieldMask string");
	jrefused("{\"tAny\":{}}", SAGA_EINVAL, "tAny: google.protobuf.Any is not supported");
	/* proto2 group path */
	jrefused("{\"legacy\":{\"item\":{\"x\":\"a\"}}}", SAGA_EINVAL,
	    "legacy.item.x: expected an integer");
	/* unknown type */
	json_refused("no.Such", "{}", 2, SAGA_ENOTFOUND,
	    "message type no.Such is not in the descriptor set");
}
END_TEST

START_TEST(invalid_json_text_is_refused_with_line_and_column)
{
	jrefused("", SAGA_EINVAL, "invalid JSON at line 1, column 1: expected a value");
	jrefused("{\"fInt32\":1,}", SAGA_EINVAL,
	    "invalid JSON at line 1, column 13: expected a key string");
	jrefused("{\n\"fInt32\": 01}", SAGA_EINVAL,
	    "invalid JSON at line 2, column 11: malformed number");
	jrefused("{\"fInt32\": 1 2}", SAGA_EINVAL,
	    "invalid JSON at line 1, column 14: expected ',' or '}'");
	jrefused("{} x", SAGA_EINVAL, "unexpected text after the value");
	jrefused("{\"a\":1,\"a\":2}", SAGA_EINVAL, "duplicate key \"a\"");
	jrefused("{\"fString\":\"a\nb\"}", SAGA_EINVAL, "control character in a string");
	jrefused("{\"fString\":\"\\x\"}", SAGA_EINVAL, "invalid escape");
	jrefused("{\"fString\":\"\\u12\"}", SAGA_EINVAL, "invalid \\u escape");
	jrefused("{\"fString\":\"\\ud800\"}", SAGA_EINVAL, "unpaired surrogate");
	jrefused("{\"fString\":\"\\udc00\\ud800\"}", SAGA_EINVAL, "unpaired surrogate");
	jrefused("{\"fString\":\"abc", SAGA_EINVAL, "unterminated string");
	jrefused("{\"fInt32\":-}", SAGA_EINVAL, "malformed number");
	jrefused("{\"fBool\":tru}", SAGA_EINVAL, "unexpected character");
	jrefused("{\"fDouble\":NaN}", SAGA_EINVAL, "unexpected character");
	/* invalid UTF-8: a lone continuation byte, an overlong form, an
	 * encoded surrogate, a truncated sequence, past U+10FFFF */
	static const char *const bad_utf8[] = {
		"{\"fString\":\"a\x80\"}",
		"{\"fString\":\"\xc0\xaf\"}",
		"{\"fString\":\"\xed\xa0\x80\"}",
		"{\"fString\":\"\xe2\x82\"}",
		"{\"fString\":\"\xf4\x90\x80\x80\"}",
		"{\"f\xff\":1}",
	};
	for (size_t i = 0; i < sizeof(bad_utf8) / sizeof(bad_utf8[0]); i++)
		jrefused(bad_utf8[i], SAGA_EINVAL, "invalid UTF-8 in a string");
	/* a NUL in the text is not white space */
	json_refused(AT, "{}\0", 3, SAGA_EINVAL, "unexpected text after the value");
}
END_TEST

START_TEST(bad_bytes_are_refused_with_path_and_offset)
{
	bin_refused(AT, B(0x18), SAGA_EPROTO, "truncated varint field 3 at byte 0");
	bin_refused(AT, B(0x18, 0x01, 0x72, 0x05, 0x61), SAGA_EPROTO,
	    "truncated length-delimited field 14 at byte 2");
	bin_refused(AT, B(0x09, 0x01, 0x02), SAGA_EPROTO, "truncated fixed64 field 1");
	bin_refused(AT, B(0x15, 0x01), SAGA_EPROTO, "truncated fixed32 field 2");
	bin_refused(AT, B(0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff),
	    SAGA_EPROTO, "malformed tag at byte 0");
	bin_refused(AT, B(0x0f), SAGA_EPROTO, "invalid wire type 7");
	bin_refused(AT, B(0x00), SAGA_EPROTO, "invalid field number 0 at byte 0");
	bin_refused(AT, B(0x0c), SAGA_EPROTO, "unexpected end-group tag");
	bin_refused(AT, B(0x0b, 0x14), SAGA_EPROTO, "malformed group field 1");
	bin_refused(AT, B(0x0b, 0x08), SAGA_EPROTO, "malformed group field 1");
	/* nested: the path says where */
	bin_refused(AT, B(0x8a, 0x01, 0x05, 0x1a, 0x03, 0x08, 0x01, 0x1a), SAGA_EPROTO,
	    "fNested.child: truncated length-delimited field 3 at byte 7");
	bin_refused(AT, B(0x8a, 0x01, 0x06, 0x1a, 0x04, 0x12, 0x02, 0xc3, 0x28), SAGA_EPROTO,
	    "fNested.child.b: invalid UTF-8 in a string at byte 7");
	bin_refused(AT, B(0x72, 0x03, 0xed, 0xa0, 0x80), SAGA_EPROTO, "fString: invalid UTF-8");
	bin_refused(AT, B(0x92, 0x02, 0x01, 0x61, 0x92, 0x02, 0x01, 0xff), SAGA_EPROTO,
	    "rString[1]: invalid UTF-8 in a string at byte 7");
	bin_refused(AT, B(0xca, 0x02, 0x03, 0x0a, 0x01, 0xff), SAGA_EPROTO,
	    "mStringInt32[0]: invalid UTF-8 in a map key at byte 5");
	bin_refused(AT, B(0xd2, 0x02, 0x05, 0x08, 0x01, 0x12, 0x01, 0xff), SAGA_EPROTO,
	    "mInt32String[\"1\"]: invalid UTF-8 in a string at byte 7");
	/* packed runs */
	bin_refused(AT, B(0xea, 0x01, 0x03, 0x01, 0x02, 0x03), SAGA_EPROTO,
	    "rFixed32: packed field of 3 bytes is not a whole number of 4-byte values");
	bin_refused(
	    AT, B(0xba, 0x01, 0x02, 0x01, 0x80), SAGA_EPROTO, "rInt32[1]: malformed packed field");
	/* well-known types out of their range */
	bin_refused(AT, B(0xba, 0x04, 0x06, 0x10, 0xff, 0xff, 0xff, 0xff, 0x0f), SAGA_EPROTO,
	    "tTimestamp: Timestamp out of range (seconds 0, nanos -1;");
	bin_refused(AT, B(0xc2, 0x04, 0x08, 0x08, 0x01, 0x10, 0xff, 0xff, 0xff, 0xff, 0x0f),
	    SAGA_EPROTO, "tDuration: Duration out of range (seconds 1, nanos -1;");
	bin_refused(AT, B(0x9a, 0x05, 0x09, 0x11, 0, 0, 0, 0, 0, 0, 0xf8, 0x7f), SAGA_EINVAL,
	    "tValue: google.protobuf.Value holds NaN, which JSON cannot show");
	bin_refused(
	    AT, B(0xb2, 0x05, 0x00), SAGA_EINVAL, "tAny: google.protobuf.Any is not supported");
	bin_refused(AT, B(0xaa, 0x05, 0x03, 0x0a, 0x01, 0x5f), SAGA_EPROTO,
	    "tMask: FieldMask path \"_\" (at byte 5) has no lowerCamelCase JSON form");
	/* unknown type */
	bin_refused("alltypes.Nope", (const uint8_t *)"", 0, SAGA_ENOTFOUND,
	    "message type alltypes.Nope is not in");
}
END_TEST

/* ======================================================================
 * limits
 * ====================================================================== */

/* alltypes.Nested with `levels` messages in all (child = field 3). */
static uint8_t *
nested_bytes(int levels, size_t *len)
{
	size_t cap = 4 * (size_t)levels + 16, n = 0;
	uint8_t *b = xmalloc(cap), *t = xmalloc(cap);
	for (int i = 1; i < levels; i++) {
		size_t k = 0;
		t[k++] = 0x1a;
		size_t l = n;
		do {
			t[k++] = (uint8_t)((l & 0x7f) | (l >= 0x80 ? 0x80 : 0));
			l >>= 7;
		} while (l > 0);
		memcpy(t + k, b, n);
		n += k;
		memcpy(b, t, n);
	}
	free(t);
	*len = n;
	return b;
}

static char *
nested_json(int levels)
{
	size_t cap = 12 * (size_t)levels + 8, o = 0;
	char *s = xmalloc(cap);
	for (int i = 1; i < levels; i++, o += 9)
		memcpy(s + o, "{\"child\":", 9);
	memcpy(s + o, "{}", 2);
	o += 2;
	for (int i = 1; i < levels; i++)
		s[o++] = '}';
	s[o] = '\0';
	return s;
}

START_TEST(nesting_deeper_than_100_levels_is_refused_both_ways)
{
	size_t n, bl;
	/* 100 levels: fine both ways, and the same bytes. */
	char *j = nested_json(PBJSON_MAX_DEPTH);
	uint8_t *b = enc("alltypes.Nested", j, &n);
	uint8_t *want = nested_bytes(PBJSON_MAX_DEPTH, &bl);
	assert_bytes(b, n, want, bl, "100 levels");
	char *back = dec("alltypes.Nested", b, n, 1);
	free(back);
	free(b);
	free(want);
	free(j);
	/* 101 levels: refused, the path shows where. */
	j = nested_json(PBJSON_MAX_DEPTH + 1);
	json_refused("alltypes.Nested", j, strlen(j), SAGA_ETOOBIG,
	    "child.child: messages nest deeper than 100 levels");
	free(j);
	b = nested_bytes(PBJSON_MAX_DEPTH + 1, &bl);
	bin_refused("alltypes.Nested", b, bl, SAGA_ETOOBIG, "messages nest deeper than 100 levels");
	free(b);
	/* Far deeper JSON stops in the parser, without recursing. */
	size_t deep = 1000000;
	char *arr = xmalloc(2 * deep);
	memset(arr, '[', deep);
	memset(arr + deep, ']', deep);
	json_refused("google.protobuf.Value", arr, 2 * deep, SAGA_ETOOBIG, "nested too deeply");
	free(arr);
	/* Struct: each JSON level is three message levels. */
	char *s = xmalloc(8 * 40 + 8);
	size_t o = 0;
	for (int i = 0; i < 40; i++)
		o += (size_t)sprintf(s + o, "{\"a\":");
	o += (size_t)sprintf(s + o, "1");
	for (int i = 0; i < 40; i++)
		s[o++] = '}';
	s[o] = '\0';
	json_refused("google.protobuf.Struct", s, o, SAGA_ETOOBIG, "messages nest deeper than 100");
	free(s);
	/* Nested groups in an unknown field. */
	uint8_t *g = xmalloc(4000);
	for (int i = 0; i < 2000; i++) {
		g[i] = 0x4b; /* field 9, start group */
		g[3999 - i] = 0x4c;
	}
	bin_refused(AT, g, 4000, SAGA_ETOOBIG, "groups nest deeper than 100 levels");
	free(g);
}
END_TEST

START_TEST(a_set_without_its_imports_fails_only_where_a_missing_type_is_used)
{
	pbjson *p = load_pool("alltypes_noimports.binpb");
	char err[ERRLEN], *out = NULL;
	uint8_t *bin = NULL;
	size_t n = 0;
	ck_assert_int_eq(
	    pbjson_from_json(p, AT, "{\"fInt32\":1}", 12, &bin, &n, err, sizeof(err)), 0);
	ck_assert_int_eq(pbjson_to_json(p, AT, bin, n, 0, &out, err, sizeof(err)), 0);
	ck_assert_str_eq(out, "{\"fInt32\":1}");
	free(out);
	free(bin);
	const char *j = "{\"tTimestamp\":\"2024-01-01T00:00:00Z\"}";
	ck_assert_int_eq(
	    pbjson_from_json(p, AT, j, strlen(j), &bin, &n, err, sizeof(err)), SAGA_ENOTFOUND);
	ck_assert_str_eq(err,
	    "tTimestamp: type google.protobuf.Timestamp of field t_timestamp is not in the "
	    "descriptor set (compile with --include_imports)");
	static const uint8_t legacy[] = { 0xe2, 0x05, 0x00 };
	ck_assert_int_eq(pbjson_to_json(p, AT, legacy, sizeof(legacy), 0, &out, err, sizeof(err)),
	    SAGA_ENOTFOUND);
	ck_assert_ptr_nonnull(strstr(err, "legacy: type alltypes.p2.Legacy of field legacy"));
	ck_assert(!pbjson_has_message(p, "google.protobuf.Timestamp"));
	pbjson_free(p);
}
END_TEST

START_TEST(the_api_checks_its_arguments_and_descriptor_sets)
{
	char err[ERRLEN], *out = (char *)1;
	uint8_t *bin = (uint8_t *)1;
	size_t n = 9;
	pbjson *p = (pbjson *)1;
	/* Not a descriptor set. */
	static const uint8_t garbage[] = { 0x0a, 0x05, 0x01 };
	ck_assert_int_eq(pbjson_new(garbage, sizeof(garbage), &p, err, sizeof(err)), SAGA_EPROTO);
	ck_assert_ptr_null(p);
	ck_assert_ptr_nonnull(strstr(err, "not a FileDescriptorSet"));
	ck_assert_int_eq(pbjson_new(NULL, 0, NULL, NULL, 0), SAGA_EINVAL);
	/* A field number used twice: file { message_type { name: "M"
	 * field { name: "a" number: 1 type: INT32 } field { name: "b"
	 * number: 1 type: INT32 } } } */
	static const uint8_t dup[] = { 0x0a, 0x19, 0x22, 0x17, 0x0a, 0x01, 0x4d, 0x12, 0x09, 0x0a,
		0x01, 0x61, 0x18, 0x01, 0x28, 0x05, 0x20, 0x01, 0x12, 0x07, 0x0a, 0x01, 0x62, 0x18,
		0x01, 0x28, 0x05 };
	ck_assert_int_eq(pbjson_new(dup, sizeof(dup), &p, err, sizeof(err)), SAGA_EPROTO);
	ck_assert_str_eq(err, "message M: field number 1 used twice");
	/* The empty set is a set, with no types. */
	ck_assert_int_eq(pbjson_new(NULL, 0, &p, err, sizeof(err)), 0);
	ck_assert(!pbjson_has_message(p, "alltypes.AllTypes"));
	ck_assert_int_eq(
	    pbjson_to_json(p, "x", NULL, 0, 0, &out, err, sizeof(err)), SAGA_ENOTFOUND);
	ck_assert_ptr_null(out);
	pbjson_free(p);
	pbjson_free(NULL);

	ck_assert(pbjson_has_message(P, "alltypes.AllTypes"));
	ck_assert(pbjson_has_message(P, ".alltypes.AllTypes"));
	ck_assert(pbjson_has_message(P, "alltypes.p2.Legacy.Item"));
	ck_assert(!pbjson_has_message(P, "alltypes.Color"));
	ck_assert(!pbjson_has_message(NULL, "alltypes.AllTypes"));
	ck_assert_int_eq(
	    pbjson_to_json(P, AT, NULL, 0, PBJSON_MAX_INDENT + 1, &out, err, sizeof(err)),
	    SAGA_EINVAL);
	ck_assert_int_eq(pbjson_to_json(P, AT, NULL, 0, -1, &out, NULL, 0), SAGA_EINVAL);
	ck_assert_int_eq(pbjson_to_json(P, AT, NULL, 5, 0, &out, NULL, 0), SAGA_EINVAL);
	ck_assert_int_eq(pbjson_from_json(P, AT, "{}", 2, NULL, &n, NULL, 0), SAGA_EINVAL);
	ck_assert_int_eq(pbjson_from_json(P, NULL, "{}", 2, &bin, &n, NULL, 0), SAGA_EINVAL);
	/* err may be NULL, and a short one is cut but terminated. */
	ck_assert_int_eq(pbjson_from_json(P, AT, "{\"x\":1}", 7, &bin, &n, NULL, 0), SAGA_EINVAL);
	char small[8];
	ck_assert_int_eq(
	    pbjson_from_json(P, AT, "{\"x\":1}", 7, &bin, &n, small, sizeof(small)), SAGA_EINVAL);
	ck_assert_str_eq(small, "unknown");
	/* The JSON need not be NUL-terminated: only len bytes are read. */
	ck_assert_int_eq(
	    pbjson_from_json(P, AT, "{\"fInt32\":1}garbage", 12, &bin, &n, err, sizeof(err)), 0);
	ck_assert_uint_eq(n, 2);
	free(bin);
}
END_TEST

/* sagad removes sensitive fields from what it shows and lists their proto
 * paths; pbjson_to_json_redacted marks each where it belongs. */
START_TEST(redacted_fields_print_as_marks_where_they_belong)
{
	/* fString "x", fNested { a: 1 } (its b was removed) */
	static const uint8_t bin[] = { 0x72, 0x01, 'x', 0x8a, 0x01, 0x02, 0x08, 0x01 };
	static const char *const paths[] = { "f_bytes", "f_nested.b", "f_nested.child.b",
		"no_such_field" };
	char *out = NULL, err[ERRLEN];
	ck_assert_int_eq(
	    pbjson_to_json_redacted(P, AT, bin, sizeof(bin), 0, paths, 4, &out, err, sizeof(err)),
	    0);
	ck_assert_str_eq(out,
	    "{\"fString\":\"x\",\"fBytes\":\"[redacted]\",\"fNested\":{\"a\":1,"
	    "\"b\":\"[redacted]\"}}");
	free(out);
	/* a whole message field */
	static const char *const whole[] = { "f_nested" };
	ck_assert_int_eq(
	    pbjson_to_json_redacted(P, AT, bin, 3, 0, whole, 1, &out, err, sizeof(err)), 0);
	ck_assert_str_eq(out, "{\"fString\":\"x\",\"fNested\":\"[redacted]\"}");
	free(out);
	/* none: the same as pbjson_to_json */
	ck_assert_int_eq(
	    pbjson_to_json_redacted(P, AT, bin, sizeof(bin), 0, NULL, 0, &out, err, sizeof(err)),
	    0);
	ck_assert_str_eq(out, "{\"fString\":\"x\",\"fNested\":{\"a\":1}}");
	free(out);
}
END_TEST

static Suite *
pbjson_suite(void)
{
	Suite *s = suite_create("pbjson");
	struct {
		const char *name;
		const TTest *tests[6];
	} cases[] = {
		{ "roundtrip",
		    { every_field_type_with_edge_values_round_trips,
			bytes_with_all_256_values_round_trip_in_both_base64_alphabets,
			every_accepted_input_form_reads_as_the_canonical_one,
			binary_follows_protobuf_merge_rules } },
		{ "protoc", { bytes_equal_what_protoc_encodes, bytes_follow_the_encoding_rules } },
		{ "unknown",
		    { unknown_binary_fields_print_under_at_unknown_and_read_back,
			at_unknown_entries_are_checked,
			redacted_fields_print_as_marks_where_they_belong } },
		{ "errors",
		    { bad_json_is_refused_with_its_path,
			invalid_json_text_is_refused_with_line_and_column,
			bad_bytes_are_refused_with_path_and_offset } },
		{ "limits",
		    { nesting_deeper_than_100_levels_is_refused_both_ways,
			a_set_without_its_imports_fails_only_where_a_missing_type_is_used,
			the_api_checks_its_arguments_and_descriptor_sets } },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		TCase *tc = tcase_create(cases[i].name);
		tcase_add_checked_fixture(tc, setup, teardown);
		tcase_set_timeout(tc, 60);
		for (size_t k = 0; k < 6 && cases[i].tests[k] != NULL; k++)
			tcase_add_test(tc, cases[i].tests[k]);
		suite_add_tcase(s, tc);
	}
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(pbjson_suite());
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
