/*
 * addon.c: the module's entry point and the helpers every part shares:
 * argument reading, result building and libsaga errors as JavaScript
 * errors (whose classes index.js defines and hands in once).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <saga.h>

#include "saga_node.h"

/* Per-environment state (a module may be loaded by several workers). */
typedef struct sn_instance {
	napi_ref error_factory; /* (code, detail) => SagaError; set by index.js */
} sn_instance;

void
sn_throw_napi(napi_env env, const char *what)
{
	bool pending = false;
	if (napi_is_exception_pending(env, &pending) == napi_ok && pending)
		return;
	const napi_extended_error_info *info = NULL;
	char msg[512];
	napi_get_last_error_info(env, &info);
	snprintf(msg, sizeof(msg), "libsaga addon: %s failed: %s", what,
	    info != NULL && info->error_message != NULL ? info->error_message : "unknown");
	napi_throw_error(env, NULL, msg);
}

napi_value
sn_make_error(napi_env env, int code, const char *detail)
{
	sn_instance *in = NULL;
	napi_value fn = NULL, argv[2], out = NULL, msg = NULL, undef;
	const char *text = detail != NULL && detail[0] != '\0' ? detail : saga_strerror(code);

	napi_get_undefined(env, &undef);
	if (napi_create_string_utf8(env, text, NAPI_AUTO_LENGTH, &msg) != napi_ok)
		return NULL;
	if (napi_get_instance_data(env, (void **)&in) == napi_ok && in != NULL &&
	    in->error_factory != NULL &&
	    napi_get_reference_value(env, in->error_factory, &fn) == napi_ok && fn != NULL) {
		napi_create_int32(env, code, &argv[0]);
		argv[1] = msg;
		if (napi_call_function(env, undef, fn, 2, argv, &out) == napi_ok)
			return out;
		/* The factory threw: fall back to a plain Error. */
		napi_value ignored;
		napi_get_and_clear_last_exception(env, &ignored);
	}
	if (napi_create_error(env, NULL, msg, &out) != napi_ok)
		return NULL;
	napi_value c;
	if (napi_create_int32(env, code, &c) == napi_ok)
		napi_set_named_property(env, out, "code", c);
	return out;
}

int
sn_get_string(napi_env env, napi_value v, const char *what, int optional, char **out)
{
	napi_valuetype t;
	size_t len = 0;
	char msg[256];

	*out = NULL;
	if (napi_typeof(env, v, &t) != napi_ok)
		return -1;
	if (optional && (t == napi_undefined || t == napi_null))
		return 0;
	if (t != napi_string) {
		snprintf(msg, sizeof(msg), "%s must be a string", what);
		napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", msg);
		return -1;
	}
	if (napi_get_value_string_utf8(env, v, NULL, 0, &len) != napi_ok)
		return -1;
	if ((*out = malloc(len + 1)) == NULL) {
		napi_throw_error(env, NULL, "libsaga addon: out of memory");
		return -1;
	}
	if (napi_get_value_string_utf8(env, v, *out, len + 1, &len) != napi_ok) {
		free(*out);
		*out = NULL;
		return -1;
	}
	if (strlen(*out) != len) {
		free(*out);
		*out = NULL;
		snprintf(msg, sizeof(msg), "%s must not contain NUL characters", what);
		napi_throw_type_error(env, "ERR_INVALID_ARG_VALUE", msg);
		return -1;
	}
	return 0;
}

