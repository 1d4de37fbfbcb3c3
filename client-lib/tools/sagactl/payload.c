/* payload: saga inputs and step results as JSON, with the types of their
 * definition version. See sagactl.h. */
#include "sagactl.h"

#include <stdio.h>
#include <string.h>

/* ---- payloads as JSON ------------------------------------------------------ */

void
ctl_schema_free(schema *sc)
{
	pbjson_free(sc->pb);
	saga_definition_list_free(sc->l);
	memset(sc, 0, sizeof(*sc));
}

/* Loads the types of def@version (0 = latest). Returns 0 or the error of
 * the describe call; a descriptor set that pbjson cannot read leaves pb
 * NULL with the reason in why (payloads are then shown as bytes). */
int
ctl_schema_load(saga_client *c, const char *def, uint32_t version, schema *sc)
{
	memset(sc, 0, sizeof(*sc));
	int rv = saga_client_describe(c, def, version, &sc->l);
	if (rv != SAGA_OK) {
		snprintf(
		    sc->why, sizeof(sc->why), "cannot describe %s: %s", def, saga_client_errmsg(c));
		return rv;
	}
	for (size_t i = 0; i < sc->l->count; i++)
		if (sc->d == NULL || sc->l->definitions[i].version == version)
			sc->d = &sc->l->definitions[i];
	if (sc->l->descriptor_set == NULL) {
		snprintf(sc->why, sizeof(sc->why), "sagad sent no descriptor set for %s", def);
		return 0;
	}
	char err[400];
	if (pbjson_new(
		sc->l->descriptor_set, sc->l->descriptor_set_len, &sc->pb, err, sizeof(err)) != 0)
		snprintf(sc->why, sizeof(sc->why), "its descriptor set cannot be read: %s", err);
	return 0;
}

/* bytes of message `type` as JSON (malloc'd; one line if indent is 0), or
 * NULL with the reason in why. */
char *
ctl_payload_json(const schema *sc, const char *type, const uint8_t *b, size_t n, int indent,
    const saga_info *info, const char *prefix, char *why, size_t whylen)
{
	char *out = NULL, err[400];
	if (sc == NULL || sc->pb == NULL) {
		snprintf(why, whylen, "%s", sc != NULL ? sc->why : "no types");
		return NULL;
	}
	/* The fields sagad left out of this payload, as paths within it. */
	const char *red[64];
	size_t nred = 0, pl = prefix ? strlen(prefix) : 0;
	for (size_t i = 0; info != NULL && prefix != NULL && i < info->n_redacted; i++) {
		const char *p = info->redacted[i];
		if (strncmp(p, prefix, pl) != 0)
			continue;
		if (strcmp(p + pl, "*") == 0) /* the whole payload */
			return strdup("\"[redacted]\"");
		if (nred < sizeof(red) / sizeof(red[0]))
			red[nred++] = p + pl;
	}
	if (pbjson_to_json_redacted(
		sc->pb, type, b, n, indent, red, nred, &out, err, sizeof(err)) != 0) {
		snprintf(why, whylen, "not a valid %s: %s", type, err);
		return NULL;
	}
	return out;
}

const char *
ctl_step_output_type(const schema *sc, const char *step)
{
	if (sc == NULL || sc->d == NULL)
		return "";
	for (size_t i = 0; i < sc->d->n_steps; i++)
		if (strcmp(sc->d->steps[i].name, step) == 0)
			return sc->d->steps[i].output_type;
	return "";
}

/* The schema for a saga's definition version, unless --raw. NULL if it
 * cannot be had (the payloads are then shown as bytes, with why). */
schema *
ctl_schema_for_info(saga_client *c, const saga_info *s, schema *buf)
{
	if (ctl_opt_raw)
		return NULL;
	if (ctl_schema_load(c, s->definition, s->version, buf) != SAGA_OK) {
		fprintf(stderr, "sagactl: %s; showing payloads as bytes\n", buf->why);
		ctl_schema_free(buf);
		return NULL;
	}
	return buf;
}
