/* conn: the REQ socket to sagad and the decoder of its replies. See internal.h. */
#include "internal.h"

#include <nng/protocol/reqrep0/req.h>
#include <stdlib.h>
#include <string.h>

#include "utf8.h"

int
sl_conn_init(sl_conn *c)
{
	memset(c, 0, sizeof(*c));
	if (pthread_mutex_init(&c->mu, NULL) != 0)
		return SAGA_ENOMEM;
	if (pthread_mutex_init(&c->io_mu, NULL) != 0) {
		pthread_mutex_destroy(&c->mu);
		return SAGA_ENOMEM;
	}
	if (sl_cond_init(&c->cv) != SAGA_OK) {
		pthread_mutex_destroy(&c->io_mu);
		pthread_mutex_destroy(&c->mu);
		return SAGA_ENOMEM;
	}
	return SAGA_OK;
}

void
sl_conn_fini(sl_conn *c)
{
	sl_conn_close(c);
	pthread_cond_destroy(&c->cv);
	pthread_mutex_destroy(&c->io_mu);
	pthread_mutex_destroy(&c->mu);
}

/* Runs on an nng thread for every connection made or lost. Only records
 * and logs: calling into nng from here could deadlock with nng_close. */
static void
pipe_event(nng_pipe p, nng_pipe_ev ev, void *arg)
{
	sl_conn *c = arg;
	int known = 0;
	unsigned ups;

	pthread_mutex_lock(&c->mu);
	if (ev == NNG_PIPE_EV_ADD_POST && c->open && c->npipes < SL_MAX_PIPES) {
		c->pipes[c->npipes++] = p;
		c->ups++;
		known = 1;
		pthread_cond_broadcast(&c->cv);
	} else if (ev == NNG_PIPE_EV_REM_POST) {
		for (unsigned i = 0; i < c->npipes; i++) {
			if (nng_pipe_id(c->pipes[i]) == nng_pipe_id(p)) {
				c->pipes[i] = c->pipes[--c->npipes];
				known = 1;
				break;
			}
		}
	}
	ups = c->ups;
	pthread_mutex_unlock(&c->mu);
	if (!known)
		return;
	if (ev == NNG_PIPE_EV_ADD_POST)
		sl_log(c->log, c->log_user, ups > 1 ? SAGA_LOG_INFO : SAGA_LOG_DEBUG,
		    "connected to sagad at %s", c->url);
	else
		sl_log(c->log, c->log_user, SAGA_LOG_INFO,
		    "connection to sagad at %s lost; reconnecting", c->url);
}

int
sl_conn_open(sl_conn *c, const char *url, size_t max_message, char *err)
{
	nng_socket s;
	int rv;

	if ((rv = nng_req0_open(&s)) != 0) {
		sl_seterr(err, "cannot open an nng REQ socket: %s", nng_strerror(rv));
		return wire_err_from_nng(rv);
	}
	/* Options set on the socket before dialing are inherited by the
	 * dialer, so the limit holds from the first connection. */
	if ((rv = nng_socket_set_size(s, NNG_OPT_RECVMAXSZ, max_message)) != 0 ||
	    (rv = nng_socket_set_ms(s, NNG_OPT_RECONNMINT, SL_RECONN_MIN_MS)) != 0 ||
	    (rv = nng_socket_set_ms(s, NNG_OPT_RECONNMAXT, SL_RECONN_MAX_MS)) != 0 ||
	    (rv = nng_pipe_notify(s, NNG_PIPE_EV_ADD_POST, pipe_event, c)) != 0 ||
	    (rv = nng_pipe_notify(s, NNG_PIPE_EV_REM_POST, pipe_event, c)) != 0) {
		sl_seterr(err, "cannot set up the nng socket: %s", nng_strerror(rv));
		rv = wire_err_from_nng(rv);
		goto fail;
	}
	c->url = url;
	c->opened_ms = wire_mono_ms();
	pthread_mutex_lock(&c->mu);
	c->npipes = c->ups = 0;
	c->sock = s;
	c->open = 1;
	pthread_mutex_unlock(&c->mu);
	if ((rv = nng_dial(s, url, NULL, NNG_FLAG_NONBLOCK)) != 0) {
		pthread_mutex_lock(&c->mu);
		c->open = 0;
		pthread_mutex_unlock(&c->mu);
		sl_seterr(err, "cannot dial sagad at %s: %s", url, nng_strerror(rv));
		/* An unknown scheme or unparsable address is the caller's
		 * mistake; anything else is what nng says. */
		rv = (rv == NNG_ENOTSUP || rv == NNG_EADDRINVAL || rv == NNG_EINVAL)
		    ? SAGA_EINVAL
		    : wire_err_from_nng(rv);
		goto fail;
	}
	return SAGA_OK;

fail:
	nng_close(s);
	return rv;
}