int
sn_get_bytes(napi_env env, napi_value v, const char *what, int optional, uint8_t **out, size_t *len)
{
	napi_valuetype t;
	bool is = false;
	void *data = NULL;
	char msg[256];

	*out = NULL;
	*len = 0;
	if (napi_typeof(env, v, &t) != napi_ok)
		return -1;
	if (optional && (t == napi_undefined || t == napi_null))
		return 0;
	if (napi_is_buffer(env, v, &is) == napi_ok && is) {
		if (napi_get_buffer_info(env, v, &data, len) != napi_ok)
			return -1;
	} else if (napi_is_typedarray(env, v, &is) == napi_ok && is) {
		napi_typedarray_type ta;
		if (napi_get_typedarray_info(env, v, &ta, len, &data, NULL, NULL) != napi_ok)
			return -1;
		if (ta != napi_uint8_array) {
			snprintf(msg, sizeof(msg), "%s must be a Buffer or a Uint8Array", what);
			napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", msg);
			return -1;
		}
	} else {
		snprintf(msg, sizeof(msg), "%s must be a Buffer or a Uint8Array", what);
		napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", msg);
		return -1;
	}
	if (*len == 0)
		return 0;
	if ((*out = malloc(*len)) == NULL) {
		napi_throw_error(env, NULL, "libsaga addon: out of memory");
		return -1;
	}
	memcpy(*out, data, *len);
	return 0;
}

/* obj[name], or NULL if missing, undefined or null. */
static int
get_prop(napi_env env, napi_value obj, const char *name, napi_value *v)
{
	napi_valuetype t;
	*v = NULL;
	if (obj == NULL)
		return 0;
	if (napi_typeof(env, obj, &t) != napi_ok)
		return -1;
	if (t != napi_object)
		return 0;
	if (napi_get_named_property(env, obj, name, v) != napi_ok)
		return -1;
	if (napi_typeof(env, *v, &t) != napi_ok)
		return -1;
	if (t == napi_undefined || t == napi_null)
		*v = NULL;
	return 0;
}

int
sn_prop_string(napi_env env, napi_value obj, const char *name, char **out)
{
	napi_value v;
	char *s;
	if (get_prop(env, obj, name, &v) != 0)
		return -1;
	if (v == NULL)
		return 0;
	if (sn_get_string(env, v, name, 0, &s) != 0)
		return -1;
	free(*out);
	*out = s;
	return 0;
}

static int
prop_number(napi_env env, napi_value obj, const char *name, double lo, double hi, double *out)
{
	napi_value v;
	napi_valuetype t;
	char msg[256];
	double d;
	if (get_prop(env, obj, name, &v) != 0)
		return -1;
	if (v == NULL)
		return 1;
	if (napi_typeof(env, v, &t) != napi_ok)
		return -1;
	if (t != napi_number || napi_get_value_double(env, v, &d) != napi_ok || d != d || d < lo ||
	    d > hi || d != (double)(int64_t)d) {
		snprintf(msg, sizeof(msg), "%s must be an integer from %.0f to %.0f", name, lo, hi);
		napi_throw_range_error(env, "ERR_OUT_OF_RANGE", msg);
		return -1;
	}
	*out = d;
	return 0;
}

int
sn_prop_u32(napi_env env, napi_value obj, const char *name, uint32_t *out)
{
	double d;
	int rv = prop_number(env, obj, name, 0, 4294967295.0, &d);
	if (rv == 0)
		*out = (uint32_t)d;
	return rv < 0 ? -1 : 0;
}

int
sn_prop_i32(napi_env env, napi_value obj, const char *name, int32_t *out)
{
	double d;
	int rv = prop_number(env, obj, name, -2147483648.0, 2147483647.0, &d);
	if (rv == 0)
		*out = (int32_t)d;
	return rv < 0 ? -1 : 0;
}

int
sn_prop_bool(napi_env env, napi_value obj, const char *name, int *out)
{
	napi_value v;
	bool b = false;
	if (get_prop(env, obj, name, &v) != 0)
		return -1;
	if (v == NULL)
		return 0;
	if (napi_coerce_to_bool(env, v, &v) != napi_ok ||
	    napi_get_value_bool(env, v, &b) != napi_ok)
		return -1;
	*out = b ? 1 : 0;
	return 0;
}

napi_status
sn_set_string(napi_env env, napi_value obj, const char *name, const char *s)
{
	napi_value v;
	napi_status st = napi_create_string_utf8(env, s != NULL ? s : "", NAPI_AUTO_LENGTH, &v);
	return st != napi_ok ? st : napi_set_named_property(env, obj, name, v);
}

