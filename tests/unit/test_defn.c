/*
 * Unit tests of server/defn.c: compiling saga definitions from descriptor
 * sets. Valid and invalid definitions come from tests/fixtures (compiled by
 * protoc, as users do); what protoc cannot produce (duplicate names, NaN
 * from a hand-made set, too many steps, malformed option bytes, hostile
 * input) is built here with protobuf-c.
 */
#include <check.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "defn.h"
#include "descriptor.pb-c.h"
#include "redact.h"
#include "saga.h"
#include "sagaspec.pb-c.h"

#define ERRLEN 512

/* ---- fixtures ---------------------------------------------------------- */

static uint8_t *
load_fixture(const char *name, size_t *len)
{
	const char *dir = getenv("DEFN_FIXTURES");
	char path[4096];
	ck_assert_msg(dir != NULL, "DEFN_FIXTURES is not set (run through meson test)");
	snprintf(path, sizeof(path), "%s/%s.binpb", dir, name);
	FILE *f = fopen(path, "rb");
	ck_assert_msg(f != NULL, "cannot open %s", path);
	ck_assert_int_eq(fseek(f, 0, SEEK_END), 0);
	long n = ftell(f);
	ck_assert_int_ge(n, 0);
	rewind(f);
	uint8_t *buf = malloc((size_t)n + 1);
	ck_assert_ptr_nonnull(buf);
	ck_assert_uint_eq(fread(buf, 1, (size_t)n, f), (size_t)n);
	fclose(f);
	*len = (size_t)n;
	return buf;
}

/* Parses a fixture that must compile; returns its only saga. */
static defn_saga *
compile_fixture(const char *name)
{
	size_t len, n = 0;
	defn_saga **defs = NULL;
	char err[ERRLEN];
	uint8_t *buf = load_fixture(name, &len);
	int rv = defn_parse_set(buf, len, &defs, &n, err, sizeof(err));
	free(buf);
	ck_assert_msg(rv == 0, "%s: rv %d: %s", name, rv, err);
	ck_assert_uint_eq(n, 1);
	defn_saga *d = defs[0];
	defs[0] = NULL;
	defn_free_array(defs, n);
	return d;
}

static void
assert_printable(const char *s)
{
	for (; *s; s++)
		ck_assert_msg((unsigned char)*s >= 0x20 && (unsigned char)*s < 0x7f,
		    "non-printable byte 0x%02x in error message", (unsigned char)*s);
}

/* The bytes must be refused with `want` and a message containing every
 * string in `needles` (NULL-terminated). */
static void
expect_refused_bytes(const uint8_t *buf, size_t len, int want, const char *const *needles)
{
	defn_saga **defs = (defn_saga **)1;
	size_t n = 99;
	char err[ERRLEN];
	int rv = defn_parse_set(buf, len, &defs, &n, err, sizeof(err));
	ck_assert_msg(rv == want, "rv %d, want %d; message: %s", rv, want, rv ? err : "(none)");
	ck_assert_ptr_null(defs);
	ck_assert_uint_eq(n, 0);
	for (const char *const *p = needles; *p != NULL; p++)
		ck_assert_msg(strstr(err, *p) != NULL, "message \"%s\" lacks \"%s\"", err, *p);
	assert_printable(err);
}

static void
expect_refused(const char *fixture, int want, const char *const *needles)
{
	size_t len;
	uint8_t *buf = load_fixture(fixture, &len);
	expect_refused_bytes(buf, len, want, needles);
	free(buf);
}

#define NEEDLES(...) ((const char *const[]) { __VA_ARGS__, NULL })

/* ---- building descriptor sets by hand ---------------------------------- */

/* Everything the builder allocates lives until arena_free(). */
static void **arena;
static size_t n_arena, cap_arena;

static void *
talloc(size_t n)
{
	if (n_arena == cap_arena) {
		cap_arena = cap_arena ? cap_arena * 2 : 64;
		arena = realloc(arena, cap_arena * sizeof(*arena));
		ck_assert_ptr_nonnull(arena);
	}
	void *p = calloc(1, n ? n : 1);
	ck_assert_ptr_nonnull(p);
	arena[n_arena++] = p;
	return p;
}

static char *tprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static char *
tprintf(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	char *s = talloc((size_t)n + 1);
	va_start(ap, fmt);
	vsnprintf(s, (size_t)n + 1, fmt, ap);
	va_end(ap);
	return s;
}

static void
arena_free(void)
{
	for (size_t i = 0; i < n_arena; i++)
		free(arena[i]);
	free(arena);
	arena = NULL;
	n_arena = cap_arena = 0;
}

static size_t
put_varint(uint8_t *p, uint64_t v)
{
	size_t n = 0;
	do {
		uint8_t b = v & 0x7f;
		v >>= 7;
		p[n++] = (uint8_t)(b | (v ? 0x80 : 0));
	} while (v);
	return n;
}

/* An option as protobuf-c keeps it in unknown_fields: varint length, then
 * the packed option message, then `extra` raw bytes (e.g. a field this
 * sagad does not know). */
static ProtobufCMessageUnknownField
opt_field(uint32_t tag, const ProtobufCMessage *m, const uint8_t *extra, size_t n_extra)
{
	size_t pl = m ? protobuf_c_message_get_packed_size(m) : 0;
	uint8_t *p = talloc(pl + n_extra + 10);
	size_t off = put_varint(p, pl + n_extra);
	if (m)
		protobuf_c_message_pack(m, p + off);
	if (n_extra)
		memcpy(p + off + pl, extra, n_extra);
	ProtobufCMessageUnknownField uf = {
		.tag = tag,
		.wire_type = PROTOBUF_C_WIRE_TYPE_LENGTH_PREFIXED,
		.len = off + pl + n_extra,
		.data = p,
	};
	return uf;
}

typedef struct tmethod {
	const char *name;
	const char *in, *out;       /* NULL: .PKG.Req / .PKG.Res */
	const Sagaspec__Step *step; /* NULL: no (sagaspec.step) */
	const uint8_t *extra;       /* raw bytes appended to the step option */
	size_t n_extra;
	unsigned copies;                         /* times the option appears; 0 = 1 */
	const ProtobufCMessageUnknownField *raw; /* used instead of step if set */
	int streaming;
} tmethod;

typedef struct tservice {
	const char *pkg, *name;
	const tmethod *m;
	size_t n;
	const Sagaspec__Saga *saga; /* NULL: no (sagaspec.saga) */
	const uint8_t *saga_extra;
	size_t n_saga_extra;
	const char *desc_raw; /* raw description bytes (for bad UTF-8) */
} tservice;

