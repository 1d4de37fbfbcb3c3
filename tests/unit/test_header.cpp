/*
 * Proves that the public headers compile as C++ (-pedantic -Werror) and
 * that their functions link with C linkage from C++. saga_base.h comes
 * first, so that it must stand alone.
 */
#include "saga_base.h"
#include "saga.h"

#include <cstdio>
#include <cstring>

static void
on_step(const saga_step *s, saga_reply *r, void *)
{
	if (saga_step_find_result(s, "x") == nullptr)
		saga_reply_fail(r, "no result");
}

int
main()
{
	saga_handler_fn h = on_step;
	saga_list_filter f = saga_list_filter();
	saga_start_opts o = saga_start_opts();
	saga_start_opts oi = SAGA_START_OPTS_INIT;
	saga_list_filter fi = SAGA_LIST_FILTER_INIT;
	if (oi.struct_size != sizeof(saga_start_opts) || fi.struct_size != sizeof(saga_list_filter))
		return 1;
	saga_info info = saga_info();
	saga_step step = saga_step();
	(void)h;
	(void)f;
	(void)o;
	(void)info;
	(void)step;
	saga_err e = SAGA_ETIMEDOUT;
	if (std::strcmp(saga_strerror(e), "timed out") != 0 ||
	    std::strcmp(SAGA_DEFAULT_URL, "tcp://127.0.0.1:7700") != 0 ||
	    std::strcmp(saga_state_name(SAGA_STATE_COMPENSATED), "compensated") != 0 ||
	    !saga_state_is_final(SAGA_STATE_COMPLETED)) {
		std::fprintf(stderr, "unexpected values from libsaga\n");
		return 1;
	}
	saga_worker *w = nullptr;
	if (saga_worker_new(nullptr, "header-test", &w) != SAGA_OK)
		return 1;
	saga_worker_free(w);
	return 0;
}
