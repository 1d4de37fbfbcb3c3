/*
 * saga.h: the public API of libsaga, the client library of sagad.
 *
 * libsaga has two halves that share one connection model:
 *
 *  - the client (saga_client_*): register saga definitions, start sagas,
 *    read their status, list and cancel them. Each call is one synchronous
 *    request/reply with sagad over nng.
 *
 *  - the worker (saga_worker_*): the participant side. A service names
 *    itself (the participant name used in the saga definitions), registers
 *    one handler per rpc it serves (actions and compensations), declares how
 *    many steps it will run at once (its capacity) and calls
 *    saga_worker_run(). The worker dials sagad, long-polls for steps, runs
 *    handlers on its own threads and reports outcomes in batches.
 *
 * Both take sagad's address as a list of URLs, so that one client or worker
 * can use several sagad instances sharing one database (see "Addresses").
 *
 * Conventions
 *  - Every function that can fail returns 0 (SAGA_OK) or a positive saga_err.
 *    saga_strerror() turns it into text; the handle's last error detail
 *    (saga_client_errmsg(), saga_worker_errmsg()) says what exactly failed,
 *    e.g. the server's explanation of why a definition was refused.
 *  - Objects come in _new/_free pairs. _free(NULL) is a no-op. A pointer
 *    returned through an out-parameter belongs to the caller, who releases
 *    it with the matching _free; pointers inside it live as long as it does.
 *  - The library never prints. Give it a log callback to see what it does.
 *  - Threads: a saga_client may be used from one thread at a time; create
 *    one per thread for parallel calls. Worker handlers run on the worker's
 *    own threads, up to `capacity` at once (in total, however many sagad
 *    instances it serves).
 *  - Payloads are opaque bytes to sagad: normally a serialized protobuf
 *    message of the type the saga definition declares.
 *
 * This header is C99 and C++ compatible and depends on nothing but the C
 * standard library and saga_base.h (installed with it).
 */
#ifndef SAGA_H
#define SAGA_H

#include <stddef.h>
#include <stdint.h>

#include "saga_base.h"

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__) && __GNUC__ >= 4
#define SAGA_API __attribute__((visibility("default")))
#else
#define SAGA_API
#endif

/* ------------------------------------------------------------------------
 * Errors, version, default address: saga_base.h (shared with sagad). The
 * error values are stable: they travel on the wire and scripts see them as
 * sagactl exit codes.
 * ------------------------------------------------------------------------ */

/* A static, never-NULL description of an error code. */
SAGA_API const char *saga_strerror(int err);

/* Library version as "MAJOR.MINOR.PATCH". */
SAGA_API const char *saga_version(void);

/* ------------------------------------------------------------------------
 * Logging. The library never writes to stdout/stderr on its own.
 * ------------------------------------------------------------------------ */
typedef enum saga_log_level {
	SAGA_LOG_ERROR = 0,
	SAGA_LOG_WARN = 1,
	SAGA_LOG_INFO = 2,
	SAGA_LOG_DEBUG = 3
} saga_log_level;

/* Called with one complete line (no trailing newline). May be called from
 * any of the library's threads, concurrently. */
typedef void (*saga_log_fn)(saga_log_level level, const char *line, void *user);

/* ------------------------------------------------------------------------
 * Saga and step states, as reported by sagad.
 * ------------------------------------------------------------------------ */
typedef enum saga_state {
	SAGA_STATE_UNKNOWN = 0,
	SAGA_STATE_RUNNING = 1,      /* going forward */
	SAGA_STATE_COMPENSATING = 2, /* undoing completed steps */
	SAGA_STATE_COMPLETED = 3,    /* terminal: every step succeeded */
	SAGA_STATE_COMPENSATED = 4,  /* terminal: every completed step undone */
	SAGA_STATE_FAILED = 5,       /* parked: a compensation gave up; needs an operator */
	SAGA_STATE_TERMINATED = 6    /* terminal: an operator stopped it without compensating */
} saga_state;

typedef enum saga_step_state {
	SAGA_STEP_UNKNOWN = 0,
	SAGA_STEP_PENDING = 1,         /* waiting for its dependencies, or never reached */
	SAGA_STEP_RUNNING = 2,         /* action dispatched */
	SAGA_STEP_RETRY_WAIT = 3,      /* action failed an attempt; backing off */
	SAGA_STEP_SUCCEEDED = 4,       /* action done */
	SAGA_STEP_FAILED = 5,          /* action failed for good */
	SAGA_STEP_COMPENSATING = 6,    /* compensation dispatched */
	SAGA_STEP_COMP_RETRY_WAIT = 7, /* compensation failed an attempt; backing off */
	SAGA_STEP_COMPENSATED = 8,     /* undone (or nothing to undo) */
	SAGA_STEP_COMP_FAILED = 9      /* compensation gave up */
} saga_step_state;

/* Lower-case names ("running", "comp_retry_wait", ...). Never NULL. */
SAGA_API const char *saga_state_name(saga_state s);
SAGA_API const char *saga_step_state_name(saga_step_state s);
/* Parse a name as printed by saga_state_name(); returns SAGA_STATE_UNKNOWN
 * if the name is not a state. */
SAGA_API saga_state saga_state_parse(const char *name);
/* Nonzero for COMPLETED, COMPENSATED and FAILED. */
SAGA_API int saga_state_is_final(saga_state s);