/* One file per service, package pkg, with messages Req and Res. */
static uint8_t *
build_set(const tservice *sv, size_t n_sv, size_t *len)
{
	Google__Protobuf__FileDescriptorSet set = GOOGLE__PROTOBUF__FILE_DESCRIPTOR_SET__INIT;
	set.n_file = n_sv;
	set.file = talloc(n_sv * sizeof(*set.file));
	for (size_t i = 0; i < n_sv; i++) {
		Google__Protobuf__FileDescriptorProto *f = talloc(sizeof(*f));
		google__protobuf__file_descriptor_proto__init(f);
		f->name = tprintf("f%zu.proto", i);
		f->package = (char *)sv[i].pkg;
		f->n_message_type = 2;
		f->message_type = talloc(2 * sizeof(*f->message_type));
		for (int k = 0; k < 2; k++) {
			Google__Protobuf__DescriptorProto *mp = talloc(sizeof(*mp));
			google__protobuf__descriptor_proto__init(mp);
			mp->name = k ? "Res" : "Req";
			f->message_type[k] = mp;
		}
		Google__Protobuf__ServiceDescriptorProto *s = talloc(sizeof(*s));
		google__protobuf__service_descriptor_proto__init(s);
		s->name = (char *)sv[i].name;
		if (sv[i].saga != NULL) {
			Google__Protobuf__ServiceOptions *so = talloc(sizeof(*so));
			google__protobuf__service_options__init(so);
			so->base.n_unknown_fields = 1;
			so->base.unknown_fields = talloc(sizeof(ProtobufCMessageUnknownField));
			so->base.unknown_fields[0] = opt_field(
			    50701, &sv[i].saga->base, sv[i].saga_extra, sv[i].n_saga_extra);
			s->options = so;
		}
		s->n_method = sv[i].n;
		s->method = talloc(sv[i].n * sizeof(*s->method));
		for (size_t j = 0; j < sv[i].n; j++) {
			const tmethod *tm = &sv[i].m[j];
			Google__Protobuf__MethodDescriptorProto *md = talloc(sizeof(*md));
			google__protobuf__method_descriptor_proto__init(md);
			md->name = (char *)tm->name;
			md->input_type = tm->in ? (char *)tm->in : tprintf(".%s.Req", sv[i].pkg);
			md->output_type = tm->out ? (char *)tm->out : tprintf(".%s.Res", sv[i].pkg);
			if (tm->streaming) {
				md->has_server_streaming = 1;
				md->server_streaming = 1;
			}
			if (tm->step != NULL || tm->raw != NULL) {
				unsigned copies = tm->copies ? tm->copies : 1;
				Google__Protobuf__MethodOptions *mo = talloc(sizeof(*mo));
				google__protobuf__method_options__init(mo);
				mo->base.n_unknown_fields = copies;
				mo->base.unknown_fields =
				    talloc(copies * sizeof(ProtobufCMessageUnknownField));
				for (unsigned k = 0; k < copies; k++) {
					mo->base.unknown_fields[k] = tm->raw
					    ? *tm->raw
					    : opt_field(
						  50700, &tm->step->base, tm->extra, tm->n_extra);
				}
				md->options = mo;
			}
			s->method[j] = md;
		}
		f->n_service = 1;
		f->service = talloc(sizeof(*f->service));
		f->service[0] = s;
		set.file[i] = f;
	}
	*len = protobuf_c_message_get_packed_size(&set.base);
	uint8_t *buf = talloc(*len);
	protobuf_c_message_pack(&set.base, buf);
	return buf;
}

static Sagaspec__Step *
mkstep(const char *participant)
{
	Sagaspec__Step *s = talloc(sizeof(*s));
	sagaspec__step__init(s);
	s->participant = (char *)participant;
	return s;
}

static int
parse_built(const tservice *sv, size_t n_sv, defn_saga ***defs, size_t *n, char *err)
{
	size_t len;
	uint8_t *buf = build_set(sv, n_sv, &len);
	return defn_parse_set(buf, len, defs, n, err, ERRLEN);
}

static void
expect_built_refused(const tservice *sv, size_t n_sv, const char *const *needles)
{
	size_t len;
	uint8_t *buf = build_set(sv, n_sv, &len);
	expect_refused_bytes(buf, len, SAGA_EDEFINITION, needles);
}

static void
teardown(void)
{
	arena_free();
}

/* ---- valid definitions ------------------------------------------------- */

START_TEST(valid_order_saga_compiles_with_defaults)
{
	defn_saga *d = compile_fixture("order_ok");
	ck_assert_str_eq(d->name, "shop.OrderSaga");
	ck_assert_uint_eq(d->version, 0);
	ck_assert_str_eq(d->input_type, "shop.OrderRequest");
	ck_assert_str_eq(d->description, "Create an order, reserve stock, charge the card");
	ck_assert_uint_eq(d->n_steps, 3);

	const defn_step *s = &d->steps[0];
	ck_assert_str_eq(s->name, "CreateOrder");
	ck_assert_str_eq(s->participant, "orders");
	ck_assert_str_eq(s->compensation, "CancelOrder");
	ck_assert_str_eq(s->input_type, "shop.OrderRequest");
	ck_assert_str_eq(s->output_type, "shop.OrderCreated");
	ck_assert_uint_eq(s->timeout_ms, DEFN_DEFAULT_TIMEOUT_MS);
	ck_assert_uint_eq(s->comp_timeout_ms, DEFN_DEFAULT_TIMEOUT_MS);
	ck_assert_uint_eq(s->retry.max_attempts, DEFN_DEFAULT_MAX_ATTEMPTS);
	ck_assert_uint_eq(s->retry.initial_backoff_ms, DEFN_DEFAULT_INITIAL_BACKOFF_MS);
	ck_assert_uint_eq(s->retry.max_backoff_ms, DEFN_DEFAULT_MAX_BACKOFF_MS);
	ck_assert_double_eq(s->retry.multiplier, DEFN_DEFAULT_MULTIPLIER);
	ck_assert_double_eq(s->retry.jitter, DEFN_DEFAULT_JITTER);
	ck_assert_uint_eq(s->comp_retry.max_attempts, DEFN_DEFAULT_COMP_MAX_ATTEMPTS);
	ck_assert_uint_eq(s->n_deps, 0);
	ck_assert_uint_eq(s->dep_mask, 0);
	ck_assert_uint_eq(s->dependents_mask, 1u << 1);

	s = &d->steps[1];
	ck_assert_str_eq(s->name, "ReserveStock");
	ck_assert_str_eq(s->compensation, "ReleaseStock");
	ck_assert_str_eq(s->output_type, "shop.ReserveResult");
	ck_assert_uint_eq(s->timeout_ms, 5000);
	ck_assert_uint_eq(s->comp_timeout_ms, 5000); /* defaults to the action's */
	ck_assert_uint_eq(s->retry.max_attempts, 5);
	ck_assert_uint_eq(s->retry.initial_backoff_ms, 200);
	ck_assert_uint_eq(s->retry.max_backoff_ms, 2000);
	ck_assert_double_eq(s->retry.multiplier, 1.5);
	ck_assert_double_eq(s->retry.jitter, 0.5);
	ck_assert_uint_eq(s->comp_retry.max_attempts, DEFN_DEFAULT_COMP_MAX_ATTEMPTS);
	ck_assert_uint_eq(s->n_deps, 1);
	ck_assert_uint_eq(s->deps[0], 0);
	ck_assert_uint_eq(s->dep_mask, 1u << 0);
	ck_assert_uint_eq(s->dependents_mask, 1u << 2);

	s = &d->steps[2];
	ck_assert_str_eq(s->name, "ChargePayment");
	ck_assert_str_eq(s->participant, "payments");
	ck_assert_uint_eq(s->timeout_ms, DEFN_DEFAULT_TIMEOUT_MS);
	ck_assert_uint_eq(s->comp_timeout_ms, 60000);
	ck_assert_uint_eq(s->comp_retry.max_attempts, 20);
	ck_assert_uint_eq(s->comp_retry.initial_backoff_ms, DEFN_DEFAULT_INITIAL_BACKOFF_MS);
	ck_assert_uint_eq(s->retry.max_attempts, DEFN_DEFAULT_MAX_ATTEMPTS);
	ck_assert_uint_eq(s->n_deps, 1);
	ck_assert_uint_eq(s->deps[0], 1);
	ck_assert_uint_eq(s->dependents_mask, 0);

	ck_assert_uint_eq(d->topo[0], 0);
	ck_assert_uint_eq(d->topo[1], 1);
	ck_assert_uint_eq(d->topo[2], 2);

	ck_assert_int_eq(defn_step_index(d, "ReserveStock"), 1);
	ck_assert_int_eq(defn_step_index(d, "ReleaseStock"), -1); /* a compensation, not a step */
	ck_assert_int_eq(defn_step_index(d, "Nope"), -1);
	defn_free(d);
}
END_TEST

