/* conn: lists of sagad URLs, the REQ socket to sagad and the decoder of its
 * replies. See internal.h. */
#include "internal.h"

#include <nng/protocol/reqrep0/req.h>
#include <stdio.h>
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

/* ---- URL lists ---------------------------------------------------------- */

static int
is_space(char ch)
{
	return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r' || ch == '\v' || ch == '\f';
}

void
sl_urls_free(sl_urls *u)
{
	for (size_t i = 0; i < u->n; i++)
		free(u->url[i]);
	free(u->text);
	memset(u, 0, sizeof(*u));
}

/* At most 200 bytes of s, cut at a character boundary, for messages. */
static int
shown(const char *s)
{
	return (int)cm_utf8_cut(s, strnlen(s, 200));
}

/* Why nng will not dial url, or NULL if it will. s is a scratch socket:
 * making a dialer (never started) runs the transport's own checks of the
 * address without connecting anywhere. */
static const char *
undialable(nng_socket s, const char *url)
{
	nng_url *u;
	nng_dialer d;

	for (const char *p = url; *p != '\0'; p++)
		if (is_space(*p))
			return "it contains whitespace";
	if (nng_url_parse(&u, url) != 0)
		return "it is not a URL of the form scheme://address";
	nng_url_free(u);
	switch (nng_dialer_create(&d, s, url)) {
	case 0:
		nng_dialer_close(d);
		return NULL;
	case NNG_ENOTSUP:
		return "nng knows no such scheme (tcp://, ipc://, tls+tcp://, ws://, inproc://)";
	case NNG_EADDRINVAL:
	case NNG_EINVAL:
		return "the address does not fit its scheme (tcp:// needs a host and a port)";
	default:
		return "nng cannot dial it";
	}
}

int
sl_urls_parse(const char *list, sl_urls *out, char *err)
{
	const char *ex = "e.g. tcp://127.0.0.1:7700 or tcp://10.0.0.1:7700,tcp://10.0.0.2:7700";
	size_t total = 0, len;
	nng_socket s;
	int rv;

	memset(out, 0, sizeof(*out));
	if (list == NULL)
		list = SAGA_DEFAULT_URL;
	if (!sl_utf8_ok(list)) {
		sl_seterr(err, "the sagad URL list is not valid UTF-8");
		return SAGA_EINVAL;
	}
	/* Split first, so that messages can tell a list of one from a list. */
	for (const char *p = list;; p++) {
		const char *end = strchr(p, ',');
		if (end == NULL)
			end = p + strlen(p);
		const char *b = p, *e = end;
		while (b < e && is_space(*b))
			b++;
		while (e > b && is_space(e[-1]))
			e--;
		total++;
		if (b == e) {
			if (*end == '\0' && total == 1) {
				sl_seterr(err, "the sagad URL list is empty; %s", ex);
				goto inval;
			}
			sl_seterr(err,
			    "entry %zu of the sagad URL list \"%.*s\" is empty (no comma at "
			    "either end, none twice in a row); %s",
			    total, shown(list), list, ex);
			goto inval;
		}
		if (out->n < SL_MAX_URLS) {
			if ((out->url[out->n] = strndup(b, (size_t)(e - b))) == NULL)
				goto nomem;
			out->n++;
		}
		if (*end == '\0')
			break;
		p = end;
	}
	if (total > SL_MAX_URLS) {
		sl_seterr(err,
		    "the sagad URL list \"%.*s\" has %zu entries; at most %d are allowed",
		    shown(list), list, total, SL_MAX_URLS);
		goto inval;
	}
	if ((rv = nng_req0_open(&s)) != 0) {
		sl_seterr(err, "cannot open an nng REQ socket: %s", nng_strerror(rv));
		sl_urls_free(out);
		return wire_err_from_nng(rv);
	}
	for (size_t i = 0; i < out->n; i++) {
		const char *why = undialable(s, out->url[i]);
		if (why == NULL)
			continue;
		if (out->n == 1)
			sl_seterr(err, "\"%.*s\" is not a sagad URL: %s; %s", shown(out->url[i]),
			    out->url[i], why, ex);
		else
			sl_seterr(err,
			    "entry %zu of the sagad URL list, \"%.*s\", is not a sagad URL: %s; %s",
			    i + 1, shown(out->url[i]), out->url[i], why, ex);
		nng_close(s);
		goto inval;
	}
	nng_close(s);
	len = 1; /* the NUL, and a comma before every entry but the first */
	for (size_t i = 0; i < out->n; i++)
		len += strlen(out->url[i]) + 1;
	if ((out->text = malloc(len)) == NULL)
		goto nomem;
	char *t = out->text;
	for (size_t i = 0; i < out->n; i++) {
		size_t k = strlen(out->url[i]);
		if (i > 0)
			*t++ = ',';
		memcpy(t, out->url[i], k);
		t += k;
	}
	*t = '\0';
	return SAGA_OK;

inval:
	sl_urls_free(out);
	return SAGA_EINVAL;
nomem:
	sl_urls_free(out);
	sl_seterr(err, "out of memory");
	return SAGA_ENOMEM;
}