/* ------------------------------------------------------------------------
 * Addresses. Wherever sagad's address is taken (saga_client_new,
 * saga_worker_new, and sagactl's --url and SAGA_URL) it is a list of URLs:
 *
 *     "tcp://10.0.0.1:7700,tcp://10.0.0.2:7700"
 *
 * separated by commas, whitespace around each ignored, 1 to SAGA_MAX_URLS
 * of them, each an address nng can dial ("tcp://HOST:PORT",
 * "ipc:///run/sagad.sock", "tls+tcp://HOST:PORT", ...). NULL means
 * SAGA_DEFAULT_URL. A single URL is a list of one and behaves as it always
 * did. An empty list, an empty entry (",," or a comma at either end), more
 * than SAGA_MAX_URLS entries or an entry nng cannot dial is SAGA_EINVAL;
 * saga_url_list_check() says which entry and why. The same URL may be given
 * twice (two connections to one sagad).
 *
 * List every sagad instance that shares the database: any instance starts
 * sagas and answers reads, and each dispatches the steps of the sagas it
 * owns. A client sends each call to one of the instances it is connected to,
 * in turn, and to the others while one is down; a worker keeps a connection
 * to every instance and serves them all (see saga_worker_new).
 *
 * TLS. A "tls+tcp://HOST:PORT" URL speaks TLS 1.2 (nng 1.5.2 offers no
 * other version). sagad's certificate is always checked: set the CA file
 * with saga_client_set_tls / saga_worker_set_tls, or a call fails with
 * SAGA_EINVAL ("no CA is set"). The certificate must name HOST, or the
 * server name given there, as a DNS name or as its common name: nng 1.5.2
 * never matches IP address entries, so for "tls+tcp://10.0.0.5:7700" the
 * certificate needs a DNS entry "10.0.0.5" or a server name must be set.
 * A handshake that keeps failing (a certificate not trusted on either
 * side, a plaintext URL for a TLS sagad) fails a call with SAGA_ECONN
 * within about a second, the detail saying that TLS failed and what to
 * check. See docs/SECURITY.md.
 * ------------------------------------------------------------------------ */
#define SAGA_MAX_URLS 16

/* Checks a URL list as saga_client_new and saga_worker_new do, without
 * connecting anywhere. Returns SAGA_OK, or SAGA_EINVAL with the reason in
 * err (errlen bytes, may be NULL/0), naming the entry at fault, e.g.
 * `entry 2 of the sagad URL list, "tcp://b", is not a sagad URL: ...`. */
SAGA_API int saga_url_list_check(const char *urls, char *err, size_t errlen);

/* ========================================================================
 * The client
 * ======================================================================== */
typedef struct saga_client saga_client;

/* Connects to sagad at `urls`, a URL list (see "Addresses"; NULL =
 * SAGA_DEFAULT_URL), e.g. "tcp://127.0.0.1:7700" or
 * "tcp://10.0.0.1:7700,tcp://10.0.0.2:7700". The connections are made
 * lazily and re-made after failures, so this succeeds even if sagad is not
 * up yet; calls then fail with SAGA_ECONN or SAGA_ETIMEDOUT. While no
 * connection was ever made and every URL refuses one (nothing listens
 * there), a call fails at once with SAGA_ECONN; once connected, a call
 * waits for a connection again (within its timeout) across a restart.
 *
 * With several URLs the client dials each and sends every call to one of
 * the instances connected at that moment, taking them in turn; a call waits
 * (within its timeout) only while none is connected. A call sent to an
 * instance that goes away before answering fails with SAGA_ECONN, as with
 * one URL: the client never sends a request twice, so retrying is the
 * caller's choice (a start with an idempotency key is safe to retry). The
 * one exception is a start given no key: it gets one of its own and is
 * sent again, within the call's timeout, after such a drop.
 * Error details name the whole list. */
SAGA_API int saga_client_new(const char *urls, saga_client **out);
SAGA_API void saga_client_free(saga_client *c);

/* Per-call timeout in milliseconds (default 10000). */
SAGA_API int saga_client_set_timeout(saga_client *c, int timeout_ms);
/* Largest reply accepted, in bytes (default 16 MiB). */
SAGA_API int saga_client_set_max_message(saga_client *c, size_t bytes);
SAGA_API void saga_client_set_log(saga_client *c, saga_log_fn fn, void *user);

/*
 * TLS, for tls+tcp:// URLs (see "TLS" below): ca_file is the PEM file of
 * the CAs that sagad's certificate must be signed by (required);
 * cert_file and key_file the client's certificate and its unencrypted key,
 * for a sagad that requires client certificates (mutual TLS; both or
 * neither, NULL = none); server_name the name sagad's certificate must
 * carry (NULL = the host of each URL). The files are read now: a missing
 * or unusable file is SAGA_EINVAL with saga_client_errmsg() naming it.
 * Applies to the connections made from now on (calling it again re-dials).
 * The library never reads the environment: sagactl's --tls-* options and
 * SAGA_TLS_* variables are sagactl's.
 */
SAGA_API int saga_client_set_tls(saga_client *c, const char *ca_file, const char *cert_file,
    const char *key_file, const char *server_name);

