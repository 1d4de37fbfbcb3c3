/*
 * defn: saga definitions. Turns a serialized FileDescriptorSet (protoc
 * --include_imports --descriptor_set_out) into validated, compiled saga
 * definitions, one per service annotated with sagaspec options
 * (proto/sagaspec.proto).
 *
 * A compiled definition is immutable once made and is shared read-only by
 * the engine, the relay and the RPC readers.
 */
#ifndef SAGAD_DEFN_H
#define SAGAD_DEFN_H

#include <stddef.h>
#include <stdint.h>

/* Most steps one saga may have; dependency sets are bitmaps of this size. */
#define DEFN_MAX_STEPS         64
/* Sagas one register may define: bounds the work (and the locks) of one. */
#define DEFN_MAX_SAGAS_PER_SET 100

typedef struct defn_retry {
	uint32_t max_attempts; /* >= 1, total attempts incl. the first */
	uint32_t initial_backoff_ms;
	uint32_t max_backoff_ms; /* >= initial_backoff_ms */
	double multiplier;       /* >= 1 */
	double jitter;           /* 0..1 */
} defn_retry;

/* Where a message's sensitive fields are ((sagaspec.sensitive) in
 * proto/sagaspec.proto): the fields to drop, and the message fields to look
 * into. A type that holds no sensitive field, at any depth, has no plan
 * (NULL). Plans may refer to each other in a cycle (recursive types). */
typedef struct defn_rfield {
	uint32_t number;
	char *name;                    /* the proto field name, for the redacted paths */
	const struct defn_redact *sub; /* NULL: drop the field (sensitive, or a group
	                                  holding one); else: redact inside it */
} defn_rfield;

typedef struct defn_redact {
	size_t n;
	defn_rfield *f; /* ascending by number */
} defn_redact;

typedef struct defn_step {
	char *name;               /* the action rpc's name; unique in the saga */
	char *participant;        /* never NULL or empty */
	char *compensation;       /* compensation rpc name, or NULL = nothing to undo */
	char *input_type;         /* full name of the action rpc's request type (no leading dot) */
	char *output_type;        /* full name of the action rpc's response type */
	uint32_t timeout_ms;      /* > 0 */
	uint32_t comp_timeout_ms; /* > 0 */
	uint32_t hb_timeout_ms;   /* after a heartbeat; 0 = the attempt's timeout */
	defn_retry retry;
	defn_retry comp_retry;
	uint32_t n_deps;
	uint32_t *deps;                   /* indices into defn_saga.steps, ascending */
	uint64_t dep_mask;                /* same set as a bitmap (bit i = step i) */
	uint64_t dependents_mask;         /* steps that list this one in their deps */
	const defn_redact *result_redact; /* its result's sensitive fields; NULL = none */
} defn_step;

typedef struct defn_saga {
	char *name;                      /* the service's full name, e.g. "shop.OrderSaga" */
	uint32_t version;                /* 0 until registered; set by the caller */
	char *input_type;                /* full name of the saga input message */
	char *description;               /* "" if none */
	uint32_t deadline_ms;            /* whole-saga deadline; 0 = none */
	char *business_key;              /* input field giving the business key; NULL = none */
	uint32_t bk_number;              /* its field number */
	uint8_t bk_type;                 /* its FieldDescriptorProto.Type (string or an integer) */
	uint32_t n_steps;                /* 1..DEFN_MAX_STEPS */
	defn_step *steps;                /* in declaration order */
	uint32_t *topo;                  /* n_steps indices: a topological order (deps first) */
	uint64_t fingerprint;            /* hash of everything above except version:
	                          * equal definitions have equal fingerprints */
	const defn_redact *input_redact; /* the input's sensitive fields; NULL = none */
	defn_redact *plans;              /* every plan of this saga (owned) */
	size_t n_plans;
} defn_saga;

/* Defaults applied when options leave a value at zero. */
#define DEFN_DEFAULT_TIMEOUT_MS         30000u
#define DEFN_DEFAULT_MAX_ATTEMPTS       3u
#define DEFN_DEFAULT_COMP_MAX_ATTEMPTS  10u
#define DEFN_DEFAULT_INITIAL_BACKOFF_MS 100u
#define DEFN_DEFAULT_MAX_BACKOFF_MS     10000u
#define DEFN_DEFAULT_MULTIPLIER         2.0
#define DEFN_DEFAULT_JITTER             1.0

/*
 * Parses and validates every saga service in a FileDescriptorSet.
 * A service is a saga if it has the (sagaspec.saga) option or any of its
 * rpcs has (sagaspec.step). On success returns 0 and an array of *n_out
 * definitions (n_out >= 1) that the caller frees with defn_free_array().
 * On failure returns a saga_err value (SAGA_EDEFINITION for an invalid
 * definition, SAGA_EPROTO for bytes that are not a descriptor set,
 * SAGA_ETOOBIG for a set nested too deeply or too large to decode,
 * SAGA_ENOMEM, SAGA_EINVAL for NULL out-parameters) and writes a message
 * naming the saga, the step and the problem into err (NUL-terminated,
 * printable ASCII, truncated to errlen; err may be NULL).
 * Never crashes on any input; bounded in memory by a quota proportional to
 * len.
 */
int defn_parse_set(
    const uint8_t *buf, size_t len, defn_saga ***out, size_t *n_out, char *err, size_t errlen);

/* Parses the set and returns only the saga named `name` (SAGA_ENOTFOUND if
 * absent). Used to reload stored definitions. */
int defn_parse_one(
    const uint8_t *buf, size_t len, const char *name, defn_saga **out, char *err, size_t errlen);

void defn_free(defn_saga *d);
void defn_free_array(defn_saga **defs, size_t n);

/* The business key an input carries, as text: the value of the field
 * named by the definition's business_key option (the last occurrence; ""
 * if absent or the definition names none). SAGA_EINVAL if the input is not
 * a well-formed protobuf message at its top level, the field has the wrong
 * wire type, or a string value is not UTF-8; SAGA_ETOOBIG if a valid string
 * does not fit in outlen. */
/* Is version d (from new_set) safe for payloads of sagas still running on
 * the previous version (from old_set)? Every message reachable from the
 * saga input and the steps' results, present in both, must give each field
 * number present in both the same type and cardinality. 0, or
 * SAGA_EDEFINITION with err naming the field. */
int defn_compat_check(const uint8_t *old_set, size_t old_len, const uint8_t *new_set,
    size_t new_len, const defn_saga *d, char *err, size_t errlen);
int defn_business_key(const defn_saga *d, const uint8_t *in, size_t len, char *out, size_t outlen);

/* Index of the step named `name`, or -1. */
int defn_step_index(const defn_saga *d, const char *name);

#endif
