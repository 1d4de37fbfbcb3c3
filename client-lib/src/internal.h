/*
 * internal.h: what the files of libsaga offer each other. Prefix sl_.
 * Nothing here is exported: the library is built with hidden visibility and
 * libsaga.map lets only saga_* through.
 *
 *   common.c  error and state names (over common/names.c), strings, logging,
 *             error details
 *   conn.c    lists of sagad URLs; the nng REQ socket shared by client and
 *             worker (dial, size limit, reconnect timing, connection
 *             tracking) and the one decoder of replies
 *   client.c  saga_client_*: one synchronous request/reply per call
 *   worker.c  saga_worker_*: long-poll, handler threads, batched reports
 *   barrier.c saga_barrier_*: exactly-once effects in the participant's
 *             PostgreSQL transaction
 *   tls.c     the TLS settings of a client or worker (saga_*_set_tls) and
 *             the nng configuration of each tls+tcp:// dialer
 */
#ifndef SAGA_SL_INTERNAL_H
#define SAGA_SL_INTERNAL_H

#include <nng/nng.h>
#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "saga.h"
#include "wire.h"

/* Longest error detail kept on a handle (bytes, including the NUL). */
#define SL_ERRMSG_MAX 4096

/* Default largest message accepted from sagad. */
#define SL_DEFAULT_MAX_MESSAGE ((size_t)16 << 20)
/* Smallest max_message accepted: below this not even an error reply fits. */
#define SL_MIN_MAX_MESSAGE     ((size_t)1024)

/* Reconnect backoff of every socket (nng doubles from min to max). */
#define SL_RECONN_MIN_MS 50
/* Kept short: a participant should be back within half a second of sagad
 * restarting (dispatch resumes when it reconnects). */
#define SL_RECONN_MAX_MS 500

#define SL_PRINTF(a, b) __attribute__((format(printf, a, b)))

/* ---- common.c ---------------------------------------------------------- */

/* strdup that maps NULL to "". Returns NULL only when out of memory. */
char *sl_strdup(const char *s);

/* Is s (NUL-terminated, NULL allowed) valid UTF-8? */
int sl_utf8_ok(const char *s);

/* Formats an error detail into buf (SL_ERRMSG_MAX bytes), truncating at a
 * UTF-8 boundary. */
void sl_seterr(char *buf, const char *fmt, ...) SL_PRINTF(2, 3);

/* Hands one formatted line to fn (nothing is formatted when fn is NULL). */
void sl_log(saga_log_fn fn, void *user, saga_log_level level, const char *fmt, ...) SL_PRINTF(4, 5);

/* Longest credential accepted (sagad's are 60 characters). */
#define SL_CREDENTIAL_MAX 512

/* A copy of a credential for a handle: NULL or "" = none (*out NULL).
 * SAGA_EINVAL for text that cannot be a credential (control characters,
 * spaces, non-ASCII, too long), SAGA_ENOMEM. The old value is wiped and
 * freed by sl_credential_free. */
int sl_credential_dup(const char *cred, char **out);
void sl_credential_free(char *cred);

/* Sleeps up to ms milliseconds on cv (with mu held) or until signalled. */
void sl_cond_wait_ms(pthread_cond_t *cv, pthread_mutex_t *mu, int64_t ms);

/* Makes a condition variable that waits on CLOCK_MONOTONIC. */
int sl_cond_init(pthread_cond_t *cv);

/* ---- tls.c ------------------------------------------------------------- */

/* What saga_client_set_tls / saga_worker_set_tls were given: the files'
 * contents (read when set, so a bad file is reported then, by name). */
typedef struct sl_tls {
	int set;           /* nonzero once loaded */
	char *ca;          /* PEM: CAs that sagad's certificate must chain to */
	char *cert, *key;  /* PEM: the client's certificate and key; NULL = none */
	char *server_name; /* NULL = each URL's host */
	char *ca_file, *cert_file, *key_file; /* the paths, for messages */
} sl_tls;

/* Does url's transport run over TLS (tls+tcp://, wss://...)? */
int sl_url_is_tls(const char *url);