/* The credential sent with every call ("<id>.<secret>", as `sagactl
 * principal create` prints it), for a sagad with auth on (see
 * docs/SECURITY.md); copied. NULL or "" = none. SAGA_EINVAL for text that
 * cannot be a credential (spaces, control characters, non-ASCII, longer
 * than 512). A sagad with auth on answers a call without a valid one with
 * SAGA_EAUTH, and one the credential's role does not allow with
 * SAGA_EPERM. The library never reads it from the environment or a file:
 * that is the application's choice (sagactl reads SAGA_CREDENTIAL_FILE). */
SAGA_API int saga_client_set_credential(saga_client *c, const char *credential);

/* Detail of the last failed call on this handle ("" if none). Valid until
 * the next call on the handle. */
SAGA_API const char *saga_client_errmsg(const saga_client *c);

/* ---- definitions ---- */

typedef struct saga_registered {
	char *name;       /* saga name: the service's full name */
	uint32_t version; /* version now current for that name */
	int unchanged;    /* nonzero: identical to the latest; no new version */
	uint32_t steps;   /* number of steps */
} saga_registered;

typedef struct saga_register_result {
	size_t count;
	saga_registered *defs;
} saga_register_result;

/* Registers every saga service in a serialized FileDescriptorSet (as written
 * by protoc --include_imports --descriptor_set_out). An invalid definition
 * fails with SAGA_EDEFINITION and saga_client_errmsg() names the problem.
 * Registering a definition identical to the latest version is a no-op that
 * returns that version. A new version whose types would read the payloads
 * of sagas still unfinished on earlier versions differently (a field number
 * of the input or of a step's result, reused with another type or
 * cardinality) is refused with SAGA_EDEFINITION naming the field;
 * saga_client_register_force registers it anyway (every participant must
 * then read both). */
SAGA_API int saga_client_register(
    saga_client *c, const void *descriptor_set, size_t len, saga_register_result **out);
SAGA_API int saga_client_register_force(
    saga_client *c, const void *descriptor_set, size_t len, saga_register_result **out);
SAGA_API void saga_register_result_free(saga_register_result *r);

/* ---- starting ---- */

/*
 * Option structs (saga_start_opts, saga_list_filter) begin with struct_size
 * so that fields can be added at their end without breaking programs built
 * against an older saga.h: set it to sizeof the struct (the *_INIT macros
 * do), or leave it 0, which means the fields of libsaga 0.1 (every field
 * declared here today). libsaga reads a later field only when struct_size
 * covers it, and refuses a struct_size too small for the 0.1 fields
 * (SAGA_EINVAL). Zero the whole struct, then set what you need.
 */
typedef struct saga_start_opts {
	size_t struct_size;          /* sizeof(saga_start_opts), or 0 (see above) */
	uint32_t version;            /* 0 = latest version of the definition */
	const char *idempotency_key; /* Same key, same saga, always. NULL or "" = libsaga
	                                makes one for this call ("auto-<uuid>"): if the
	                                connection drops before the reply, the call sends
	                                the start again (within its timeout) and gets the
	                                same saga. To retry a start yourself, give a key. */
	const char *business_key;    /* NULL = none. Searchable label. */
	uint32_t deadline_ms;        /* 0 = the definition's (sagaspec.saga).deadline_ms, if
	                                any. Past it the saga stops going forward and
	                                compensates. */
	const char *traceparent;     /* W3C trace context of the caller
	                                ("00-<32 hex>-<16 hex>-<2 hex>"), so the saga joins the
	                                caller's trace; NULL or "" = sagad starts a trace whose
	                                trace id is the saga id. Every dispatch carries it. */
} saga_start_opts;
/* saga_start_opts o = SAGA_START_OPTS_INIT; then set what you need. */
/* clang-format off */
#define SAGA_START_OPTS_INIT { sizeof(saga_start_opts), 0, NULL, NULL, 0, NULL }
/* clang-format on */

/* Starts a saga of `definition` with `input` (may be NULL if len is 0).
 * On success *saga_id (caller frees with saga_string_free) holds the new
 * saga's id, or the existing one's if the idempotency key was used before;
 * then *existing (if not NULL) is set nonzero. opts may be NULL. */
SAGA_API int saga_client_start(saga_client *c, const char *definition, const void *input,
    size_t len, const saga_start_opts *opts, char **saga_id, int *existing);

/* Starts a saga and waits for its outcome in one request: sagad answers
 * once the saga is final (completed, compensated or failed) and that is
 * committed. Arguments as for saga_client_start; *state receives the
 * final state. If timeout_ms (< 0 = no limit) passes first, returns
 * SAGA_ETIMEDOUT with *saga_id set (the saga goes on) and *state its state
 * then. *saga_id is the caller's to free (saga_string_free) whenever it is
 * set. Saves a round trip per saga over start then wait. */
SAGA_API int saga_client_run(saga_client *c, const char *definition, const void *input, size_t len,
    const saga_start_opts *opts, int timeout_ms, char **saga_id, saga_state *state, int *existing);

SAGA_API void saga_string_free(char *s);

/* ---- status ---- */