napi_status
sn_set_u32(napi_env env, napi_value obj, const char *name, uint32_t n)
{
	napi_value v;
	napi_status st = napi_create_uint32(env, n, &v);
	return st != napi_ok ? st : napi_set_named_property(env, obj, name, v);
}

napi_status
sn_set_i64(napi_env env, napi_value obj, const char *name, int64_t n)
{
	napi_value v;
	/* Microsecond timestamps stay below 2^53 for another 285 years. */
	napi_status st = napi_create_int64(env, n, &v);
	return st != napi_ok ? st : napi_set_named_property(env, obj, name, v);
}

napi_status
sn_set_bool(napi_env env, napi_value obj, const char *name, int b)
{
	napi_value v;
	napi_status st = napi_get_boolean(env, b != 0, &v);
	return st != napi_ok ? st : napi_set_named_property(env, obj, name, v);
}

napi_status
sn_set_buffer(napi_env env, napi_value obj, const char *name, const void *data, size_t len)
{
	napi_value v;
	void *copy;
	napi_status st = napi_create_buffer_copy(
	    env, data != NULL ? len : 0, data != NULL ? data : "", &copy, &v);
	return st != napi_ok ? st : napi_set_named_property(env, obj, name, v);
}

static void
instance_free(napi_env env, void *data, void *hint)
{
	sn_instance *in = data;
	if (in->error_factory != NULL)
		napi_delete_reference(env, in->error_factory);
	free(in);
}

/* setErrorFactory(fn): fn(code, detail) returns the error to reject with. */
static napi_value
set_error_factory(napi_env env, napi_callback_info info)
{
	size_t argc = 1;
	napi_value argv[1];
	napi_valuetype t;
	sn_instance *in = NULL;

	SN_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
	SN_CALL(env, napi_typeof(env, argv[0], &t));
	if (argc < 1 || t != napi_function) {
		napi_throw_type_error(env, NULL, "setErrorFactory needs a function");
		return NULL;
	}
	SN_CALL(env, napi_get_instance_data(env, (void **)&in));
	if (in->error_factory != NULL)
		napi_delete_reference(env, in->error_factory);
	in->error_factory = NULL;
	SN_CALL(env, napi_create_reference(env, argv[0], 1, &in->error_factory));
	return NULL;
}

/* strerror(code): libsaga's description of an error code. */
static napi_value
js_strerror(napi_env env, napi_callback_info info)
{
	size_t argc = 1;
	napi_value argv[1], out;
	int32_t code = 0;
	SN_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
	if (argc < 1 || napi_get_value_int32(env, argv[0], &code) != napi_ok) {
		napi_throw_type_error(env, NULL, "strerror needs an error code");
		return NULL;
	}
	SN_CALL(env, napi_create_string_utf8(env, saga_strerror(code), NAPI_AUTO_LENGTH, &out));
	return out;
}

/* Newer node_api.h define node_api_module_get_api_version_v1 in this macro
 * without declaring it first. */
#pragma GCC diagnostic ignored "-Wmissing-prototypes"
NAPI_MODULE_INIT()
{
	sn_instance *in = calloc(1, sizeof(*in));
	napi_value v;

	if (in == NULL) {
		napi_throw_error(env, NULL, "libsaga addon: out of memory");
		return NULL;
	}
	if (napi_set_instance_data(env, in, instance_free, NULL) != napi_ok) {
		free(in);
		sn_throw_napi(env, "napi_set_instance_data");
		return NULL;
	}
	napi_property_descriptor props[] = {
		{ "setErrorFactory", NULL, set_error_factory, NULL, NULL, NULL, napi_default,
		    NULL },
		{ "strerror", NULL, js_strerror, NULL, NULL, NULL, napi_default, NULL },
	};
	SN_CALL(env, napi_define_properties(env, exports, sizeof(props) / sizeof(props[0]), props));
	SN_CALL(env, napi_create_string_utf8(env, saga_version(), NAPI_AUTO_LENGTH, &v));
	SN_CALL(env, napi_set_named_property(env, exports, "libsagaVersion", v));
	SN_CALL(env, sn_client_init(env, exports));
	SN_CALL(env, sn_worker_init(env, exports));
	return exports;
}
