/*
 * Unit: http_api's guard against DNS rebinding (server/http_api.h): with
 * auth off on a loopback listener, the API answers only requests whose
 * Host header is a loopback name. Everything else of the API is proven
 * against a real sagad in it-ui (tests/integration/test_ui.c).
 */
#include <check.h>
#include <stdlib.h>

#include "http_api.h"

START_TEST(loopback_host_names_with_or_without_a_port_are_loopback)
{
	static const char *const yes[] = { "localhost", "LOCALHOST:8080", "127.0.0.1",
		"127.0.0.1:9090", "127.1.2.3:1", "[::1]", "[::1]:9090" };
	for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++)
		ck_assert_msg(hapi_host_is_loopback(yes[i]), "%s", yes[i]);
}
END_TEST

START_TEST(other_names_and_malformed_hosts_are_not)
{
	static const char *const no[] = { "", "evil.example", "evil.example:9090",
		"localhost.evil.example", "127.0.0.1.evil.example", "0.0.0.0:9090", "128.0.0.1",
		"10.0.0.1:80", "[::1]x", "[::2]:80", "[::1", "localhost:abc", "localhost:99999",
		"localhost:", "127.0.0.1:80:80", "[::ffff:127.0.0.1]" };
	for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++)
		ck_assert_msg(!hapi_host_is_loopback(no[i]), "%s", no[i]);
	ck_assert(!hapi_host_is_loopback(NULL));
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("http_api");
	TCase *tc = tcase_create("host");
	tcase_add_test(tc, loopback_host_names_with_or_without_a_port_are_loopback);
	tcase_add_test(tc, other_names_and_malformed_hosts_are_not);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