typedef struct saga_step_info {
	char *name;
	char *participant;
	char *compensation; /* "" if the step has none */
	size_t n_depends_on;
	char **depends_on;
	saga_step_state state;
	uint32_t attempts;      /* action attempts made */
	uint32_t comp_attempts; /* compensation attempts made */
	int64_t started_us;     /* unix microseconds; 0 = never */
	int64_t finished_us;
	int64_t comp_started_us;
	int64_t comp_finished_us;
	int64_t next_attempt_us; /* when a retry is due, if waiting */
	uint32_t completion_seq; /* 1-based order of completion; 0 = not completed */
	char *last_error;        /* "" if none */
	uint8_t *result;         /* action result bytes */
	size_t result_len;
	int queued; /* running or compensating, but the attempt is not sent yet: no
	               participant connected, its capacity full or its breaker open */
} saga_step_info;

/* One entry of a saga's history. */
typedef struct saga_event {
	int64_t at_us;    /* unix microseconds */
	char *type;       /* "started", "attempt", "succeeded", "attempt failed", "failed",
	                     "compensating", "compensation attempt", "compensated step",
	                     "compensation attempt failed", "compensation failed",
	                     "completed", "compensated", "parked", "operator" */
	char *step;       /* the step's name; "" for the saga itself */
	uint32_t attempt; /* 0 if not about an attempt */
	char *detail;     /* error, reason, or "" */
} saga_event;

typedef struct saga_info {
	char *saga_id;
	char *definition;
	uint32_t version;
	saga_state state;
	char *idempotency_key; /* "" if none */
	char *business_key;    /* "" if none */
	int64_t created_us;
	int64_t updated_us;
	char *error;         /* why it compensated or parked; "" if none */
	int64_t deadline_us; /* unix microseconds; 0 = no deadline */
	size_t n_events;
	saga_event *events; /* its history, oldest first (sagad keeps the first 20 and
	                       the last 180 of a longer one) */
	uint8_t *input;
	size_t input_len;
	size_t n_steps;
	saga_step_info *steps; /* in definition order */
	char *traceparent;     /* the W3C trace context the saga runs in */
	/* Sensitive fields sagad left out of `input` and the steps' `result`
	 * (fields marked (sagaspec.sensitive), docs/SECURITY.md), each as a
	 * path: "input.<field path>" or "steps.<step>.result.<field path>",
	 * with proto field names ("input.card.number"); a field path "*" means
	 * the whole payload. Empty when nothing was left out. */
	size_t n_redacted;
	char **redacted;
	char *rerun_of; /* the saga this one reruns (saga_client_rerun); "" if none */
	size_t n_rerun_as;
	char **rerun_as; /* the sagas this one was rerun as, oldest first */
} saga_info;

/* Full status of one saga. SAGA_ENOTFOUND if there is no such saga.
 * Sensitive fields are left out (saga_info.redacted). */
SAGA_API int saga_client_get(saga_client *c, const char *saga_id, saga_info **out);
/* The same with sensitive fields shown, if sagad lets this caller see them
 * (else they are left out as by saga_client_get). */
SAGA_API int saga_client_get_revealed(saga_client *c, const char *saga_id, saga_info **out);
SAGA_API void saga_info_free(saga_info *info);

/* Waits until the saga is final (completed, compensated or failed) or
 * timeout_ms passes (SAGA_ETIMEDOUT; *out is then the last status seen).
 * It does not poll: sagad holds the request and answers it the moment the
 * saga ends (a long wait is a series of requests of at most 25 s each),
 * then the full status is read once. A negative timeout_ms waits for ever. out may be
 * NULL. */
SAGA_API int saga_client_wait(saga_client *c, const char *saga_id, int timeout_ms, saga_info **out);

/* ---- listing ---- */

typedef struct saga_list_filter {
	size_t struct_size;       /* sizeof(saga_list_filter), or 0 (see saga_start_opts) */
	const saga_state *states; /* NULL/0 = any */
	size_t n_states;
	const char *definition;    /* NULL = any */
	const char *business_key;  /* NULL = any */
	int64_t created_after_us;  /* inclusive; 0 = unbounded */
	int64_t created_before_us; /* exclusive; 0 = unbounded */
	uint32_t limit;            /* 0 = 50; at most 1000 */
	const char *page_token;    /* NULL = first page */
	uint32_t version;          /* with definition: only this version; 0 = any */
	int counts;                /* nonzero: also count the matching sagas per state
	                              (ignoring states, page and limit) into
	                              saga_list.state_counts. Costs a scan of the
	                              matching rows: use a filter on big tables. */
} saga_list_filter;
/* clang-format off */
#define SAGA_LIST_FILTER_INIT \
	{ sizeof(saga_list_filter), NULL, 0, NULL, NULL, 0, 0, 0, NULL, 0, 0 }
/* clang-format on */

typedef struct saga_summary {
	char *saga_id;
	char *definition;
	uint32_t version;
	saga_state state;
	char *business_key;
	int64_t created_us;
	int64_t updated_us;
	char *error;
	uint32_t steps_total;
	uint32_t steps_done;
	char *rerun_of; /* the saga this one reruns; "" if none */
} saga_summary;

typedef struct saga_list {
	size_t count;
	saga_summary *sagas;      /* newest first */
	char *next_page_token;    /* "" = last page */
	int has_counts;           /* the filter asked for counts */
	uint64_t state_counts[7]; /* indexed by saga_state (RUNNING..TERMINATED) */
} saga_list;

/* Lists sagas matching the filter, newest first. filter may be NULL. */
SAGA_API int saga_client_list(saga_client *c, const saga_list_filter *filter, saga_list **out);
SAGA_API void saga_list_free(saga_list *l);