int
saga_url_list_check(const char *urls, char *err, size_t errlen)
{
	char detail[SL_ERRMSG_MAX] = "";
	sl_urls u;
	int rv = sl_urls_parse(urls, &u, detail);
	if (rv == SAGA_OK)
		sl_urls_free(&u);
	if (err != NULL && errlen > 0) {
		snprintf(err, errlen, "%s", detail);
		cm_utf8_trim(err);
	}
	return rv;
}

/* ---- the socket ---------------------------------------------------------- */

/* Index of the URL whose dialer made pipe p (0 if none matches). */
static unsigned
pipe_url(const sl_conn *c, nng_pipe p)
{
	if (c->n_urls <= 1)
		return 0;
	int id = nng_dialer_id(nng_pipe_dialer(p));
	for (unsigned i = 0; i < c->n_urls; i++)
		if (nng_dialer_id(c->dialers[i]) == id)
			return i;
	return 0;
}

/* Runs on an nng thread for every connection made or lost. Only records
 * and logs: calling into nng from here could deadlock with nng_close (the
 * look-ups of a new pipe's socket and dialer only read nng's tables). */
static void
pipe_event(nng_pipe p, nng_pipe_ev ev, void *arg)
{
	sl_conn *c = arg;
	int known = 0;
	unsigned ups = 0, u = 0;
	int sock_id = ev == NNG_PIPE_EV_ADD_POST ? nng_socket_id(nng_pipe_socket(p)) : -1;

	if (ev == NNG_PIPE_EV_ADD_POST)
		u = pipe_url(c, p);
	pthread_mutex_lock(&c->mu);
	if (ev == NNG_PIPE_EV_ADD_POST && c->open && sock_id == nng_socket_id(c->sock) &&
	    c->npipes < SL_MAX_PIPES) {
		c->pipes[c->npipes].pipe = p;
		c->pipes[c->npipes].url = u;
		c->npipes++;
		ups = ++c->dial_ups[u];
		known = 1;
		pthread_cond_broadcast(&c->cv);
	} else if (ev == NNG_PIPE_EV_REM_POST) {
		for (unsigned i = 0; i < c->npipes; i++) {
			if (nng_pipe_id(c->pipes[i].pipe) == nng_pipe_id(p)) {
				u = c->pipes[i].url;
				c->pipes[i] = c->pipes[--c->npipes];
				known = 1;
				break;
			}
		}
	}
	pthread_mutex_unlock(&c->mu);
	if (!known)
		return;
	if (ev == NNG_PIPE_EV_ADD_POST)
		sl_log(c->log, c->log_user, ups > 1 ? SAGA_LOG_INFO : SAGA_LOG_DEBUG,
		    "connected to sagad at %s", c->urls[u]);
	else
		sl_log(c->log, c->log_user, SAGA_LOG_INFO,
		    "connection to sagad at %s lost; reconnecting", c->urls[u]);
}