/* Reads the files into *out (replacing what it held) after checking that
 * nng's TLS can use them. SAGA_EINVAL with err naming the file and why;
 * *out is unchanged on failure. */
int sl_tls_load(sl_tls *out, const char *ca_file, const char *cert_file, const char *key_file,
    const char *server_name, char *err);
void sl_tls_free(sl_tls *t);

/* Configures dialer d (of url, a TLS URL) from t: sagad's certificate is
 * required, checked against t's CAs and t->server_name or url's host; the
 * client certificate shown if any. SAGA_EINVAL with err when t is NULL or
 * not set (a tls+tcp:// URL with no CA to trust). */
int sl_tls_dialer(const sl_tls *t, nng_dialer d, const char *url, char *err);

/* ---- conn.c ------------------------------------------------------------ */

/*
 * A list of sagad URLs, as saga_client_new, saga_worker_new and sagactl take
 * it: comma-separated, whitespace around each entry ignored, 1 to
 * SL_MAX_URLS entries, each one an address nng can dial. The same URL may
 * appear twice (two connections to one sagad).
 */
#define SL_MAX_URLS 16

typedef struct sl_urls {
	size_t n;
	char *url[SL_MAX_URLS]; /* the entries, trimmed */
	char *text;             /* the entries joined by ",", for messages */
} sl_urls;

/* Parses list (NULL = SAGA_DEFAULT_URL) into out. Returns SAGA_OK,
 * SAGA_EINVAL with err (SL_ERRMSG_MAX) naming the entry at fault and why,
 * or SAGA_ENOMEM. On failure out holds nothing to free. */
int sl_urls_parse(const char *list, sl_urls *out, char *err);
void sl_urls_free(sl_urls *u);

/*
 * One REQ socket dialing sagad, at one URL or at several (one dialer each:
 * the socket then sends each request to one of the connections up, in
 * turn). The dials are non-blocking, so sagad may come up later; nng
 * re-dials by itself after failures. The socket's receive limit is set
 * before dialing (nng's default is unlimited and it allocates what a peer
 * claims). A pipe-notify callback keeps the live connections so that a
 * caller can wait for one instead of queueing a send that would have to be
 * cancelled (nng 1.5.2 leaks the message of a cancelled REQ send), and so
 * that they can be replaced when the receive limit changes.
 *
 * Pipes are tracked by id: nng runs a closed socket's last callbacks after
 * nng_close() returns, and those must not count against a new socket.
 *
 * The struct must not move while open: nng holds a pointer to it.
 */
#define SL_MAX_PIPES (2 * SL_MAX_URLS)

typedef struct sl_conn {
	nng_socket sock;
	int open;
	const char *const *urls; /* borrowed from the owner: what each dialer dials */
	unsigned n_urls;
	saga_log_fn log; /* borrowed; may be NULL */
	void *log_user;
	pthread_mutex_t mu;
	pthread_cond_t cv;     /* signalled when a connection comes up, and at close */
	pthread_mutex_t io_mu; /* orders operation starts before nng_close */
	nng_dialer dialers[SL_MAX_URLS];
	unsigned dial_ups[SL_MAX_URLS]; /* connections each dialer made since open */
	struct {
		nng_pipe pipe;
		unsigned url;  /* index of its dialer's URL */
	} pipes[SL_MAX_PIPES]; /* connections up now */
	unsigned npipes;
	int64_t opened_ms; /* wire_mono_ms() at open */
	const sl_tls *tls; /* borrowed from the owner; for tls+tcp:// dialers */
} sl_conn;

/* How long a socket closed right after it was opened waits for its first
 * dials to finish (see sl_conn_close). */
#define SL_DIAL_SETTLE_MS 250

/* Initializes the mutex/cv; call once before sl_conn_open. */
int sl_conn_init(sl_conn *c);
void sl_conn_fini(sl_conn *c);

/* Opens the socket and starts dialing urls[0..n) (1 <= n <= SL_MAX_URLS;
 * the array must outlive the socket). TLS URLs are configured from tls
 * (borrowed: it must outlive the socket; NULL = none, and then a TLS URL is
 * SAGA_EINVAL). err (SL_ERRMSG_MAX) gets the detail on failure: SAGA_EINVAL
 * for a bad URL, or the mapped nng error. */