/* ---- definitions ---- */

typedef struct saga_definition_step {
	char *name;
	char *participant;
	char *compensation; /* "" = nothing to undo */
	size_t n_depends_on;
	char **depends_on;
	uint32_t timeout_ms;
	uint32_t max_attempts;
	uint32_t compensation_timeout_ms;   /* 0 if no compensation */
	uint32_t compensation_max_attempts; /* 0 if no compensation */
	uint32_t heartbeat_timeout_ms;      /* 0 = the attempt's timeout */
	char *input_type;                   /* the action rpc's request message */
	char *output_type;                  /* its response message: the step's result */
} saga_definition_step;

typedef struct saga_definition {
	char *name;
	uint32_t version;
	int64_t registered_us;
	char *input_type; /* the saga input message */
	char *description;
	uint32_t deadline_ms;
	char *business_key; /* input field giving the business key; "" = none */
	size_t n_steps;
	saga_definition_step *steps; /* in declaration order */
} saga_definition;

typedef struct saga_definition_list {
	size_t count;
	saga_definition *definitions;
	uint8_t *descriptor_set; /* with a definition named: the FileDescriptorSet the
	                            version asked for was registered with (decode its
	                            inputs and results with it); else NULL */
	size_t descriptor_set_len;
} saga_definition_list;

/* Describes registered definitions. definition NULL: the latest version of
 * every definition, by name. Else every version of that definition, newest
 * first, and the descriptor set of `version` (0 = the latest).
 * SAGA_ENOTFOUND for an unknown definition or version. */
SAGA_API int saga_client_describe(
    saga_client *c, const char *definition, uint32_t version, saga_definition_list **out);
SAGA_API void saga_definition_list_free(saga_definition_list *l);

/* Encodes a saga input written as JSON into the bytes of the input message
 * of `definition` at `version` (0 = the latest), for saga_client_start or
 * saga_client_run. json is len bytes of UTF-8 JSON text (no NUL needed).
 * The types come from the descriptor set sagad stores for that version
 * (one describe call to sagad per encode); the mapping is protobuf's proto3
 * JSON mapping: keys are the fields' lowerCamelCase JSON names or their
 * proto names, 64-bit integers are numbers or decimal strings, bytes are
 * base64, enums are names or numbers, well-known types take their JSON
 * forms (sagactl's `start --input` reads its JSON the same way). Start with
 * the same version you encoded with (0 and a registration in between could
 * differ). On success *out (free with saga_bytes_free) holds *out_len
 * bytes; an input that encodes to nothing ({}) gives *out NULL, *out_len 0.
 * Errors: SAGA_EINVAL for text that is not JSON or a value that does not
 * fit its field, with saga_client_errmsg naming the type and the JSON path
 * of the value at fault, e.g. "the input is not a valid shop.OrderRequest:
 * items[2].quantity: expected an integer, got \"abc\""; SAGA_EDEFINITION if
 * sagad holds no readable descriptor set for that version; SAGA_ENOMEM; and
 * the errors of saga_client_describe (SAGA_ENOTFOUND for an unknown
 * definition or version, SAGA_ECONN, ...). Input is bounded as sagad's
 * messages are: nesting at most 100 levels, the result at most the
 * client's message limit (saga_client_set_max_message). */
SAGA_API int saga_client_encode_json(saga_client *c, const char *definition, uint32_t version,
    const char *json, size_t len, uint8_t **out, size_t *out_len);
/* Frees bytes libsaga returned (saga_client_encode_json). NULL is a no-op. */
SAGA_API void saga_bytes_free(void *p);

/* ---- cancel ---- */

/* Cancels a running saga: it stops going forward and compensates what it
 * completed. reason may be NULL. *state_after (may be NULL) receives the
 * saga's state once the cancel is recorded. Cancelling a saga that is
 * already compensating succeeds; one that is final fails with SAGA_ESTATE. */
SAGA_API int saga_client_cancel(
    saga_client *c, const char *saga_id, const char *reason, saga_state *state_after);

/* ---- operator actions ---- */

/* Retries a step now, its attempts counted from 1 again: a step waiting to
 * retry (running saga), or a compensation waiting to retry or failed (a
 * parked saga goes back to compensating). reason (may be NULL) goes into the
 * saga's history. SAGA_ESTATE if the step is in no such state,
 * SAGA_ENOTFOUND if there is no such saga, SAGA_EINVAL for an unknown step.
 * *state_after (may be NULL) receives the saga's state once recorded. */
SAGA_API int saga_client_retry_step(saga_client *c, const char *saga_id, const char *step,
    const char *reason, saga_state *state_after);
/* Marks a step done by hand instead of running it again: a step waiting to
 * retry becomes succeeded (no result), a compensation waiting to retry or
 * failed becomes compensated; the saga then moves on. reason is required
 * and goes into the saga's history. Errors as for saga_client_retry_step. */
SAGA_API int saga_client_skip_step(saga_client *c, const char *saga_id, const char *step,
    const char *reason, saga_state *state_after);

/* Terminates a running, compensating or parked saga: it stops at once
 * WITHOUT compensating (SAGA_STATE_TERMINATED); nothing more is dispatched
 * and late outcomes of steps in flight are ignored. reason is required and
 * goes into the saga's history with the caller's principal. SAGA_ESTATE if
 * the saga is already completed, compensated or terminated. */