START_TEST(parallel_branches_have_join_dependencies)
{
	defn_saga *d = compile_fixture("parallel_ok");
	ck_assert_str_eq(d->name, "travel.v1.TripSaga");
	ck_assert_uint_eq(d->n_steps, 6);
	int start = defn_step_index(d, "Start"), flight = defn_step_index(d, "BookFlight"),
	    hotel = defn_step_index(d, "BookHotel"), car = defn_step_index(d, "BookCar"),
	    confirm = defn_step_index(d, "Confirm"), audit = defn_step_index(d, "Audit");
	ck_assert_int_eq(start, 0);
	ck_assert_int_eq(confirm, 4);
	ck_assert_int_eq(audit, 5);

	/* Branches depend on Start only, not on each other. */
	ck_assert_uint_eq(d->steps[flight].dep_mask, 1u << start);
	ck_assert_uint_eq(d->steps[hotel].dep_mask, 1u << start);
	ck_assert_uint_eq(d->steps[car].dep_mask, 1u << start);
	ck_assert_uint_eq(
	    d->steps[start].dependents_mask, (1u << flight) | (1u << hotel) | (1u << car));

	/* The join: deps sorted by index whatever order depends_on used. */
	const defn_step *c = &d->steps[confirm];
	ck_assert_uint_eq(c->n_deps, 3);
	ck_assert_uint_eq(c->deps[0], (uint32_t)flight);
	ck_assert_uint_eq(c->deps[1], (uint32_t)hotel);
	ck_assert_uint_eq(c->deps[2], (uint32_t)car);
	ck_assert_uint_eq(c->dep_mask, (1u << flight) | (1u << hotel) | (1u << car));
	ck_assert_uint_eq(d->steps[flight].dependents_mask, 1u << confirm);

	/* first: true depends on nothing though declared after Confirm. */
	ck_assert_uint_eq(d->steps[audit].n_deps, 0);
	ck_assert_ptr_null(d->steps[audit].deps);
	ck_assert_ptr_null(d->steps[confirm].compensation);

	/* topo is a permutation with every step after all its deps. */
	uint64_t seen = 0;
	for (uint32_t i = 0; i < d->n_steps; i++) {
		uint32_t s = d->topo[i];
		ck_assert_uint_lt(s, d->n_steps);
		ck_assert_uint_eq(seen & (1ull << s), 0);
		ck_assert_uint_eq(d->steps[s].dep_mask & ~seen, 0);
		seen |= 1ull << s;
	}
	defn_free(d);
}
END_TEST

START_TEST(saga_input_type_option_and_nested_types_resolve)
{
	defn_saga *d = compile_fixture("parallel_ok");
	/* Given with a leading dot in the option; stored without. */
	ck_assert_str_eq(d->input_type, "travel.v1.TripRequest");
	ck_assert_str_eq(d->description, "");
	const defn_step *f = &d->steps[defn_step_index(d, "BookFlight")];
	ck_assert_str_eq(f->input_type, "travel.v1.TripRequest.Leg");
	ck_assert_str_eq(f->output_type, "travel.v1.Booking");
	ck_assert_str_eq(d->steps[0].input_type, "travel.v1.StartRequest");
	defn_free(d);
}
END_TEST

START_TEST(same_definition_gives_same_fingerprint)
{
	defn_saga *a = compile_fixture("order_ok");
	defn_saga *b = compile_fixture("order_ok");
	/* Defaults spelled out, another file name: the same saga. */
	defn_saga *c = compile_fixture("order_explicit_defaults");
	ck_assert_uint_ne(a->fingerprint, 0);
	ck_assert_uint_eq(a->fingerprint, b->fingerprint);
	ck_assert_uint_eq(a->fingerprint, c->fingerprint);
	defn_free(a);
	defn_free(b);
	defn_free(c);
}
END_TEST

START_TEST(changed_timeout_changes_fingerprint)
{
	defn_saga *a = compile_fixture("order_ok");
	defn_saga *b = compile_fixture("order_changed_timeout");
	ck_assert_uint_eq(b->steps[1].timeout_ms, 6000);
	ck_assert_uint_ne(a->fingerprint, b->fingerprint);
	defn_free(a);
	defn_free(b);
}
END_TEST

/* Variant k of a small saga differs from variant 0 in exactly one field. */
#define N_VARIANTS 21
static uint64_t
variant_fingerprint(int k)
{
	Sagaspec__Retry r1 = SAGASPEC__RETRY__INIT, r2 = SAGASPEC__RETRY__INIT;
	Sagaspec__Step a = SAGASPEC__STEP__INIT, b = SAGASPEC__STEP__INIT;
	Sagaspec__Saga sg = SAGASPEC__SAGA__INIT;
	char *deps[] = { "A" };
	a.participant = "pa";
	a.compensation = "UndoA";
	a.retry = &r1;
	b.participant = "pb";
	b.compensation_retry = &r2;
	tmethod ms[3] = {
		{ .name = "A", .step = &a },
		{ .name = "B", .step = &b },
		{ .name = "UndoA" },
	};
	tservice sv = { .pkg = "fp", .name = "S", .m = ms, .n = 3, .saga = &sg };
	switch (k) {
	case 0:
		break;
	case 1:
		b.participant = "pc";
		break;
	case 2:
		a.timeout_ms = 1234;
		break;
	case 3:
		a.compensation_timeout_ms = 999;
		break;
	case 4:
		r1.max_attempts = 7;
		break;
	case 5:
		r1.initial_backoff_ms = 50;
		break;
	case 6:
		r1.max_backoff_ms = 500;
		break;
	case 7:
		r1.multiplier = 3;
		break;
	case 8:
		r1.jitter = 0.25;
		break;
	case 9:
		r2.max_attempts = 4;
		break;
	case 10:
		r2.jitter = 0.5;
		break;
	case 11:
		b.first = 1;
		break;
	case 12:
		sg.description = "x";
		break;
	case 13:
		sg.input_type = "fp.Res";
		break;
	case 14:
		ms[1].name = "B2";
		break;
	case 15:
		sv.name = "S2";
		break;
	case 16:
		ms[1].out = ".fp.Req";
		break;
	case 17:
		ms[0].in = ".fp.Res";
		break;
	case 18:
		a.compensation = "";
		sv.n = 2;
		break;
	case 19:
		b.compensation = "UndoA";
		break;
	case 20:
		sv.pkg = "fp2";
		break;
	}
	/* Spelling out what variant 0 leaves implicit changes nothing. */
	if (k == 0) {
		b.n_depends_on = 1;
		b.depends_on = deps;
	}
	defn_saga **defs = NULL;
	size_t n = 0;
	char err[ERRLEN];
	int rv = parse_built(&sv, 1, &defs, &n, err);
	ck_assert_msg(rv == 0, "variant %d: %s", k, err);
	uint64_t fp = defs[0]->fingerprint;
	defn_free_array(defs, n);
	return fp;
}

START_TEST(every_field_change_changes_fingerprint)
{
	uint64_t fp[N_VARIANTS];
	for (int k = 0; k < N_VARIANTS; k++) {
		fp[k] = variant_fingerprint(k);
		for (int j = 0; j < k; j++)
			ck_assert_msg(
			    fp[k] != fp[j], "variants %d and %d share a fingerprint", j, k);
	}
	ck_assert_uint_eq(variant_fingerprint(0), fp[0]);
}
END_TEST

START_TEST(sixty_four_steps_compile_sixty_five_are_refused)
{
	for (int total = 64; total <= 65; total++) {
		tmethod ms[65];
		memset(ms, 0, sizeof(ms));
		for (int i = 0; i < total; i++) {
			ms[i].name = tprintf("S%d", i);
			ms[i].step = mkstep("p");
		}
		tservice sv = { .pkg = "t", .name = "Long", .m = ms, .n = (size_t)total };
		defn_saga **defs = NULL;
		size_t n = 0;
		char err[ERRLEN];
		int rv = parse_built(&sv, 1, &defs, &n, err);
		if (total == 64) {
			ck_assert_msg(rv == 0, "%s", err);
			ck_assert_uint_eq(defs[0]->n_steps, 64);
			ck_assert_uint_eq(defs[0]->steps[63].dep_mask, 1ull << 62);
			ck_assert_uint_eq(defs[0]->steps[62].dependents_mask, 1ull << 63);
			ck_assert_uint_eq(defs[0]->topo[63], 63);
			defn_free_array(defs, n);
		} else {
			ck_assert_int_eq(rv, SAGA_EDEFINITION);
			ck_assert_ptr_nonnull(strstr(err, "more than 64 steps"));
		}
	}
}
END_TEST

