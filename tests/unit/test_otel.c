/* Unit tests of server/otel.c's pure parts: the otlp-endpoint and
 * otlp-headers parsers and the ExportTraceServiceRequest encoding (decoded
 * back with the same generated code a collector's would match). */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "otel.h"
#include "trace_service.pb-c.h"

static char err[256];

START_TEST(endpoint_takes_host_port_and_path_with_otlp_defaults)
{
	otel_endpoint ep;
	ck_assert_int_eq(otel_parse_endpoint("http://127.0.0.1:4318/v1/traces", &ep, err, 256), 0);
	ck_assert_str_eq(ep.host, "127.0.0.1");
	ck_assert_str_eq(ep.port, "4318");
	ck_assert_str_eq(ep.path, "/v1/traces");
	ck_assert_str_eq(ep.hostport, "127.0.0.1:4318");
	ck_assert_int_eq(otel_parse_endpoint("http://collector", &ep, err, 256), 0);
	ck_assert_str_eq(ep.host, "collector");
	ck_assert_str_eq(ep.port, "4318");
	ck_assert_str_eq(ep.path, "/v1/traces");
	ck_assert_int_eq(otel_parse_endpoint("http://[::1]:9/otlp/v1/traces", &ep, err, 256), 0);
	ck_assert_str_eq(ep.host, "::1");
	ck_assert_str_eq(ep.port, "9");
	ck_assert_str_eq(ep.path, "/otlp/v1/traces");
	ck_assert_str_eq(ep.hostport, "[::1]:9");
}
END_TEST

START_TEST(bad_endpoints_are_refused_with_the_reason)
{
	static const struct {
		const char *url, *why;
	} bad[] = {
		{ "https://c:4318/v1/traces", "https is not supported" },
		{ "grpc://c:4317", "must be http://" },
		{ "c:4318", "must be http://" },
		{ "http://", "no host" },
		{ "http://:4318/", "no host" },
		{ "http://c:0/", "bad port" },
		{ "http://c:65536/", "bad port" },
		{ "http://c:12x/", "bad port" },
		{ "http://c:/", "bad port" },
		{ "http://c/v1 traces", "spaces" },
		{ "http://c/v1\r\nX: y", "control" },
		{ "http://u:p@c/", "user info" },
		{ "http://[::1/", "IPv6" },
		{ "http://c?x", "path" },
	};
	otel_endpoint ep;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = '\0';
		ck_assert_msg(otel_parse_endpoint(bad[i].url, &ep, err, sizeof(err)) != 0,
		    "%s accepted", bad[i].url);
		ck_assert_msg(strstr(err, bad[i].why) != NULL, "%s: \"%s\" lacks \"%s\"",
		    bad[i].url, err, bad[i].why);
	}
}
END_TEST

START_TEST(headers_become_request_lines)
{
	char *h = NULL;
	ck_assert_int_eq(otel_parse_headers("", &h, err, sizeof(err)), 0);
	ck_assert_str_eq(h, "");
	free(h);
	ck_assert_int_eq(
	    otel_parse_headers("x-api-key=abc123, Authorization = Bearer t=1,", &h, err, 256), 0);
	ck_assert_str_eq(h, "x-api-key: abc123\r\nAuthorization: Bearer t=1\r\n");
	free(h);
}
END_TEST

START_TEST(headers_that_could_inject_or_clash_are_refused)
{
	static const char *const bad[] = { "novalue", "=v", "a b=c", "a=b\r\nX-Evil: 1", "a=\x01",
		"Host=evil", "content-length=1", "Connection=keep-alive",
		"Transfer-Encoding=chunked", "a=caf\xc3\xa9" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char *h = NULL;
		ck_assert_msg(
		    otel_parse_headers(bad[i], &h, err, sizeof(err)) != 0, "%s accepted", bad[i]);
		ck_assert_ptr_null(h);
	}
}
END_TEST

static const char *
attr(const Opentelemetry__Proto__Trace__V1__Span *s, const char *key, int64_t *iv)
{
	for (size_t i = 0; i < s->n_attributes; i++)
		if (strcmp(s->attributes[i]->key, key) == 0) {
			const Opentelemetry__Proto__Common__V1__AnyValue *v =
			    s->attributes[i]->value;
			if (iv != NULL)
				*iv = v->int_value;
			return v->value_case ==
				OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_STRING_VALUE
			    ? v->string_value
			    : "";
		}
	return NULL;
}

