/*
 * saga_node.h: what the parts of the Node-API addon over libsaga offer each
 * other. addon.c registers the module and holds the helpers; client.c the
 * client calls (each on libuv's thread pool through napi_async_work);
 * worker.c the participant side (libsaga's handler threads hand steps to
 * the event loop through a napi_threadsafe_function and wait for the
 * JavaScript handler to settle).
 *
 * Prefix: sn_ (file-local helpers have no prefix). Only Node-API
 * (node_api.h) is used, so one build loads in every Node >= 18.
 */
#ifndef SAGA_NODE_H
#define SAGA_NODE_H

#include <stddef.h>
#include <stdint.h>

#include <node_api.h>

/* Returns NULL from the calling napi_callback when a Node-API call fails
 * (an exception is then pending or thrown by sn_throw_napi). */
#define SN_CALL(env, call)                           \
	do {                                         \
		if ((call) != napi_ok) {             \
			sn_throw_napi((env), #call); \
			return NULL;                 \
		}                                    \
	} while (0)

/* Throws an Error describing the last Node-API failure, unless an
 * exception is already pending. */
void sn_throw_napi(napi_env env, const char *what);

/* An instance of the JavaScript error class for a libsaga error (the
 * factory index.js installed with setErrorFactory), with the handle's
 * detail as message. Never NULL unless Node-API itself fails. */
napi_value sn_make_error(napi_env env, int code, const char *detail);

/* Reads a JavaScript string argument into a malloc'd C string. Throws a
 * TypeError naming `what` and returns -1 if it is not a string; with
 * optional nonzero, undefined and null give *out = NULL. */
int sn_get_string(napi_env env, napi_value v, const char *what, int optional, char **out);
/* Reads a Buffer or Uint8Array (or, with optional, undefined/null as
 * empty) and copies it into *out (malloc'd, NULL if empty). */
int sn_get_bytes(
    napi_env env, napi_value v, const char *what, int optional, uint8_t **out, size_t *len);
/* obj[name] as a string (see sn_get_string), number or boolean. Missing,
 * undefined or null leaves *out as it is. */
int sn_prop_string(napi_env env, napi_value obj, const char *name, char **out);
int sn_prop_u32(napi_env env, napi_value obj, const char *name, uint32_t *out);
int sn_prop_i32(napi_env env, napi_value obj, const char *name, int32_t *out);
int sn_prop_bool(napi_env env, napi_value obj, const char *name, int *out);

/* Property setters for building result objects; return napi_ok or the
 * first failure. */
napi_status sn_set_string(napi_env env, napi_value obj, const char *name, const char *s);
napi_status sn_set_u32(napi_env env, napi_value obj, const char *name, uint32_t v);
napi_status sn_set_i64(napi_env env, napi_value obj, const char *name, int64_t v);
napi_status sn_set_bool(napi_env env, napi_value obj, const char *name, int v);
/* A Buffer copy of data (NULL data or len 0 gives an empty Buffer). */
napi_status sn_set_buffer(
    napi_env env, napi_value obj, const char *name, const void *data, size_t len);

/* Module parts: each adds its functions to exports. */
napi_status sn_client_init(napi_env env, napi_value exports);
napi_status sn_worker_init(napi_env env, napi_value exports);

#endif