START_TEST(only_initial_backoff_given_raises_default_max_to_it)
{
	Sagaspec__Retry r = SAGASPEC__RETRY__INIT;
	Sagaspec__Retry cr = SAGASPEC__RETRY__INIT;
	r.initial_backoff_ms = 20000;
	cr.max_backoff_ms = 50;
	Sagaspec__Step *s = mkstep("p");
	s->retry = &r;
	s->compensation_retry = &cr;
	s->compensation = "Undo";
	tmethod ms[] = { { .name = "A", .step = s }, { .name = "Undo" } };
	tservice sv = { .pkg = "t", .name = "S", .m = ms, .n = 2 };
	defn_saga **defs = NULL;
	size_t n = 0;
	char err[ERRLEN];
	ck_assert_int_eq(parse_built(&sv, 1, &defs, &n, err), 0);
	ck_assert_uint_eq(defs[0]->steps[0].retry.initial_backoff_ms, 20000);
	ck_assert_uint_eq(defs[0]->steps[0].retry.max_backoff_ms, 20000);
	ck_assert_uint_eq(defs[0]->steps[0].comp_retry.initial_backoff_ms, 50);
	ck_assert_uint_eq(defs[0]->steps[0].comp_retry.max_backoff_ms, 50);
	defn_free_array(defs, n);
}
END_TEST

START_TEST(parse_one_returns_only_the_named_saga)
{
	tmethod m1[] = { { .name = "A", .step = mkstep("p") } };
	tmethod m2[] = { { .name = "B", .step = mkstep("q") } };
	tservice sv[] = {
		{ .pkg = "one", .name = "First", .m = m1, .n = 1 },
		{ .pkg = "two", .name = "Second", .m = m2, .n = 1 },
	};
	size_t len;
	uint8_t *buf = build_set(sv, 2, &len);
	char err[ERRLEN];

	defn_saga **defs = NULL;
	size_t n = 0;
	ck_assert_int_eq(defn_parse_set(buf, len, &defs, &n, err, sizeof(err)), 0);
	ck_assert_uint_eq(n, 2);
	ck_assert_str_eq(defs[0]->name, "one.First");
	ck_assert_str_eq(defs[1]->name, "two.Second");
	defn_free_array(defs, n);

	defn_saga *d = NULL;
	ck_assert_int_eq(defn_parse_one(buf, len, "two.Second", &d, err, sizeof(err)), 0);
	ck_assert_str_eq(d->name, "two.Second");
	ck_assert_str_eq(d->steps[0].participant, "q");
	defn_free(d);

	d = (defn_saga *)1;
	ck_assert_int_eq(
	    defn_parse_one(buf, len, "three.Third", &d, err, sizeof(err)), SAGA_ENOTFOUND);
	ck_assert_ptr_null(d);
	ck_assert_ptr_nonnull(strstr(err, "three.Third"));
}
END_TEST

START_TEST(parse_one_fails_on_an_invalid_set)
{
	size_t len;
	uint8_t *buf = load_fixture("bad_cycle", &len);
	defn_saga *d = (defn_saga *)1;
	char err[ERRLEN];
	ck_assert_int_eq(
	    defn_parse_one(buf, len, "bad.BadSaga", &d, err, sizeof(err)), SAGA_EDEFINITION);
	ck_assert_ptr_null(d);
	free(buf);
}
END_TEST

START_TEST(free_functions_accept_null)
{
	defn_free(NULL);
	defn_free_array(NULL, 0);
	ck_assert_int_eq(defn_step_index(NULL, "x"), -1);
}
END_TEST

/* ---- invalid definitions from fixtures --------------------------------- */

#define REFUSED(tname, fixture, ...)                                             \
	START_TEST(tname)                                                        \
	{                                                                        \
		expect_refused(fixture, SAGA_EDEFINITION, NEEDLES(__VA_ARGS__)); \
	}                                                                        \
	END_TEST

REFUSED(unknown_compensation_is_refused_naming_it, "bad_unknown_compensation", "bad.BadSaga",
    "step ChargePayment", "unknown compensation rpc Refund")
REFUSED(cycle_is_refused_naming_its_steps, "bad_cycle", "bad.BadSaga", "cycle", "A -> C -> B -> A")
REFUSED(missing_participant_is_refused_naming_the_step, "bad_missing_participant", "bad.BadSaga",
    "step ChargePayment: missing participant")
REFUSED(unknown_depends_on_is_refused_naming_it, "bad_unknown_depends_on", "step ChargePayment",
    "unknown step ReserveStok")
REFUSED(
    self_dependency_is_refused, "bad_self_dependency", "step ChargePayment", "depends on itself")
REFUSED(duplicate_depends_on_entry_is_refused, "bad_duplicate_depends_on", "step ChargePayment",
    "ReserveStock twice")
REFUSED(
    jitter_above_one_is_refused, "bad_jitter", "step ChargePayment", "jitter 1.5", "outside [0, 1]")
REFUSED(multiplier_below_one_is_refused, "bad_multiplier", "step ChargePayment",
    "compensation_retry multiplier 0.5")
REFUSED(nan_multiplier_is_refused, "bad_nan", "step ChargePayment", "finite")
REFUSED(max_backoff_below_initial_is_refused, "bad_backoff_order", "step ChargePayment",
    "max_backoff_ms 1000 is below initial_backoff_ms 5000")
REFUSED(participant_name_with_space_is_refused, "bad_participant_name", "step ChargePayment",
    "participant \"pay ments\"")
REFUSED(unannotated_rpc_is_refused, "bad_extra_rpc",
    "rpc SendEmail is neither a step nor a compensation of any step")
REFUSED(compensation_that_is_a_step_is_refused, "bad_compensation_is_step", "step ReserveStock",
    "compensation rpc ChargePayment is itself a step")
REFUSED(unknown_saga_input_type_is_refused, "bad_input_type", "input_type bad.Nope")
REFUSED(streaming_rpc_is_refused, "bad_streaming", "rpc ChargePayment", "streaming")
REFUSED(first_with_depends_on_is_refused, "bad_first_with_depends_on", "step ChargePayment",
    "first and depends_on")
REFUSED(saga_without_steps_is_refused, "bad_no_steps", "bad.BadSaga",
    "no rpc has the (sagaspec.step) option")
REFUSED(unknown_step_option_field_is_refused, "bad_unknown_option_field", "future.FutureSaga",
    "step ChargePayment", "unknown step option field 42")
REFUSED(set_without_saga_service_is_refused, "no_saga", "no saga service")
REFUSED(business_key_of_a_bytes_field_is_refused, "bad_business_key", "bad.BadSaga",
    "business_key: field blob of bad.Input must be a single string or integer")
REFUSED(business_key_naming_no_field_is_refused, "bad_business_key_unknown",
    "business_key: bad.Input has no field named order_id")

REFUSED(business_key_of_a_sensitive_field_is_refused, "bad_business_key_sensitive",
    "business_key: field card of bad.Input is sensitive")

/* ---- sensitive fields (proto/sagaspec.proto (sagaspec.sensitive)) ------- */

/* Appends field `num` (length-delimited) holding data[0..len) to b. */
static size_t
ld(uint8_t *b, uint32_t num, const void *data, size_t len)
{
	size_t n = put_varint(b, (uint64_t)num << 3 | 2);
	n += put_varint(b + n, len);
	memcpy(b + n, data, len);
	return n + len;
}

static bool
has_bytes(const uint8_t *b, size_t n, const char *s)
{
	size_t k = strlen(s);
	for (size_t i = 0; i + k <= n; i++)
		if (memcmp(b + i, s, k) == 0)
			return true;
	return false;
}

