/*
 * Fuzz target: the credential path of sagad with auth on (server/auth.c).
 * Each input is a request as it arrives from the network: decoded with
 * wire_unpack_request (bounded), then checked by auth_check against a
 * cache holding three principals (one participant, one client limited to
 * a definition, one admin), for the least role the first byte picks. An
 * input whose first byte is odd is instead the credential text itself, in
 * a poll as participant pA. Whatever the bytes, the check answers (a
 * refusal replies; an acceptance fills in who) and nothing leaks or
 * crashes; a refused request must have been answered exactly once.
 */
#include <nng/nng.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "log.h"
#include "rpc.h"
#include "sagawire.pb-c.h"
#include "wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CRED_PART   "0123456789abcdef.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
#define CRED_CLIENT "fedcba9876543210.abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQ"
#define CRED_ADMIN  "00000000000000ff.-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-"

static int replies;

static void
replied(rpc_req *r, struct nng_msg *m)
{
	(void)r;
	replies++;
	if (m != NULL)
		nng_msg_free(m);
}

static void
init_once(void)
{
	static int done;
	if (done)
		return;
	done = 1;
	slog_init(SLOG_ERROR, 1, NULL); /* refusals are logged at warn */
	if (auth_cache_add(CRED_PART, AUTH_PARTICIPANT, "pA", NULL) != 0 ||
	    auth_cache_add(CRED_CLIENT, AUTH_CLIENT, "", "ittest.Linear3\n") != 0 ||
	    auth_cache_add(CRED_ADMIN, AUTH_ADMIN, "", NULL) != 0)
		abort();
}

static void
check(Sagawire__Request *q, auth_role need)
{
	rpc_req r;
	memset(&r, 0, sizeof(r));
	r.req = q;
	r.reply_fn = replied;
	replies = 0;
	if (auth_check(&r, need) != 0) {
		if (replies != 1 || r.req != NULL)
			abort(); /* a refusal answers once (and frees the request) */
		return;
	}
	if (replies != 0 || r.auth.role < AUTH_PARTICIPANT || r.auth.role > AUTH_ADMIN)
		abort();
	if (q->credential != NULL && q->credential[0] != '\0')
		abort(); /* an accepted credential is wiped from the request */
	free(r.auth.defs);
	wire_free(&q->base);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	init_once();
	if (size == 0)
		return 0;
	auth_role need = (auth_role)(1 + (data[0] >> 1) % 4);
	if (data[0] & 1) {
		/* The credential text alone, in a poll as pA. */
		int err = 0;
		Sagawire__Request q = SAGAWIRE__REQUEST__INIT;
		Sagawire__WorkPoll p = SAGAWIRE__WORK_POLL__INIT;
		char *cred = malloc(size);
		if (cred == NULL)
			return 0;
		memcpy(cred, data + 1, size - 1);
		cred[size - 1] = '\0';
		p.participant = "pA";
		p.capacity = 1;
		q.body_case = SAGAWIRE__REQUEST__BODY_POLL;
		q.poll = &p;
		q.credential = cred;
		/* Through the wire, as sagad gets it. */
		size_t n = sagawire__request__get_packed_size(&q);
		uint8_t *buf = malloc(n ? n : 1);
		if (buf != NULL) {
			sagawire__request__pack(&q, buf);
			Sagawire__Request *d = wire_unpack_request(buf, n, &err);
			if (d != NULL)
				check(d, AUTH_PARTICIPANT);
			free(buf);
		}
		free(cred);
		return 0;
	}
	int err = 0;
	Sagawire__Request *q = wire_unpack_request(data + 1, size - 1, &err);
	if (q != NULL)
		check(q, need);
	return 0;
}