int
sl_conn_open(sl_conn *c, const char *const *urls, unsigned n, size_t max_message, const sl_tls *tls,
    char *err)
{
	nng_socket s;
	unsigned i;
	int rv;

	if ((rv = nng_req0_open(&s)) != 0) {
		sl_seterr(err, "cannot open an nng REQ socket: %s", nng_strerror(rv));
		return wire_err_from_nng(rv);
	}
	/* Options set on the socket before its dialers are made are
	 * inherited by them, so the limit holds from the first connection. */
	if ((rv = nng_socket_set_size(s, NNG_OPT_RECVMAXSZ, max_message)) != 0 ||
	    (rv = nng_socket_set_ms(s, NNG_OPT_RECONNMINT, SL_RECONN_MIN_MS)) != 0 ||
	    (rv = nng_socket_set_ms(s, NNG_OPT_RECONNMAXT, SL_RECONN_MAX_MS)) != 0 ||
	    (rv = nng_pipe_notify(s, NNG_PIPE_EV_ADD_POST, pipe_event, c)) != 0 ||
	    (rv = nng_pipe_notify(s, NNG_PIPE_EV_REM_POST, pipe_event, c)) != 0) {
		sl_seterr(err, "cannot set up the nng socket: %s", nng_strerror(rv));
		rv = wire_err_from_nng(rv);
		goto fail;
	}
	c->urls = urls;
	c->n_urls = n;
	c->opened_ms = wire_mono_ms();
	/* Every dialer is made before any starts: a bad URL is found before
	 * a connection is made that closing the socket would cut mid-handshake
	 * (see sl_conn_close). */
	for (i = 0; i < n; i++) {
		if ((rv = nng_dialer_create(&c->dialers[i], s, urls[i])) != 0) {
			sl_seterr(err, "cannot dial sagad at %s: %s", urls[i], nng_strerror(rv));
			/* An unknown scheme or unparsable address is the
			 * caller's mistake; anything else is what nng says. */
			rv = (rv == NNG_ENOTSUP || rv == NNG_EADDRINVAL || rv == NNG_EINVAL)
			    ? SAGA_EINVAL
			    : wire_err_from_nng(rv);
			goto fail;
		}
		if (sl_url_is_tls(urls[i]) &&
		    (rv = sl_tls_dialer(tls, c->dialers[i], urls[i], err)) != SAGA_OK)
			goto fail;
	}
	c->tls = tls;
	pthread_mutex_lock(&c->mu);
	c->npipes = 0;
	memset(c->dial_ups, 0, sizeof(c->dial_ups));
	c->sock = s;
	c->open = 1;
	pthread_mutex_unlock(&c->mu);
	for (i = 0; i < n; i++) {
		if ((rv = nng_dialer_start(c->dialers[i], NNG_FLAG_NONBLOCK)) != 0) {
			sl_seterr(err, "cannot dial sagad at %s: %s", urls[i], nng_strerror(rv));
			rv = (rv == NNG_ENOTSUP || rv == NNG_EADDRINVAL || rv == NNG_EINVAL)
			    ? SAGA_EINVAL
			    : wire_err_from_nng(rv);
			sl_conn_close(c);
			return rv;
		}
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
	for (unsigned i = 0; i < n; i++)
		live[i] = c->pipes[i].pipe;
	c->npipes = 0; /* callers now wait for a connection with the new limit */
	pthread_mutex_unlock(&c->mu);
	/* Established pipes only: closing a socket or dialer in the middle of
	 * its handshake can wedge an nng 1.5.2 ipc listener (nng #1518). */
	for (unsigned i = 0; i < n; i++)
		nng_pipe_close(live[i]);
	return SAGA_OK;
}

/* Has every dialer connected at least once? Call with c->mu held. */
static int
all_dialed_locked(const sl_conn *c)
{
	for (unsigned i = 0; i < c->n_urls; i++)
		if (c->dial_ups[i] == 0)
			return 0;
	return 1;
}

void
sl_conn_close(sl_conn *c)
{
	/* nng 1.5.2 misbehaves when a socket closes while a dial is in the
	 * middle of the handshake: it leaks the connection, and the ipc
	 * listener on the other side can stop accepting for good (nng #1518).
	 * A socket closed right after it was opened gives its first dials a
	 * moment to finish (returns at once when every sagad is up and
	 * answers). */
	pthread_mutex_lock(&c->mu);
	int64_t until = c->opened_ms + SL_DIAL_SETTLE_MS;
	while (c->open && !all_dialed_locked(c) && wire_mono_ms() < until)
		sl_cond_wait_ms(&c->cv, &c->mu, until - wire_mono_ms());
	pthread_mutex_unlock(&c->mu);

	/* io_mu first: once open is clear no operation can start, so none
	 * races with nng_close (see sl_ctx_send). */
	pthread_mutex_lock(&c->io_mu);
	pthread_mutex_lock(&c->mu);
	int was_open = c->open;
	c->open = 0;
	c->npipes = 0;
	pthread_cond_broadcast(&c->cv); /* ends sl_conn_wait_up */
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
		if (c->npipes > 0 || !c->open)
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
sl_conn_refused(sl_conn *c, const sl_hs *now)
{
	int all;
	pthread_mutex_lock(&c->mu);
	all = c->open && c->npipes == 0;
	for (unsigned i = 0; i < c->n_urls && all; i++)
		/* A URL reached once may be restarting: keep waiting for it. */
		all = c->dial_ups[i] == 0 && now->refused[i] > 0;
	pthread_mutex_unlock(&c->mu);
	return all;
}

void
sl_conn_handshakes(sl_conn *c, sl_hs *out)
{
	nng_stat *all = NULL;

	memset(out, 0, sizeof(*out));
	if (!c->open || nng_stats_get(&all) != 0)
		return;
	/* By hand rather than with nng_stat_find_dialer, which in 1.5.2 was
	 * seen to return another dialer's statistics. */
	for (nng_stat *s = nng_stat_child(all); s != NULL; s = nng_stat_next(s)) {
		if (nng_stat_type(s) != NNG_STAT_SCOPE || strcmp(nng_stat_name(s), "dialer") != 0)
			continue;
		nng_stat *id = nng_stat_find(s, "id");
		if (id == NULL)
			continue;
		for (unsigned i = 0; i < c->n_urls; i++) {
			if ((int)nng_stat_value(id) != nng_dialer_id(c->dialers[i]))
				continue;
			nng_stat *a = nng_stat_find(s, "auth"), *o = nng_stat_find(s, "other");
			nng_stat *r = nng_stat_find(s, "refused");
			out->auth[i] = a != NULL ? nng_stat_value(a) : 0;
			out->other[i] = o != NULL ? nng_stat_value(o) : 0;
			out->refused[i] = r != NULL ? nng_stat_value(r) : 0;
		}
	}
	nng_stats_free(all);
}

uint64_t
sl_conn_handshake_why(sl_conn *c, const sl_hs *before, const sl_hs *now, uint64_t min, char *err)
{
	for (unsigned i = 0; i < c->n_urls; i++) {
		/* (A snapshot that failed reads as zeros: no difference.) */
		uint64_t auth = now->auth[i] > before->auth[i] ? now->auth[i] - before->auth[i] : 0;
		uint64_t other =
		    now->other[i] > before->other[i] ? now->other[i] - before->other[i] : 0;
		int tls = sl_url_is_tls(c->urls[i]);
		/* A plaintext URL asks for one more: a sagad stopping while it
		 * negotiates a connection closes it the same way, once. */
		uint64_t min_plain = min > 1 ? min + 1 : min;
		if (auth >= min) {
			sl_seterr(err,
			    "TLS handshake with sagad at %s failed (%llu times): sagad's "
			    "certificate is not signed by the CA given, does not name %s%s, or has "
			    "expired; or sagad refused the client certificate (expired, or not "
			    "signed by a CA it trusts)",
			    c->urls[i], (unsigned long long)auth,
			    c->tls != NULL && c->tls->server_name != NULL ? c->tls->server_name
									  : "the URL's host",
			    c->tls != NULL && c->tls->server_name != NULL
				? " (the server name set)"
				: " (nng 1.5.2 matches DNS names and the common name, not IP "
				  "addresses: set a server name)");
			return auth;
		}
		if (other >= min && tls) {
			sl_seterr(err,
			    "sagad at %s closed the connection during the TLS handshake (%llu "
			    "times): it requires a client certificate%s",
			    c->urls[i], (unsigned long long)other,
			    c->tls != NULL && c->tls->cert != NULL
				? " and refused the one given (expired, or not signed by a CA "
				  "it trusts)"
				: " and none is set (saga_client_set_tls / saga_worker_set_tls; "
				  "sagactl: --tls-cert and --tls-key)");
			return other;
		}
		if (other >= min_plain && !tls) {
			sl_seterr(err,
			    "sagad at %s closed the connection during the handshake (%llu times): "
			    "if it listens with TLS, use a tls+tcp:// URL and a CA to trust "
			    "(saga_client_set_tls; sagactl: --tls-ca)",
			    c->urls[i], (unsigned long long)other);
			return other;
		}
	}
	return 0;
}

int
sl_conn_pipe_up(sl_conn *c, uint32_t pipe_id)
{
	int up = 0;
	pthread_mutex_lock(&c->mu);
	for (unsigned i = 0; i < c->npipes && !up; i++)
		up = nng_pipe_id(c->pipes[i].pipe) == (int)pipe_id;
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
		if (code == SAGA_OK || code > SAGA_EPERM) {
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