START_TEST(sensitive_fields_are_removed_at_any_depth_and_listed_by_path)
{
	defn_saga *d = compile_fixture("sensitive_ok");
	ck_assert_ptr_nonnull(d->input_redact);
	ck_assert_ptr_nonnull(d->steps[0].result_redact); /* Receipt holds a Card */
	ck_assert_ptr_null(d->steps[1].result_redact);    /* Plain holds nothing */

	uint8_t card[32], other1[32], other2[32], n2[32], n1[64], whole[32], in[512];
	size_t lc = ld(card, 1, "4111", 4);
	lc += ld(card + lc, 2, "Ann", 3);
	size_t lo1 = ld(other1, 1, "5500", 4);
	size_t lo2 = ld(other2, 2, "Bo", 2);
	size_t ln2 = ld(n2, 1, "s2", 2);
	ln2 += ld(n2 + ln2, 2, "L2", 2);
	size_t ln1 = ld(n1, 1, "s1", 2);
	ln1 += ld(n1 + ln1, 2, "L1", 2);
	ln1 += ld(n1 + ln1, 3, n2, ln2);
	size_t lw = ld(whole, 1, "9999", 4);
	size_t n = ld(in, 1, "hi", 2);
	n += ld(in + n, 2, card, lc);
	n += ld(in + n, 3, "987", 3);
	n += ld(in + n, 4, other1, lo1);
	n += ld(in + n, 4, other2, lo2);
	n += ld(in + n, 5, n1, ln1);
	n += ld(in + n, 6, whole, lw);
	in[n++] = 0x38, in[n++] = 0x05; /* field 7, unknown to the type: kept */

	rdx_out o;
	ck_assert_int_eq(rdx_apply(d->input_redact, in, n, &o), 0);
	static const char *const gone[] = { "4111", "987", "5500", "s1", "s2", "9999" };
	static const char *const kept[] = { "hi", "Ann", "Bo", "L1", "L2" };
	for (size_t i = 0; i < sizeof(gone) / sizeof(gone[0]); i++)
		ck_assert_msg(!has_bytes(o.buf, o.len, gone[i]), "%s is still there", gone[i]);
	for (size_t i = 0; i < sizeof(kept) / sizeof(kept[0]); i++)
		ck_assert_msg(has_bytes(o.buf, o.len, kept[i]), "%s is gone", kept[i]);
	ck_assert_uint_eq(o.buf[o.len - 2], 0x38);
	static const char *const paths[] = { "card.number", "cvv", "others.number", "chain.secret",
		"chain.next.secret", "whole" };
	ck_assert_uint_eq(o.n_paths, sizeof(paths) / sizeof(paths[0]));
	for (size_t i = 0; i < o.n_paths; i++)
		ck_assert_str_eq(o.paths[i], paths[i]);
	rdx_out_free(&o);

	/* A step result: the card inside the receipt goes. */
	n = ld(in, 1, "r-1", 3);
	n += ld(in + n, 2, card, lc);
	ck_assert_int_eq(rdx_apply(d->steps[0].result_redact, in, n, &o), 0);
	ck_assert(!has_bytes(o.buf, o.len, "4111") && has_bytes(o.buf, o.len, "r-1"));
	ck_assert_uint_eq(o.n_paths, 1);
	ck_assert_str_eq(o.paths[0], "card.number");
	rdx_out_free(&o);

	/* A nested message that does not parse is not shown at all ... */
	uint8_t bad_card[] = { 0x0a, 0x05, '4', '1' };
	n = ld(in, 2, bad_card, sizeof(bad_card));
	n += ld(in + n, 1, "hi", 2);
	ck_assert_int_eq(rdx_apply(d->input_redact, in, n, &o), 0);
	ck_assert(!has_bytes(o.buf, o.len, "41") && has_bytes(o.buf, o.len, "hi"));
	ck_assert_uint_eq(o.n_paths, 1);
	ck_assert_str_eq(o.paths[0], "card");
	rdx_out_free(&o);
	/* ... nor a payload that is not a message of its type. */
	uint8_t garbage[] = { 0x12, 0x09, '4', '1', '1', '1' };
	ck_assert_int_eq(rdx_apply(d->input_redact, garbage, sizeof(garbage), &o), 0);
	ck_assert_uint_eq(o.len, 0);
	ck_assert_uint_eq(o.n_paths, 1);
	ck_assert_str_eq(o.paths[0], "*");
	rdx_out_free(&o);

	/* A chain nested far deeper than the limit is cut, not recursed. */
	static uint8_t deep[2][4096];
	size_t dl = ld(deep[0], 1, "s", 1), cur = 0;
	for (int i = 0; i < 200; i++) {
		size_t k = ld(deep[1 - cur], 3, deep[cur], dl);
		cur = 1 - cur;
		dl = k;
	}
	n = ld(in, 1, "hi", 2);
	uint8_t *big = malloc(n + dl + 16);
	memcpy(big, in, n);
	n += ld(big + n, 5, deep[cur], dl);
	ck_assert_int_eq(rdx_apply(d->input_redact, big, n, &o), 0);
	ck_assert(has_bytes(o.buf, o.len, "hi"));
	ck_assert_uint_ge(o.n_paths, 1);
	rdx_out_free(&o);
	free(big);
	defn_free(d);
}
END_TEST

START_TEST(making_a_field_sensitive_changes_the_fingerprint)
{
	defn_saga *a = compile_fixture("sensitive_ok");
	/* the same saga, the options stripped from the descriptor set */
	size_t len;
	uint8_t *buf = load_fixture("sensitive_ok", &len);
	Google__Protobuf__FileDescriptorSet *set =
	    (Google__Protobuf__FileDescriptorSet *)protobuf_c_message_unpack(
		&google__protobuf__file_descriptor_set__descriptor, NULL, len, buf);
	ck_assert_ptr_nonnull(set);
	/* strip every field's options, keeping them to put back before the
	 * set is freed */
	static Google__Protobuf__FieldOptions *kept[4096];
	size_t nk = 0;
	for (size_t f = 0; f < set->n_file; f++)
		for (size_t m = 0; m < set->file[f]->n_message_type; m++) {
			Google__Protobuf__DescriptorProto *mp = set->file[f]->message_type[m];
			for (size_t i = 0; i < mp->n_field; i++) {
				ck_assert_uint_lt(nk, 4096);
				kept[nk++] = mp->field[i]->options;
				mp->field[i]->options = NULL;
			}
		}
	size_t plen = protobuf_c_message_get_packed_size(&set->base);
	uint8_t *plain = malloc(plen);
	protobuf_c_message_pack(&set->base, plain);
	nk = 0;
	for (size_t f = 0; f < set->n_file; f++)
		for (size_t m = 0; m < set->file[f]->n_message_type; m++) {
			Google__Protobuf__DescriptorProto *mp = set->file[f]->message_type[m];
			for (size_t i = 0; i < mp->n_field; i++)
				mp->field[i]->options = kept[nk++];
		}
	protobuf_c_message_free_unpacked(&set->base, NULL);
	defn_saga **defs = NULL;
	size_t nd = 0;
	char e[ERRLEN];
	ck_assert_int_eq(defn_parse_set(plain, plen, &defs, &nd, e, sizeof(e)), 0);
	ck_assert_ptr_null(defs[0]->input_redact);
	ck_assert_uint_eq(defs[0]->n_plans, 0);
	ck_assert_uint_ne(defs[0]->fingerprint, a->fingerprint);
	defn_free_array(defs, nd);
	free(plain);
	free(buf);
	defn_free(a);
}
END_TEST

/* ---- business keys ------------------------------------------------------ */