int
sl_conn_set_max_message(sl_conn *c, size_t max_message)
{
	nng_pipe live[SL_MAX_PIPES];
	unsigned n;
	int rv;

	if ((rv = nng_socket_set_size(c->sock, NNG_OPT_RECVMAXSZ, max_message)) != 0)
		return wire_err_from_nng(rv);
	pthread_mutex_lock(&c->mu);
	n = c->npipes;
	memcpy(live, c->pipes, n * sizeof(live[0]));
	c->npipes = 0; /* callers now wait for a connection with the new limit */
	pthread_mutex_unlock(&c->mu);
	/* Established pipes only: closing a socket or dialer in the middle of
	 * its handshake can wedge an nng 1.5.2 ipc listener (nng #1518). */
	for (unsigned i = 0; i < n; i++)
		nng_pipe_close(live[i]);
	return SAGA_OK;
}

void
sl_conn_close(sl_conn *c)
{
	/* nng 1.5.2 misbehaves when a socket closes while its dial is in the
	 * middle of the handshake: it leaks the connection, and the ipc
	 * listener on the other side can stop accepting for good (nng #1518).
	 * A socket closed before it ever connected gives its first dial a
	 * moment to finish (returns at once when sagad is up and answers). */
	pthread_mutex_lock(&c->mu);
	int never_up = c->open && c->ups == 0;
	pthread_mutex_unlock(&c->mu);
	if (never_up)
		sl_conn_wait_up(c, c->opened_ms + SL_DIAL_SETTLE_MS);

	/* io_mu first: once open is clear no operation can start, so none
	 * races with nng_close (see sl_ctx_send). */
	pthread_mutex_lock(&c->io_mu);
	pthread_mutex_lock(&c->mu);
	int was_open = c->open;
	c->open = 0;
	c->npipes = 0;
	pthread_mutex_unlock(&c->mu);
	pthread_mutex_unlock(&c->io_mu);
	if (was_open)
		nng_close(c->sock);
}

int
sl_conn_wait_up(sl_conn *c, int64_t deadline_ms)
{
	pthread_mutex_lock(&c->mu);
	for (;;) {
		if (c->npipes > 0)
			break;
		int64_t left = deadline_ms - wire_mono_ms();
		if (left <= 0)
			break;
		sl_cond_wait_ms(&c->cv, &c->mu, left);
	}
	int up = c->npipes > 0;
	pthread_mutex_unlock(&c->mu);
	return up;
}

int
sl_ctx_open(sl_conn *c, nng_duration resend, nng_ctx *out)
{
	int rv;
	if ((rv = nng_ctx_open(out, c->sock)) != 0)
		return rv;
	if ((rv = nng_ctx_set_ms(*out, NNG_OPT_REQ_RESENDTIME, resend)) != 0) {
		nng_ctx_close(*out);
		return rv;
	}
	return 0;
}

int
sl_ctx_send(sl_conn *c, nng_ctx ctx, nng_aio *aio)
{
	pthread_mutex_lock(&c->io_mu);
	if (!c->open) {
		pthread_mutex_unlock(&c->io_mu);
		return NNG_ECLOSED;
	}
	nng_ctx_send(ctx, aio);
	pthread_mutex_unlock(&c->io_mu);
	return 0;
}