int sl_conn_open(sl_conn *c, const char *const *urls, unsigned n, size_t max_message,
    const sl_tls *tls, char *err);
/* Changes the receive limit: new connections get it at once; the live
 * ones (which keep the limit they started with) are closed and re-dialed. */
int sl_conn_set_max_message(sl_conn *c, size_t max_message);
/* Closes the socket (once; nng aborts every operation with NNG_ECLOSED). */
void sl_conn_close(sl_conn *c);

/* Waits until a connection is up, the monotonic deadline (ms) passes or
 * the socket closes. Returns nonzero if one is up. */
int sl_conn_wait_up(sl_conn *c, int64_t deadline_ms);

/*
 * Failed handshakes. nng 1.5.2 re-dials by itself and tells nobody why a
 * dial failed, but counts the failures of each dialer in its statistics:
 * "auth" (the TLS handshake failed: a certificate not trusted, a name that
 * does not match, or an alert from sagad) and "other" (the peer closed the
 * connection during the handshake: what a plaintext dialer sees from a TLS
 * listener, and a TLS dialer from one that requires a client certificate
 * it was not shown). A snapshot of the counts, one pair per URL:
 */
typedef struct sl_hs {
	uint64_t auth[SL_MAX_URLS], other[SL_MAX_URLS];
	uint64_t refused[SL_MAX_URLS]; /* connections refused (nothing listens) */
} sl_hs;
void sl_conn_handshakes(sl_conn *c, sl_hs *out);
/* True if, by the snapshot now, no connection was ever made and every URL
 * refused one (nothing listens there): waiting longer is pointless. */
int sl_conn_refused(sl_conn *c, const sl_hs *now);
/* If some URL's dialer failed at least min handshakes between before and
 * now (min + 1 for a plaintext URL's "other" failures, when min > 1),
 * writes why into err (naming the URL, saying whether TLS failed and what
 * to check) and returns that count; otherwise returns 0. */
uint64_t sl_conn_handshake_why(
    sl_conn *c, const sl_hs *before, const sl_hs *now, uint64_t min, char *err);

/* Is the connection with this pipe id still up? */
int sl_conn_pipe_up(sl_conn *c, uint32_t pipe_id);

/* Opens a REQ context with the given resend time (NNG_DURATION_INFINITE =
 * never resend, and fail with NNG_ECONNRESET when the connection drops). */
int sl_ctx_open(sl_conn *c, nng_duration resend, nng_ctx *out);

/*
 * Starts an asynchronous send or receive on ctx unless the socket is
 * closing: nng 1.5.2 can panic when a context operation starts while
 * nng_close() runs in another thread. Returns 0 or NNG_ECLOSED.
 */
int sl_ctx_send(sl_conn *c, nng_ctx ctx, nng_aio *aio);
int sl_ctx_recv(sl_conn *c, nng_ctx ctx, nng_aio *aio);

/*
 * Sends msg on ctx and waits for the reply, with no time limit: nothing is
 * cancelled (see worker.c); sl_conn_close() ends it with NNG_ECLOSED. msg is
 * consumed in all cases. Returns the nng error (not a saga_err).
 */
int sl_ctx_call(sl_conn *c, nng_ctx ctx, nng_aio *aio, nng_msg *msg, nng_msg **reply);

/*
 * Decodes a reply from sagad (always with wire_unpack_response: bounded)
 * and checks it: an Error in the reply returns its code (unknown codes
 * become SAGA_EPROTO) with its message in err; a body other than `want`
 * is SAGA_EPROTO. On success *out is the decoded reply (wire_free).
 */
int sl_decode_reply(
    nng_msg *msg, Sagawire__Response__BodyCase want, Sagawire__Response **out, char *err);

/* Name of a reply body, for messages. */
const char *sl_body_name(Sagawire__Response__BodyCase c);

/* ---- worker.c: replies, for barrier.c ------------------------------------- */

/* Forgets the reply so that another saga_reply_* call can be made. */
void sl_reply_reset(saga_reply *r);

#endif