START_TEST(business_key_is_read_from_the_named_input_field_of_any_integer_or_string_type)
{
	defn_saga *d = compile_fixture("keyed_ok");
	char out[257];
	uint8_t in[64];
	size_t n = 0;

	ck_assert_str_eq(d->business_key, "order_id");
	/* Other fields around it are skipped, whatever their wire type; the
	 * last occurrence wins. */
	in[n++] = 0x10, n += put_varint(in + n, 7);                     /* i32 = 7 */
	in[n++] = 0x0a, in[n++] = 3, memcpy(in + n, "A-1", 3), n += 3;  /* order_id */
	in[n++] = 0x45, memset(in + n, 0xff, 4), n += 4;                /* f32 */
	in[n++] = 0x49, memset(in + n, 0xff, 8), n += 8;                /* f64 */
	in[n++] = 0x0a, in[n++] = 4, memcpy(in + n, "B-22", 4), n += 4; /* order_id again */
	in[n++] = 0x62, in[n++] = 2, in[n++] = 0, in[n++] = 0xff;       /* blob */
	ck_assert_int_eq(defn_business_key(d, in, n, out, sizeof(out)), 0);
	ck_assert_str_eq(out, "B-22");
	/* Absent: empty. */
	ck_assert_int_eq(defn_business_key(d, in, 2, out, sizeof(out)), 0);
	ck_assert_str_eq(out, "");

	/* Each integer type as the key. */
	static const struct {
		uint8_t type;
		uint32_t number;
		uint8_t wt;
		uint64_t raw;
		const char *want;
	} cases[] = {
		{ 5, 2, 0, 0xfffffffffffffffbull, "-5" },                   /* int32 -5 */
		{ 3, 3, 0, 0x8000000000000000ull, "-9223372036854775808" }, /* int64 */
		{ 13, 4, 0, 4294967295ull, "4294967295" },                  /* uint32 */
		{ 4, 5, 0, 18446744073709551615ull, "18446744073709551615" },
		{ 17, 6, 0, 9, "-5" },                      /* sint32 zigzag */
		{ 18, 7, 0, 10, "5" },                      /* sint64 zigzag */
		{ 7, 8, 5, 0xfffffffe, "4294967294" },      /* fixed32 */
		{ 6, 9, 1, 42, "42" },                      /* fixed64 */
		{ 15, 10, 5, 0xfffffffe, "-2" },            /* sfixed32 */
		{ 16, 11, 1, 0xfffffffffffffffeull, "-2" }, /* sfixed64 */
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		d->bk_type = cases[i].type;
		d->bk_number = cases[i].number;
		n = put_varint(in, (uint64_t)cases[i].number << 3 | cases[i].wt);
		if (cases[i].wt == 0)
			n += put_varint(in + n, cases[i].raw);
		else
			for (int b = 0; b < (cases[i].wt == 5 ? 4 : 8); b++)
				in[n++] = (uint8_t)(cases[i].raw >> (8 * b));
		ck_assert_int_eq(defn_business_key(d, in, n, out, sizeof(out)), 0);
		ck_assert_msg(strcmp(out, cases[i].want) == 0, "case %zu: %s, want %s", i, out,
		    cases[i].want);
	}
	defn_free(d);
}
END_TEST