SAGA_API int saga_client_terminate(
    saga_client *c, const char *saga_id, const char *reason, saga_state *state_after);
/* Forces a step succeeded with result (result_len bytes, a serialized
 * message of the step's output type; may be empty): a step running (in
 * flight or queued, its outcome unknown) or waiting to retry, in a running
 * saga. The saga goes on as if the participant had answered; a late answer
 * of the abandoned attempt is ignored. reason is required. The general form
 * of saga_client_skip_step for actions (skip = forced succeeded with no
 * result, only from waiting to retry). */
SAGA_API int saga_client_force_succeeded(saga_client *c, const char *saga_id, const char *step,
    const uint8_t *result, size_t result_len, const char *reason, saga_state *state_after);
/* Forces a step compensated (undone by hand), in a compensating or parked
 * saga: a step owed an undo, being undone, waiting to retry its undo, or
 * whose undo failed. A parked saga resumes compensating. reason is
 * required. */
SAGA_API int saga_client_force_compensated(saga_client *c, const char *saga_id, const char *step,
    const char *reason, saga_state *state_after);
/* Starts a finished saga (completed, compensated, failed or terminated)
 * again with its input, as a new saga linked to it (saga_info.rerun_of /
 * rerun_as). idempotency_key (may be NULL): the same key gives the same new
 * saga, as for saga_client_start. latest_version: nonzero = on the latest
 * version of its definition, 0 = on the version it ran. *new_saga_id
 * (free with saga_string_free) receives the new saga's id. */
SAGA_API int saga_client_rerun(saga_client *c, const char *saga_id, const char *idempotency_key,
    int latest_version, char **new_saga_id);

/* ---- operator actions on many sagas ---- */

/* The action of a batch (values are sagad's wire values). */
typedef enum saga_batch_action {
	SAGA_BATCH_RETRY = 1,     /* retry_step of opts.step in each saga */
	SAGA_BATCH_TERMINATE = 3, /* terminate (opts.reason required) */
	SAGA_BATCH_RERUN = 6,     /* rerun each finished saga */
	SAGA_BATCH_CANCEL = 7     /* cancel each running saga */
} saga_batch_action;

typedef struct saga_batch_opts {
	size_t struct_size; /* sizeof(saga_batch_opts), or 0 */
	saga_batch_action action;
	const char *step;            /* SAGA_BATCH_RETRY: the step to retry */
	const char *reason;          /* into each saga's history; NULL = none */
	int dry_run;                 /* nonzero: change nothing; say what would be tried on
	                             this page and count, over every page, the matching
	                             sagas the action applies to (saga_batch_result.applicable) */
	int latest_version;          /* SAGA_BATCH_RERUN: on the latest definition version */
	const char *idempotency_key; /* SAGA_BATCH_RERUN: each new saga's key is
	                                "<key>/<old saga id>", so running the batch
	                                again reruns no saga twice; NULL = none */
} saga_batch_opts;

typedef struct saga_batch_item {
	char *saga_id;
	int done;          /* the action was taken (dry run: would be tried) */
	int code;          /* not done: the saga_err why (SAGA_ESTATE: not in a state
	                      the action applies to) */
	char *why;         /* not done: why, as text; "" when done */
	saga_state state;  /* done: the saga's state after (rerun: the new saga's) */
	char *new_saga_id; /* rerun: the new saga; "" otherwise */
} saga_batch_item;

typedef struct saga_batch_result {
	size_t count;
	saga_batch_item *items; /* the sagas of this page, in list order */
	char *next_page_token;  /* "" = no more; else put it in filter.page_token and
	                           call again for the next page */
	uint32_t done, skipped;
	uint64_t applicable; /* dry run only (see dry_run) */
} saga_batch_result;

/* Applies opts->action to every saga matching filter (the filter of
 * saga_client_list; NULL = every saga), one page per call: at most
 * filter->limit sagas (default 50, at most 100) from filter->page_token on.
 * Each saga gets the command a single call would send, wherever it runs,
 * and its outcome is in (*out)->items. Free with saga_batch_result_free. */
SAGA_API int saga_client_batch(saga_client *c, const saga_list_filter *filter,
    const saga_batch_opts *opts, saga_batch_result **out);
SAGA_API void saga_batch_result_free(saga_batch_result *r);

/* ---- participants ---- */

/* What sagad knows of one participant: its connections and its circuit
 * breaker (see README, "Circuit breaker"). */
typedef struct saga_participant {
	char *name;
	uint32_t connections;          /* connected worker connections */
	uint32_t capacity;             /* their declared capacity, summed */
	uint32_t in_flight;            /* steps dispatched, not yet answered */
	uint32_t queued;               /* steps waiting in sagad for a dispatch */
	char *breaker;                 /* "closed", "open" or "half-open" */
	int64_t breaker_open_until_us; /* while open: when a probe may go (unix us) */
	uint32_t breaker_opened;       /* times it opened since sagad started */
	uint32_t window_attempts;      /* attempts ended in the breaker's current window */
	uint32_t window_failures;      /* of which retryable errors or timeouts */
} saga_participant;

typedef struct saga_participant_list {
	size_t count;
	saga_participant *participants; /* by name */
} saga_participant_list;