START_TEST(spans_encode_as_an_export_request_a_collector_decodes)
{
	otel_span v[2];
	memset(v, 0, sizeof(v));
	for (int i = 0; i < 2; i++) {
		memset(v[i].trace_id, 0xab, 16);
		memset(v[i].saga_id, 0x11, 16);
		v[i].flags = 1;
		v[i].version = 3;
		strcpy(v[i].definition, "shop.Order");
	}
	memset(v[0].span_id, 0x01, 8);
	v[0].kind = OTEL_SAGA;
	v[0].failed = true;
	v[0].start_us = 1000;
	v[0].end_us = 5000;
	strcpy(v[0].outcome, "compensated");
	strcpy(v[0].error, "step charge failed: declined");
	memset(v[1].span_id, 0x02, 8);
	memset(v[1].parent_id, 0x01, 8);
	v[1].kind = OTEL_COMPENSATION;
	v[1].attempt = 2;
	v[1].start_us = 2000;
	v[1].end_us = 3000;
	strcpy(v[1].step, "reserve");
	strcpy(v[1].outcome, "succeeded");

	uint8_t *buf = NULL;
	size_t len = 0;
	ck_assert_int_eq(otel_encode(v, 2, "orders", "i-1", &buf, &len), 0);
	Opentelemetry__Proto__Collector__Trace__V1__ExportTraceServiceRequest *r =
	    opentelemetry__proto__collector__trace__v1__export_trace_service_request__unpack(
		NULL, len, buf);
	ck_assert_ptr_nonnull(r);
	ck_assert_uint_eq(r->n_resource_spans, 1);
	const Opentelemetry__Proto__Trace__V1__ResourceSpans *rs = r->resource_spans[0];
	ck_assert_str_eq(rs->resource->attributes[0]->key, "service.name");
	ck_assert_str_eq(rs->resource->attributes[0]->value->string_value, "orders");
	ck_assert_str_eq(rs->resource->attributes[1]->key, "service.instance.id");
	ck_assert_uint_eq(rs->n_scope_spans, 1);
	ck_assert_str_eq(rs->scope_spans[0]->scope->name, "sagad");
	ck_assert_uint_eq(rs->scope_spans[0]->n_spans, 2);
	const Opentelemetry__Proto__Trace__V1__Span *s0 = rs->scope_spans[0]->spans[0],
						    *s1 = rs->scope_spans[0]->spans[1];
	int64_t iv = 0;
	ck_assert_str_eq(s0->name, "saga shop.Order");
	ck_assert_uint_eq(s0->trace_id.len, 16);
	ck_assert_uint_eq(s0->span_id.len, 8);
	ck_assert_uint_eq(s0->parent_span_id.len, 0); /* a root */
	ck_assert_uint_eq(s0->start_time_unix_nano, 1000000);
	ck_assert_uint_eq(s0->end_time_unix_nano, 5000000);
	ck_assert_int_eq(
	    s0->kind, OPENTELEMETRY__PROTO__TRACE__V1__SPAN__SPAN_KIND__SPAN_KIND_INTERNAL);
	ck_assert_ptr_nonnull(s0->status);
	ck_assert_int_eq(s0->status->code,
	    OPENTELEMETRY__PROTO__TRACE__V1__STATUS__STATUS_CODE__STATUS_CODE_ERROR);
	ck_assert_str_eq(s0->status->message, "step charge failed: declined");
	ck_assert_str_eq(attr(s0, "saga.id", NULL), "11111111-1111-1111-1111-111111111111");
	ck_assert_str_eq(attr(s0, "saga.definition", NULL), "shop.Order");
	ck_assert_str_eq(attr(s0, "saga.kind", NULL), "saga");
	ck_assert_str_eq(attr(s0, "saga.outcome", NULL), "compensated");
	ck_assert_ptr_nonnull(attr(s0, "saga.version", &iv));
	ck_assert_int_eq(iv, 3);
	ck_assert_ptr_null(attr(s0, "saga.step", NULL));

	ck_assert_str_eq(s1->name, "compensate reserve");
	ck_assert_uint_eq(s1->parent_span_id.len, 8);
	ck_assert_mem_eq(s1->parent_span_id.data, v[0].span_id, 8);
	ck_assert_int_eq(
	    s1->kind, OPENTELEMETRY__PROTO__TRACE__V1__SPAN__SPAN_KIND__SPAN_KIND_CLIENT);
	ck_assert_ptr_null(s1->status); /* unset: it succeeded */
	ck_assert_str_eq(attr(s1, "saga.step", NULL), "reserve");
	ck_assert_str_eq(attr(s1, "saga.kind", NULL), "compensation");
	ck_assert_ptr_nonnull(attr(s1, "saga.attempt", &iv));
	ck_assert_int_eq(iv, 2);
	ck_assert_ptr_null(attr(s1, "saga.error", NULL));
	opentelemetry__proto__collector__trace__v1__export_trace_service_request__free_unpacked(
	    r, NULL);
	free(buf);
}
END_TEST

START_TEST(a_span_submitted_while_export_is_off_is_counted_dropped)
{
	otel_span sp;
	memset(&sp, 0, sizeof(sp));
	otel_submit(&sp);
	mx_buf b = { 0 };
	otel_metrics(&b);
	ck_assert_ptr_nonnull(strstr(b.p, "sagad_otlp_spans_dropped_total 1\n"));
	ck_assert_ptr_nonnull(strstr(b.p, "sagad_otlp_spans_exported_total 0\n"));
	free(b.p);
	otel_stop(); /* never started: a no-op */
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("otel");
	TCase *tc = tcase_create("core");
	tcase_add_test(tc, endpoint_takes_host_port_and_path_with_otlp_defaults);
	tcase_add_test(tc, bad_endpoints_are_refused_with_the_reason);
	tcase_add_test(tc, headers_become_request_lines);
	tcase_add_test(tc, headers_that_could_inject_or_clash_are_refused);
	tcase_add_test(tc, spans_encode_as_an_export_request_a_collector_decodes);
	tcase_add_test(tc, a_span_submitted_while_export_is_off_is_counted_dropped);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