START_TEST(business_key_of_a_malformed_input_is_an_error_not_a_guess)
{
	defn_saga *d = compile_fixture("keyed_ok");
	char out[8];
	static const struct {
		const char *bytes;
		size_t len;
	} bad[] = {
		{ "fail=C", 6 }, /* text, not protobuf */
		{ "\x0a\x05"
		  "ab",
		    4 },           /* length past the end */
		{ "\x08", 1 },     /* varint missing */
		{ "\x0b", 1 },     /* a group */
		{ "\x08\x01", 2 }, /* order_id as a varint */
		{ "\x0a\x02\xc3"
		  "\x28",
		    4 }, /* invalid UTF-8 */
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		ck_assert_msg(defn_business_key(d, (const uint8_t *)bad[i].bytes, bad[i].len, out,
				  sizeof(out)) == SAGA_EINVAL,
		    "case %zu accepted", i);
	/* Well formed but longer than a key may be: its own answer, so the
	 * refusal can say so instead of calling the input invalid. */
	ck_assert_int_eq(defn_business_key(d,
			     (const uint8_t *)"\x0a\x08"
					      "12345678",
			     10, out, sizeof(out)),
	    SAGA_ETOOBIG);
	defn_free(d);
}
END_TEST

/* ---- invalid definitions built by hand --------------------------------- */

START_TEST(duplicate_step_names_are_refused)
{
	tmethod ms[] = {
		{ .name = "Charge", .step = mkstep("p") },
		{ .name = "Charge", .step = mkstep("q") },
	};
	tservice sv = { .pkg = "t", .name = "S", .m = ms, .n = 2 };
	expect_built_refused(&sv, 1, NEEDLES("t.S", "duplicate step Charge"));
}
END_TEST

START_TEST(compensation_declared_twice_is_refused)
{
	Sagaspec__Step *s = mkstep("p");
	s->compensation = "Undo";
	tmethod ms[] = { { .name = "Do", .step = s }, { .name = "Undo" }, { .name = "Undo" } };
	tservice sv = { .pkg = "t", .name = "S", .m = ms, .n = 3 };
	expect_built_refused(&sv, 1, NEEDLES("compensation rpc Undo is declared 2 times"));
}
END_TEST

START_TEST(rpc_sharing_a_step_name_is_refused)
{
	tmethod ms[] = { { .name = "Do", .step = mkstep("p") }, { .name = "Do" } };
	tservice sv = { .pkg = "t", .name = "S", .m = ms, .n = 2 };
	expect_built_refused(&sv, 1, NEEDLES("rpc Do is declared more than once"));
}
END_TEST

START_TEST(two_services_with_same_name_are_refused)
{
	tmethod m1[] = { { .name = "A", .step = mkstep("p") } };
	tmethod m2[] = { { .name = "B", .step = mkstep("q") } };
	tservice sv[] = {
		{ .pkg = "shop", .name = "OrderSaga", .m = m1, .n = 1 },
		{ .pkg = "shop", .name = "OrderSaga", .m = m2, .n = 1 },
	};
	expect_built_refused(sv, 2, NEEDLES("saga shop.OrderSaga is defined more than once"));
}
END_TEST

START_TEST(non_finite_doubles_are_refused)
{
	const double bad[] = { NAN, INFINITY, -INFINITY };
	for (size_t i = 0; i < 3; i++) {
		for (int field = 0; field < 2; field++) {
			Sagaspec__Retry r = SAGASPEC__RETRY__INIT;
			if (field)
				r.jitter = bad[i];
			else
				r.multiplier = bad[i];
			Sagaspec__Step *s = mkstep("p");
			s->retry = &r;
			tmethod ms[] = { { .name = "A", .step = s } };
			tservice sv = { .pkg = "t", .name = "S", .m = ms, .n = 1 };
			expect_built_refused(&sv, 1, NEEDLES("step A", "finite"));
		}
	}
}
END_TEST

START_TEST(invalid_names_are_refused_and_quoted_safely)
{
	/* Control characters and non-ASCII in a name: refused, and the
	 * message stays printable ASCII. */
	const char *bad[] = { "bad name", "tab\there", "caf\xc3\xa9", "x\x01y", "" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		tmethod ms[] = { { .name = bad[i], .step = mkstep("p") } };
		tservice sv = { .pkg = "t", .name = "S", .m = ms, .n = 1 };
		expect_built_refused(&sv, 1, NEEDLES("step names must match"));
	}
	char *longname = talloc(200);
	memset(longname, 'a', 129);
	tmethod ms[] = { { .name = "A", .step = mkstep(longname) } };
	tservice sv = { .pkg = "t", .name = "S", .m = ms, .n = 1 };
	expect_built_refused(&sv, 1, NEEDLES("step A: participant"));
	longname[128] = '\0'; /* exactly 128 is allowed */
	defn_saga **defs = NULL;
	size_t n = 0;
	char err[ERRLEN];
	ck_assert_int_eq(parse_built(&sv, 1, &defs, &n, err), 0);
	defn_free_array(defs, n);
}
END_TEST

START_TEST(step_type_missing_from_set_is_refused)
{
	tmethod ms[] = { { .name = "A", .in = ".t.Missing", .step = mkstep("p") } };
	tservice sv = { .pkg = "t", .name = "S", .m = ms, .n = 1 };
	expect_built_refused(&sv, 1, NEEDLES("step A", "request type t.Missing"));
	tmethod ms2[] = { { .name = "A", .out = ".t", .step = mkstep("p") } };
	sv.m = ms2;
	expect_built_refused(&sv, 1, NEEDLES("step A", "response type t "));
}
END_TEST

START_TEST(compensation_with_bad_name_or_missing_type_is_refused)
{
	Sagaspec__Step *s = mkstep("p");
	s->compensation = "un do";
	tmethod ms[] = { { .name = "Do", .step = s }, { .name = "un do" } };
	tservice sv = { .pkg = "t", .name = "S", .m = ms, .n = 2 };
	expect_built_refused(&sv, 1, NEEDLES("step Do: compensation \"un do\""));

	s->compensation = "Undo";
	tmethod ms2[] = { { .name = "Do", .step = s }, { .name = "Undo", .in = ".t.Gone" } };
	sv.m = ms2;
	expect_built_refused(&sv, 1, NEEDLES("compensation rpc Undo", "not in the descriptor set"));
}
END_TEST

START_TEST(many_sagas_and_messages_compile_without_quadratic_work)
{
	/* 20000 sagas in 20000 files: a type lookup that scanned every file
	 * would do ~10^9 comparisons; the sorted index does not. */
	size_t ns = 20000;
	tservice *sv = talloc(ns * sizeof(*sv));
	tmethod *ms = talloc(ns * sizeof(*ms));
	Sagaspec__Step *st = mkstep("p");
	for (size_t i = 0; i < ns; i++) {
		ms[i].name = "A";
		ms[i].step = st;
		sv[i].pkg = tprintf("p%zu", i);
		sv[i].name = "S";
		sv[i].m = &ms[i];
		sv[i].n = 1;
	}
	defn_saga **defs = NULL;
	size_t n = 0;
	char err[ERRLEN];
	ck_assert_msg(parse_built(sv, ns, &defs, &n, err) == 0, "%s", err);
	ck_assert_uint_eq(n, ns);
	ck_assert_str_eq(defs[ns - 1]->steps[0].input_type, "p19999.Req");
	defn_free_array(defs, n);
}
END_TEST

START_TEST(repeated_step_option_is_refused)
{
	tmethod ms[] = { { .name = "A", .step = mkstep("p"), .copies = 2 } };
	tservice sv = { .pkg = "t", .name = "S", .m = ms, .n = 1 };
	expect_built_refused(&sv, 1, NEEDLES("step A", "appears more than once"));
}
END_TEST

START_TEST(malformed_option_bytes_are_refused)
{
	/* A length prefix that overruns the option: the enclosing
	 * MethodOptions is then malformed, caught by the set's decoder. */
	uint8_t short_len[] = { 0x05, 0x0a, 0x01, 'p' };
	ProtobufCMessageUnknownField uf = {
		.tag = 50700,
		.wire_type = PROTOBUF_C_WIRE_TYPE_LENGTH_PREFIXED,
		.len = sizeof(short_len),
		.data = short_len,
	};
	tmethod ms[] = { { .name = "A", .raw = &uf } };
	tservice sv = { .pkg = "t", .name = "S", .m = ms, .n = 1 };
	size_t len;
	uint8_t *buf = build_set(&sv, 1, &len);
	expect_refused_bytes(buf, len, SAGA_EPROTO, NEEDLES("not a FileDescriptorSet"));

	/* Well-framed, but the option body is not a Step message. */
	uint8_t junk[] = { 0x03, 0x0a, 0x05, 'p' };
	uf.data = junk;
	uf.len = sizeof(junk);
	expect_built_refused(&sv, 1, NEEDLES("step A", "malformed option (sagaspec.step)"));

	/* A group wire type inside the option body (wire_check refuses it). */
	uint8_t group[] = { 0x02, 0x0b, 0x0c };
	uf.data = group;
	uf.len = sizeof(group);
	expect_built_refused(&sv, 1, NEEDLES("step A", "malformed option (sagaspec.step)"));

	/* A varint where a message belongs. */
	uint8_t v[] = { 0x07 };
	uf.wire_type = PROTOBUF_C_WIRE_TYPE_VARINT;
	uf.data = v;
	uf.len = 1;
	expect_built_refused(&sv, 1, NEEDLES("step A", "not a message"));
}
END_TEST

START_TEST(unknown_saga_and_retry_option_fields_are_refused)
{
	static const uint8_t field9[] = { 9 << 3, 1 }; /* field 9, varint 1 */
	Sagaspec__Saga sg = SAGASPEC__SAGA__INIT;
	tmethod ms[] = { { .name = "A", .step = mkstep("p") } };
	tservice sv = { .pkg = "t",
		.name = "S",
		.m = ms,
		.n = 1,
		.saga = &sg,
		.saga_extra = field9,
		.n_saga_extra = sizeof(field9) };
	expect_built_refused(&sv, 1, NEEDLES("t.S", "unknown saga option field 9"));

	/* Retry { max_attempts: 2, field 9: 1 } packed by hand. */
	static const uint8_t retry_field[] = { (4 << 3) | 2, 4, 0x08, 2, 9 << 3, 1 };
	tmethod ms2[] = { { .name = "A",
	    .step = mkstep("p"),
	    .extra = retry_field,
	    .n_extra = sizeof(retry_field) } };
	tservice sv2 = { .pkg = "t", .name = "S", .m = ms2, .n = 1 };
	expect_built_refused(&sv2, 1, NEEDLES("step A", "unknown retry option field 9"));
}
END_TEST

START_TEST(non_utf8_description_is_refused)
{
	Sagaspec__Saga sg = SAGASPEC__SAGA__INIT;
	sg.description = "bad \xff\xfe bytes";
	tmethod ms[] = { { .name = "A", .step = mkstep("p") } };
	tservice sv = { .pkg = "t", .name = "S", .m = ms, .n = 1, .saga = &sg };
	expect_built_refused(&sv, 1, NEEDLES("description is not valid UTF-8"));
}
END_TEST

START_TEST(many_rpcs_are_refused_without_quadratic_work)
{
	/* 20000 copies of one compensation rpc: refused, and quickly (the
	 * test's timeout catches an O(n^2) walk under sanitizers). */
	size_t nm = 20001;
	tmethod *ms = talloc(nm * sizeof(*ms));
	Sagaspec__Step *s = mkstep("p");
	s->compensation = "Undo";
	ms[0].name = "Do";
	ms[0].step = s;
	for (size_t i = 1; i < nm; i++)
		ms[i].name = "Undo";
	tservice sv = { .pkg = "t", .name = "S", .m = ms, .n = nm };
	expect_built_refused(&sv, 1, NEEDLES("declared 20000 times"));
}
END_TEST

START_TEST(error_text_is_truncated_to_errlen)
{
	size_t len;
	uint8_t *buf = load_fixture("bad_unknown_compensation", &len);
	defn_saga **defs = NULL;
	size_t n = 0;
	char err[8];
	memset(err, 'x', sizeof(err));
	ck_assert_int_eq(defn_parse_set(buf, len, &defs, &n, err, sizeof(err)), SAGA_EDEFINITION);
	ck_assert_uint_eq(strlen(err), sizeof(err) - 1);
	/* No buffer at all is fine too. */
	ck_assert_int_eq(defn_parse_set(buf, len, &defs, &n, NULL, 0), SAGA_EDEFINITION);
	ck_assert_int_eq(defn_parse_set(NULL, 5, &defs, &n, NULL, 0), SAGA_EINVAL);
	free(buf);
}
END_TEST

/* ---- hostile bytes ----------------------------------------------------- */

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint64_t
rng(void)
{
	/* xorshift64*: deterministic, so a failure reproduces. */
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * 0x2545f4914f6cdd1dull;
}

static void
parse_and_discard(const uint8_t *buf, size_t len)
{
	defn_saga **defs = NULL;
	size_t n = 0;
	char err[ERRLEN];
	int rv = defn_parse_set(buf, len, &defs, &n, err, sizeof(err));
	if (rv == 0) {
		ck_assert_uint_ge(n, 1);
		defn_free_array(defs, n);
	} else {
		ck_assert_msg(rv == SAGA_EPROTO || rv == SAGA_ETOOBIG || rv == SAGA_EDEFINITION,
		    "unexpected rv %d", rv);
		ck_assert_ptr_null(defs);
		assert_printable(err);
	}
}

START_TEST(garbage_bytes_are_refused_not_crashed)
{
	uint8_t buf[1024];
	for (int i = 0; i < 4000; i++) {
		size_t len = (size_t)(rng() % sizeof(buf));
		for (size_t j = 0; j < len; j++)
			buf[j] = (uint8_t)rng();
		/* Mostly garbage, sometimes a plausible start (field 1, bytes). */
		if (len > 2 && (i & 1))
			buf[0] = 0x0a;
		parse_and_discard(buf, len);
	}

	/* Every strict prefix of a valid set: the saga file comes last, so
	 * none of them can compile. */
	size_t len;
	uint8_t *good = load_fixture("order_ok", &len);
	for (size_t cut = 0; cut < len; cut++) {
		defn_saga **defs = NULL;
		size_t n = 0;
		char err[ERRLEN];
		int rv = defn_parse_set(good, cut, &defs, &n, err, sizeof(err));
		ck_assert_msg(rv != 0, "prefix of %zu bytes compiled", cut);
		ck_assert_ptr_null(defs);
	}

	/* Bit flips, mostly in the saga's own file (the tail), which reach
	 * the option decoding and validation. */
	uint8_t *mut = malloc(len);
	ck_assert_ptr_nonnull(mut);
	size_t tail = len > 1200 ? 1200 : len;
	for (int i = 0; i < 4000; i++) {
		memcpy(mut, good, len);
		int flips = 1 + (int)(rng() % 4);
		for (int k = 0; k < flips; k++) {
			size_t at =
			    (i % 4) ? len - 1 - (size_t)(rng() % tail) : (size_t)(rng() % len);
			mut[at] ^= (uint8_t)(1u << (rng() % 8));
		}
		parse_and_discard(mut, len);
	}
	free(mut);
	free(good);
}
END_TEST

START_TEST(deeply_nested_descriptor_is_refused)
{
	/* FileDescriptorSet { file { message_type { nested_type { ... } } } }
	 * 5000 levels deep: protobuf-c alone would recurse that far. */
	size_t depth = 5000, cap = depth * 8 + 64, len = 0;
	uint8_t *buf = malloc(cap), *tmp = malloc(cap);
	ck_assert_ptr_nonnull(buf);
	ck_assert_ptr_nonnull(tmp);
	for (size_t i = 0; i < depth + 2; i++) {
		/* innermost levels: DescriptorProto.nested_type (3); then
		 * FileDescriptorProto.message_type (4); then Set.file (1) */
		uint8_t tag = i < depth ? (3 << 3 | 2) : i == depth ? (4 << 3 | 2) : (1 << 3 | 2);
		size_t off = 0;
		tmp[off++] = tag;
		off += put_varint(tmp + off, len);
		memcpy(tmp + off, buf, len);
		len += off;
		memcpy(buf, tmp, len);
	}
	defn_saga **defs = NULL;
	size_t n = 0;
	char err[ERRLEN];
	int rv = defn_parse_set(buf, len, &defs, &n, err, sizeof(err));
	ck_assert_int_eq(rv, SAGA_ETOOBIG);
	ck_assert_ptr_null(defs);
	ck_assert_ptr_nonnull(strstr(err, "too deeply"));
	free(buf);
	free(tmp);
}
END_TEST

START_TEST(empty_input_is_refused_as_no_saga)
{
	static const uint8_t none[1];
	expect_refused_bytes(none, 0, SAGA_EDEFINITION, NEEDLES("no saga service"));
	expect_refused_bytes(NULL, 0, SAGA_EDEFINITION, NEEDLES("no saga service"));
}
END_TEST

START_TEST(non_descriptor_bytes_are_refused_as_malformed)
{
	/* field 1 claims 100 bytes, 2 follow */
	static const uint8_t bad[] = { 0x0a, 100, 0x01, 0x02 };
	expect_refused_bytes(bad, sizeof(bad), SAGA_EPROTO, NEEDLES("not a FileDescriptorSet"));
}
END_TEST

static Suite *
defn_suite(void)
{
	Suite *s = suite_create("defn");

	TCase *tc = tcase_create("valid");
	tcase_add_checked_fixture(tc, NULL, teardown);
	tcase_add_test(tc, valid_order_saga_compiles_with_defaults);
	tcase_add_test(tc, parallel_branches_have_join_dependencies);
	tcase_add_test(tc, saga_input_type_option_and_nested_types_resolve);
	tcase_add_test(tc, same_definition_gives_same_fingerprint);
	tcase_add_test(tc, changed_timeout_changes_fingerprint);
	tcase_add_test(tc, every_field_change_changes_fingerprint);
	tcase_add_test(tc, sixty_four_steps_compile_sixty_five_are_refused);
	tcase_add_test(tc, only_initial_backoff_given_raises_default_max_to_it);
	tcase_add_test(tc, parse_one_returns_only_the_named_saga);
	tcase_add_test(tc, parse_one_fails_on_an_invalid_set);
	tcase_add_test(tc, free_functions_accept_null);
	suite_add_tcase(s, tc);

	tc = tcase_create("invalid");
	tcase_add_checked_fixture(tc, NULL, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, unknown_compensation_is_refused_naming_it);
	tcase_add_test(tc, cycle_is_refused_naming_its_steps);
	tcase_add_test(tc, missing_participant_is_refused_naming_the_step);
	tcase_add_test(tc, unknown_depends_on_is_refused_naming_it);
	tcase_add_test(tc, self_dependency_is_refused);
	tcase_add_test(tc, duplicate_depends_on_entry_is_refused);
	tcase_add_test(tc, jitter_above_one_is_refused);
	tcase_add_test(tc, multiplier_below_one_is_refused);
	tcase_add_test(tc, nan_multiplier_is_refused);
	tcase_add_test(tc, max_backoff_below_initial_is_refused);
	tcase_add_test(tc, participant_name_with_space_is_refused);
	tcase_add_test(tc, unannotated_rpc_is_refused);
	tcase_add_test(tc, compensation_that_is_a_step_is_refused);
	tcase_add_test(tc, unknown_saga_input_type_is_refused);
	tcase_add_test(tc, streaming_rpc_is_refused);
	tcase_add_test(tc, first_with_depends_on_is_refused);
	tcase_add_test(tc, saga_without_steps_is_refused);
	tcase_add_test(tc, unknown_step_option_field_is_refused);
	tcase_add_test(tc, set_without_saga_service_is_refused);
	tcase_add_test(tc, business_key_of_a_bytes_field_is_refused);
	tcase_add_test(tc, business_key_naming_no_field_is_refused);
	tcase_add_test(tc, business_key_of_a_sensitive_field_is_refused);
	tcase_add_test(tc, sensitive_fields_are_removed_at_any_depth_and_listed_by_path);
	tcase_add_test(tc, making_a_field_sensitive_changes_the_fingerprint);
	tcase_add_test(
	    tc, business_key_is_read_from_the_named_input_field_of_any_integer_or_string_type);
	tcase_add_test(tc, business_key_of_a_malformed_input_is_an_error_not_a_guess);
	tcase_add_test(tc, duplicate_step_names_are_refused);
	tcase_add_test(tc, compensation_declared_twice_is_refused);
	tcase_add_test(tc, rpc_sharing_a_step_name_is_refused);
	tcase_add_test(tc, two_services_with_same_name_are_refused);
	tcase_add_test(tc, non_finite_doubles_are_refused);
	tcase_add_test(tc, invalid_names_are_refused_and_quoted_safely);
	tcase_add_test(tc, step_type_missing_from_set_is_refused);
	tcase_add_test(tc, compensation_with_bad_name_or_missing_type_is_refused);
	tcase_add_test(tc, repeated_step_option_is_refused);
	tcase_add_test(tc, malformed_option_bytes_are_refused);
	tcase_add_test(tc, unknown_saga_and_retry_option_fields_are_refused);
	tcase_add_test(tc, non_utf8_description_is_refused);
	tcase_add_test(tc, many_rpcs_are_refused_without_quadratic_work);
	tcase_add_test(tc, many_sagas_and_messages_compile_without_quadratic_work);
	tcase_add_test(tc, error_text_is_truncated_to_errlen);
	suite_add_tcase(s, tc);

	tc = tcase_create("hostile");
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, garbage_bytes_are_refused_not_crashed);
	tcase_add_test(tc, deeply_nested_descriptor_is_refused);
	tcase_add_test(tc, empty_input_is_refused_as_no_saga);
	tcase_add_test(tc, non_descriptor_bytes_are_refused_as_malformed);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(defn_suite());
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