/* Every participant sagad knows: connected, with steps waiting for one, or
 * gone for less than sagad's participant_series_ttl_ms (then forgotten). */
SAGA_API int saga_client_participants(saga_client *c, saga_participant_list **out);
SAGA_API void saga_participant_list_free(saga_participant_list *l);

/* ---- principals (admin) ---- */

/* Who may call sagad when auth is on (docs/SECURITY.md). */
typedef struct saga_principal {
	char *id; /* 16 hex characters: the first part of its credential */
	char *name;
	char *role;        /* "participant", "client", "operator" or "admin" */
	char *participant; /* role participant: the name it polls and reports as; else "" */
	size_t n_definitions;
	char **definitions; /* the only definitions it may use; none = all */
	int64_t created_us; /* unix microseconds */
	char *created_by;   /* the name of the principal that created it */
	int64_t revoked_us; /* 0 = active */
} saga_principal;

typedef struct saga_principal_list {
	size_t count;
	saga_principal *principals; /* by name */
} saga_principal_list;

/* Creates a principal (the caller must be an admin): name (unique among
 * the active ones; A-Z a-z 0-9 _ - . @ :), role "participant", "client",
 * "operator" or "admin"; participant (role participant only; NULL = name)
 * the participant name it may poll and report as; definitions (roles
 * client and operator only; n_definitions 0 = all) the definitions it is
 * limited to. *credential receives its credential (free with
 * saga_string_free): sagad keeps only a hash, so it cannot be shown
 * again. *out (may be NULL) the principal. SAGA_EEXIST if an active
 * principal has that name. */
SAGA_API int saga_client_principal_create(saga_client *c, const char *name, const char *role,
    const char *participant, const char *const *definitions, size_t n_definitions,
    char **credential, saga_principal_list **out);
/* Every principal, active and revoked (admin). */
SAGA_API int saga_client_principal_list(saga_client *c, saga_principal_list **out);
/* Revokes the active principal with that name or id (admin): its
 * credential is refused by every sagad within 2 s. *out (may be NULL)
 * receives it. SAGA_ENOTFOUND if there is none; SAGA_ESTATE for the last
 * active admin. */
SAGA_API int saga_client_principal_revoke(
    saga_client *c, const char *name_or_id, saga_principal_list **out);
SAGA_API void saga_principal_list_free(saga_principal_list *l);

/* ========================================================================
 * The worker (participant side)
 * ======================================================================== */
typedef struct saga_worker saga_worker;

typedef enum saga_step_kind { SAGA_ACTION = 1, SAGA_COMPENSATION = 2 } saga_step_kind;

/* The result of an earlier step, handed to a later one. */
typedef struct saga_step_result {
	const char *step;
	const uint8_t *data;
	size_t len;
} saga_step_result;

/* Everything a handler knows about the step it runs. Valid only during the
 * handler call. */
typedef struct saga_step {
	const char *saga_id;    /* canonical UUID text */
	const char *definition; /* saga name */
	uint32_t version;
	const char *step; /* the step's name (its action rpc) */
	const char *rpc;  /* rpc being run: the action or the compensation */
	saga_step_kind kind;
	uint32_t attempt;            /* 1-based attempt of this kind */
	const char *idempotency_key; /* stable across attempts and redeliveries */
	uint32_t timeout_ms;         /* sagad gives up on this attempt after this */
	const uint8_t *input;        /* the saga input */
	size_t input_len;
	size_t n_results;
	const saga_step_result *results; /* results of the steps this one depends on;
	                                           a compensation also gets its own step's result */
	const char *traceparent; /* W3C trace context for this attempt: the saga's trace id and
	                            flags, and a parent id naming the attempt. Start the
	                            handler's span as its child and the participant's
	                            tracing joins the saga's trace. "" if sagad sent none
	                            (or one that is not valid). */
} saga_step;

/* Looks up the result of a named step among those the dispatch carried:
 * the steps this one depends on and, for a compensation, its own step.
 * NULL means there is none: no such step, or (for a compensation's own
 * step) an action that never answered with a success, e.g. one that timed
 * out and is undone as uncertain. A result with len 0 is an empty result,
 * which a success may carry. */
SAGA_API const saga_step_result *saga_step_find_result(const saga_step *s, const char *step);

/* A handler's answer. Exactly one of the saga_reply_* calls must be made
 * before the handler returns; if none is, the step is reported as a
 * retryable error "handler returned without replying". */
typedef struct saga_reply saga_reply;

/* Success, with result bytes (copied; may be NULL/0). */
SAGA_API int saga_reply_success(saga_reply *r, const void *result, size_t len);
/* Transient failure: sagad retries with backoff until max attempts. */
SAGA_API int saga_reply_retry(saga_reply *r, const char *error);
/* Business failure: no retry; the saga compensates. */
SAGA_API int saga_reply_fail(saga_reply *r, const char *error);
/* Before replying, from the handler: tells sagad this attempt is alive, so
 * its timeout starts again (from now, for the step's heartbeat_timeout_ms,
 * default its timeout_ms). A long step calls it regularly; one that stops
 * heartbeating times out like any other. Heartbeats closer than 100 ms to
 * the previous one are not sent. Returns SAGA_ESTATE after the reply; on a
 * reply from saga_reply_new() it does nothing. */