int
sl_ctx_recv(sl_conn *c, nng_ctx ctx, nng_aio *aio)
{
	pthread_mutex_lock(&c->io_mu);
	if (!c->open) {
		pthread_mutex_unlock(&c->io_mu);
		return NNG_ECLOSED;
	}
	nng_ctx_recv(ctx, aio);
	pthread_mutex_unlock(&c->io_mu);
	return 0;
}

int
sl_ctx_call(sl_conn *c, nng_ctx ctx, nng_aio *aio, nng_msg *msg, nng_msg **reply)
{
	int rv;

	*reply = NULL;
	nng_aio_set_timeout(aio, NNG_DURATION_INFINITE);
	nng_aio_set_msg(aio, msg);
	if ((rv = sl_ctx_send(c, ctx, aio)) != 0) {
		nng_msg_free(msg);
		nng_aio_set_msg(aio, NULL);
		return rv;
	}
	nng_aio_wait(aio);
	if ((rv = nng_aio_result(aio)) != 0) {
		/* A failed send hands the message back. */
		nng_msg *m = nng_aio_get_msg(aio);
		nng_aio_set_msg(aio, NULL);
		if (m != NULL)
			nng_msg_free(m);
		return rv;
	}
	/* The receive is posted only after the send completed: nng 1.5.2
	 * can crash when a receive is cancelled while its send is pending. */
	nng_aio_set_msg(aio, NULL);
	if ((rv = sl_ctx_recv(c, ctx, aio)) != 0)
		return rv;
	nng_aio_wait(aio);
	if ((rv = nng_aio_result(aio)) != 0)
		return rv;
	*reply = nng_aio_get_msg(aio);
	nng_aio_set_msg(aio, NULL);
	return 0;
}

const char *
sl_body_name(Sagawire__Response__BodyCase c)
{
	switch (c) {
	case SAGAWIRE__RESPONSE__BODY__NOT_SET:
		return "an empty reply";
	case SAGAWIRE__RESPONSE__BODY_REGISTER:
		return "a register reply";
	case SAGAWIRE__RESPONSE__BODY_START:
		return "a start reply";
	case SAGAWIRE__RESPONSE__BODY_GET:
		return "a get reply";
	case SAGAWIRE__RESPONSE__BODY_LIST:
		return "a list reply";
	case SAGAWIRE__RESPONSE__BODY_CANCEL:
		return "a cancel reply";
	case SAGAWIRE__RESPONSE__BODY_WORK:
		return "a work batch";
	case SAGAWIRE__RESPONSE__BODY_ACK:
		return "a report ack";
	default:
		break;
	}
	return "an unknown reply";
}

int
sl_decode_reply(
    nng_msg *msg, Sagawire__Response__BodyCase want, Sagawire__Response **out, char *err)
{
	size_t len = nng_msg_len(msg);
	int rv = SAGA_EPROTO;
	Sagawire__Response *r;

	*out = NULL;
	if ((r = wire_unpack_response(nng_msg_body(msg), len, &rv)) == NULL) {
		if (rv == SAGA_ETOOBIG) {
			sl_seterr(err,
			    "reply from sagad (%zu bytes) is nested too deeply or "
			    "too large to decode",
			    len);
		} else {
			rv = SAGA_EPROTO;
			sl_seterr(err, "malformed reply from sagad (%zu bytes)", len);
		}
		return rv;
	}
	if (r->error != NULL) {
		uint32_t code = r->error->code;
		char *m = cm_utf8_dup(r->error->message, SL_ERRMSG_MAX - 64);
		if (code == SAGA_OK || code > SAGA_EUNSUPPORTED) {
			sl_seterr(
			    err, "sagad answered with unknown error code %u: %s", code, m ? m : "");
			rv = SAGA_EPROTO;
		} else {
			sl_seterr(err, "%s", m ? m : "");
			rv = (int)code;
		}
		free(m);
		goto fail;
	}
	if (r->body_case != want || r->get == NULL) {
		sl_seterr(err, "unexpected reply from sagad: %s instead of %s",
		    sl_body_name(r->body_case), sl_body_name(want));
		rv = SAGA_EPROTO;
		goto fail;
	}
	*out = r;
	return SAGA_OK;

fail:
	wire_free(&r->base);
	return rv;
}
