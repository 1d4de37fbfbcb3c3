/*
 * Proves that the public headers stand alone as strict C99: this file is
 * built with -std=c99 -pedantic -Werror, includes nothing of ours but
 * saga_base.h (first, so that it must stand alone too) and saga.h (which
 * includes it again), and touches every type and a few functions of them.
 */
#include "saga_base.h"
#include "saga.h"

#include <stdio.h>
#include <string.h>

static void
on_step(const saga_step *s, saga_reply *r, void *user)
{
	const saga_step_result *res = saga_step_find_result(s, "x");
	(void)user;
	if (res == NULL)
		saga_reply_retry(r, "no result");
	else
		saga_reply_success(r, res->data, res->len);
}

static void
on_log(saga_log_level level, const char *line, void *user)
{
	(void)level;
	(void)line;
	(void)user;
}

int
main(void)
{
	saga_handler_fn h = on_step;
	saga_log_fn l = on_log;
	saga_state states[2];
	saga_list_filter f;
	saga_start_opts o;
	saga_start_opts oi = SAGA_START_OPTS_INIT;
	saga_list_filter fi = SAGA_LIST_FILTER_INIT;
	saga_step_kind k = SAGA_COMPENSATION;
	saga_step_state ss = SAGA_STEP_COMP_FAILED;
	saga_registered reg;
	saga_register_result rr;
	saga_step_info si;
	saga_info info;
	saga_summary sum;
	saga_list list;
	saga_step_result sr;
	saga_step step;
	saga_err e = SAGA_EUNSUPPORTED;
	saga_client *c = NULL;
	saga_worker *w = NULL;

	states[0] = SAGA_STATE_RUNNING;
	states[1] = SAGA_STATE_FAILED;
	memset(&f, 0, sizeof(f));
	f.states = states;
	f.n_states = 2;
	memset(&o, 0, sizeof(o));
	memset(&reg, 0, sizeof(reg));
	memset(&rr, 0, sizeof(rr));
	memset(&si, 0, sizeof(si));
	memset(&info, 0, sizeof(info));
	memset(&sum, 0, sizeof(sum));
	memset(&list, 0, sizeof(list));
	memset(&sr, 0, sizeof(sr));
	memset(&step, 0, sizeof(step));
	(void)h;
	(void)l;
	(void)k;
	if (oi.struct_size != sizeof(saga_start_opts) || oi.version != 0 ||
	    fi.struct_size != sizeof(saga_list_filter) || fi.limit != 0) {
		fprintf(stderr, "the *_INIT macros do not size the structs\n");
		return 1;
	}

	if (SAGA_VERSION_MAJOR != 0 || SAGA_VERSION_MINOR != 1 || SAGA_VERSION_PATCH != 0 ||
	    SAGA_OK != 0 || SAGA_EUNSUPPORTED != 15 ||
	    strcmp(SAGA_DEFAULT_URL, "tcp://127.0.0.1:7700") != 0) {
		fprintf(stderr, "unexpected values in saga_base.h\n");
		return 1;
	}
	if (strcmp(saga_version(), "0.1.0") != 0 ||
	    strcmp(saga_step_state_name(ss), "comp_failed") != 0 ||
	    saga_state_parse("failed") != SAGA_STATE_FAILED ||
	    strcmp(saga_strerror((int)e), "unknown error") == 0) {
		fprintf(stderr, "unexpected values from libsaga\n");
		return 1;
	}
	if (saga_client_new(SAGA_DEFAULT_URL, &c) != SAGA_OK ||
	    saga_worker_new(NULL, "header-test", &w) != SAGA_OK) {
		fprintf(stderr, "cannot create handles\n");
		return 1;
	}
	saga_client_set_log(c, l, NULL);
	saga_worker_free(w);
	saga_client_free(c);
	return 0;
}