SAGA_API int saga_reply_heartbeat(saga_reply *r);

/* For testing handlers outside a worker: a reply to pass to a handler, and
 * what the handler put in it. */
typedef enum saga_outcome {
	SAGA_OUTCOME_NONE = 0, /* no saga_reply_* call yet */
	SAGA_OUTCOME_SUCCESS = 1,
	SAGA_OUTCOME_RETRY = 2,
	SAGA_OUTCOME_FAIL = 3
} saga_outcome;
/* A reply accepting results up to max_result bytes (0 = 16 MiB). */
SAGA_API saga_reply *saga_reply_new(size_t max_result);
SAGA_API void saga_reply_free(saga_reply *r);
/* The outcome so far; result/len/error (each may be NULL) receive pointers
 * valid until the reply is freed (error is "" for a success). */
SAGA_API saga_outcome saga_reply_outcome(
    const saga_reply *r, const uint8_t **result, size_t *len, const char **error);

typedef void (*saga_handler_fn)(const saga_step *step, saga_reply *reply, void *user);

/* A worker for `participant`, dialing sagad at `urls`, a URL list (see
 * "Addresses"; NULL = SAGA_DEFAULT_URL).
 *
 * With several URLs the worker keeps one connection to each and serves
 * them all at once: every sagad instance dispatches only the steps of the
 * sagas it owns, so each connection keeps a poll outstanding at its
 * instance. A step's outcome and its heartbeats go back on the connection
 * the step came from, never to another instance. A connection that drops
 * is re-made by itself while the others go on working; the instance
 * redelivers the steps it had sent on it, as with one URL.
 *
 * The capacity is shared by the connections: at most `capacity` handlers
 * run at once in total, and each connection declares to its instance (in
 * its polls) only slots that no other connection holds or is owed:
 *  - a connection whose instance has work (its last poll brought steps)
 *    may take every such slot, and is owed its share of the capacity
 *    (capacity / number of URLs, rounded) for as long as it has work: the
 *    others do not take slots from that share, and one holding more than
 *    its part declares less until its steps have finished;
 *  - a connection whose instance had nothing for a whole poll (sagad's
 *    --poll-timeout-ms, 20 s by default), or is unreachable, asks for one
 *    slot beyond the steps it still runs, enough to receive a step at
 *    once; the rest of its share is lent to the busy connections and comes
 *    back to it as their steps finish once it has work again.
 * So no instance is starved while another is idle, for however long, and a
 * busy instance gets the whole capacity but one slot per idle instance.
 * With one URL the connection always declares the whole capacity, as it
 * did before lists. */
SAGA_API int saga_worker_new(const char *urls, const char *participant, saga_worker **out);
SAGA_API void saga_worker_free(saga_worker *w);

/* Steps this worker runs at once (default 16, at most 4096), in total over
 * its connections. Each running step occupies one worker thread. At least
 * the number of URLs the worker was given: each connection keeps one slot
 * (SAGA_EINVAL otherwise, with saga_worker_errmsg saying so). Set before
 * saga_worker_run. */
SAGA_API int saga_worker_set_capacity(saga_worker *w, uint32_t capacity);
/* Free-form replica name shown in sagad's logs (default "host:pid"). */
SAGA_API int saga_worker_set_instance(saga_worker *w, const char *instance);
SAGA_API int saga_worker_set_max_message(saga_worker *w, size_t bytes);
/* TLS for tls+tcp:// URLs, as saga_client_set_tls. Before saga_worker_run
 * (SAGA_ESTATE while it runs). A handshake sagad refuses, or one whose
 * certificate this worker refuses, is retried and logged (at most every
 * 30 s per URL) with the reason. */
SAGA_API int saga_worker_set_tls(saga_worker *w, const char *ca_file, const char *cert_file,
    const char *key_file, const char *server_name);

/* The credential sent with every poll and report (see
 * saga_client_set_credential); a sagad with auth on wants one of a
 * principal with role participant for this worker's participant name.
 * Copied; NULL or "" = none. Set before saga_worker_run. A poll refused
 * for it (SAGA_EAUTH, SAGA_EPERM) ends saga_worker_run with that error. */
SAGA_API int saga_worker_set_credential(saga_worker *w, const char *credential);
SAGA_API void saga_worker_set_log(saga_worker *w, saga_log_fn fn, void *user);
SAGA_API const char *saga_worker_errmsg(const saga_worker *w);

/* Handler for the action rpc `rpc` (the step's name). */
SAGA_API int saga_worker_on_action(saga_worker *w, const char *rpc, saga_handler_fn fn, void *user);
/* Handler for the compensation rpc `rpc` (as named in the step's
 * `compensation` option). */
SAGA_API int saga_worker_on_compensation(
    saga_worker *w, const char *rpc, saga_handler_fn fn, void *user);

/* Serves steps until saga_worker_stop() is called (from any thread or a
 * signal handler) or a fatal error. Reconnects by itself when sagad goes
 * away. Returns SAGA_OK after a stop: running handlers are allowed to
 * finish and their outcomes are delivered, to every instance (bounded by
 * 5 s in all). */
SAGA_API int saga_worker_run(saga_worker *w);
/* Async-signal-safe. */
SAGA_API void saga_worker_stop(saga_worker *w);

#ifdef __cplusplus
}
#endif

#endif /* SAGA_H */
