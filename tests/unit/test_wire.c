/* Unit tests of proto/wire.c: bounded decoding, UUIDs, the refusal of
 * invalid UTF-8 (the UTF-8 code itself: test_common.c). */
#include <check.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "saga.h"
#include "wire.h"

START_TEST(roundtrip_request_decodes_to_same_fields)
{
	Sagawire__Request req = SAGAWIRE__REQUEST__INIT;
	Sagawire__StartRequest st = SAGAWIRE__START_REQUEST__INIT;
	st.definition = "shop.OrderSaga";
	st.idempotency_key = "k1";
	req.body_case = SAGAWIRE__REQUEST__BODY_START;
	req.start = &st;
	uint8_t buf[256];
	size_t n = sagawire__request__pack(&req, buf);
	int err = 0;
	Sagawire__Request *out = wire_unpack_request(buf, n, &err);
	ck_assert_ptr_nonnull(out);
	ck_assert_int_eq(out->body_case, SAGAWIRE__REQUEST__BODY_START);
	ck_assert_str_eq(out->start->definition, "shop.OrderSaga");
	ck_assert_str_eq(out->start->idempotency_key, "k1");
	wire_free(&out->base);
}
END_TEST

START_TEST(truncated_message_is_refused_as_malformed)
{
	Sagawire__Request req = SAGAWIRE__REQUEST__INIT;
	Sagawire__StartRequest st = SAGAWIRE__START_REQUEST__INIT;
	st.definition = "shop.OrderSaga";
	req.body_case = SAGAWIRE__REQUEST__BODY_START;
	req.start = &st;
	uint8_t buf[256];
	size_t n = sagawire__request__pack(&req, buf);
	for (size_t cut = 1; cut < n; cut++) {
		int err = 0;
		Sagawire__Request *out = wire_unpack_request(buf, cut, &err);
		ck_assert_ptr_null(out);
		ck_assert_int_eq(err, SAGA_EPROTO);
	}
}
END_TEST

/* A chain of nested length-delimited fields 1 (Request.register is field 10,
 * but an unknown field carrying nested bytes is skipped without recursion;
 * the dangerous case is a schema-recursive type: DescriptorProto). */
START_TEST(deep_nesting_is_refused_before_unpack)
{
	/* Build DescriptorProto { nested_type(3) { nested_type { ... } } } */
	size_t depth = 5000;
	size_t cap = depth * 8 + 16;
	uint8_t *buf = malloc(cap);
	uint8_t *tmp = malloc(cap);
	size_t len = 0;
	for (size_t i = 0; i < depth; i++) {
		/* wrap current buf as field 3, wire type 2 */
		size_t hdr = 0;
		tmp[hdr++] = (3 << 3) | 2;
		size_t v = len;
		do {
			uint8_t b = v & 0x7f;
			v >>= 7;
			tmp[hdr++] = b | (v ? 0x80 : 0);
		} while (v);
		memcpy(tmp + hdr, buf, len);
		len += hdr;
		memcpy(buf, tmp, len);
	}
	extern const ProtobufCMessageDescriptor google__protobuf__descriptor_proto__descriptor;
	int err = 0;
	ProtobufCMessage *m =
	    wire_unpack(&google__protobuf__descriptor_proto__descriptor, buf, len, 0, &err);
	ck_assert_ptr_null(m);
	ck_assert_int_eq(err, SAGA_ETOOBIG);
	free(buf);
	free(tmp);
}
END_TEST

START_TEST(allocation_quota_stops_blowup)
{
	/* 20000 empty repeated submessages: tiny on the wire, large unpacked. */
	size_t n = 20000;
	uint8_t *buf = malloc(n * 2);
	for (size_t i = 0; i < n; i++) {
		buf[2 * i] = (1 << 3) | 2; /* WorkBatch.dispatches */
		buf[2 * i + 1] = 0;
	}
	int err = 0;
	ProtobufCMessage *m =
	    wire_unpack(&sagawire__work_batch__descriptor, buf, n * 2, 4096, &err);
	ck_assert_ptr_null(m);
	ck_assert_int_eq(err, SAGA_ETOOBIG);
	m = wire_unpack(&sagawire__work_batch__descriptor, buf, n * 2, 16u << 20, &err);
	ck_assert_ptr_nonnull(m);
	ck_assert_uint_eq(((Sagawire__WorkBatch *)m)->n_dispatches, n);
	wire_free(m);
	free(buf);
}
END_TEST

START_TEST(uuid_format_parse_roundtrip_and_v7_order)
{
	uint8_t a[16], b[16], c[16];
	char s[WIRE_UUID_STRLEN];
	wire_uuid_v7(a);
	wire_uuid_format(a, s);
	ck_assert_uint_eq(strlen(s), 36);
	ck_assert_int_eq(s[14], '7');
	ck_assert_int_eq(wire_uuid_parse(s, c), 0);
	ck_assert_mem_eq(a, c, 16);
	ck_assert_int_eq(wire_uuid_parse("not-a-uuid", c), SAGA_EINVAL);
	ck_assert_int_eq(wire_uuid_parse("0190a0b0-c0d0-7e0f-8a0b-0c0d0e0f0g10", c), SAGA_EINVAL);
	usleep(2000);
	wire_uuid_v7(b);
	ck_assert_int_lt(memcmp(a, b, 6), 0);
}
END_TEST

START_TEST(strings_with_nul_or_invalid_utf8_are_refused_before_unpack)
{
	/* GetRequest{saga_id} inside Request field 12 */
	static const uint8_t nul[] = { 0x62, 0x05, 0x0a, 0x03, 'a', 0x00, 'b' };
	static const uint8_t bad[] = { 0x62, 0x04, 0x0a, 0x02, 0xff, 0xfe };
	static const uint8_t good[] = { 0x62, 0x05, 0x0a, 0x03, 'a', 'b', 'c' };
	int err = 0;
	ck_assert_ptr_null(wire_unpack_request(nul, sizeof(nul), &err));
	ck_assert_int_eq(err, SAGA_EPROTO);
	ck_assert_ptr_null(wire_unpack_request(bad, sizeof(bad), &err));
	Sagawire__Request *q = wire_unpack_request(good, sizeof(good), &err);
	ck_assert_ptr_nonnull(q);
	ck_assert_str_eq(q->get->saga_id, "abc");
	wire_free(&q->base);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("wire");
	TCase *tc = tcase_create("wire");
	tcase_add_test(tc, roundtrip_request_decodes_to_same_fields);
	tcase_add_test(tc, truncated_message_is_refused_as_malformed);
	tcase_add_test(tc, deep_nesting_is_refused_before_unpack);
	tcase_add_test(tc, allocation_quota_stops_blowup);
	tcase_add_test(tc, uuid_format_parse_roundtrip_and_v7_order);
	tcase_add_test(tc, strings_with_nul_or_invalid_utf8_are_refused_before_unpack);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
