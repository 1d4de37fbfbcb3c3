/* definitions: the definition commands (register, describe). See
 * sagactl.h. */
#include "sagactl.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- register ---------------------------------------------------------- */

int
ctl_cmd_register(int argc, char **argv)
{
	const char *file = NULL;
	int force = 0;
	for (int i = 1; i < argc; i++) {
		if (ctl_match_global(argc, argv, &i))
			continue;
		if (ctl_match_opt(argc, argv, &i, "--force", NULL))
			force = 1;
		else if (file == NULL && (argv[i][0] != '-' || strcmp(argv[i], "-") == 0))
			file = argv[i];
		else
			ctl_unknown_arg("register", argv[i]);
	}
	if (file == NULL)
		ctl_usage_error("register: which descriptor set? (sagactl register FILE.binpb)");

	uint8_t *buf;
	size_t len;
	ctl_read_file(file, &buf, &len);
	saga_client *c = ctl_connect();
	saga_register_result *r = NULL;
	int rv = force ? saga_client_register_force(c, buf, len, &r)
		       : saga_client_register(c, buf, len, &r);
	free(buf);
	if (rv != SAGA_OK) {
		char what[512];
		snprintf(what, sizeof(what), "cannot register %s", file);
		rv = ctl_fail(c, rv, what);
		saga_client_free(c);
		return rv;
	}
	if (ctl_opt_json) {
		printf("{\"definitions\":[");
		for (size_t i = 0; i < r->count; i++) {
			int f = 1;
			printf(i ? ",{" : "{");
			ctl_json_kv_str(&f, "name", r->defs[i].name);
			ctl_json_kv_int(&f, "version", r->defs[i].version);
			ctl_json_kv_int(&f, "steps", r->defs[i].steps);
			ctl_json_key(&f, "unchanged");
			printf(r->defs[i].unchanged ? "true}" : "false}");
		}
		printf("]}\n");
	} else if (r->count == 0) {
		printf("no saga services in %s\n", file);
	} else {
		table t = { .cols = 4 };
		for (size_t i = 0; i < r->count; i++) {
			char *row[] = { ctl_cell(r->defs[i].name, 200, NULL),
				ctl_cellf("version %" PRIu32, r->defs[i].version),
				ctl_cellf("%" PRIu32 " steps", r->defs[i].steps),
				ctl_cellf("%s", r->defs[i].unchanged ? "(unchanged)" : "") };
			ctl_table_add(&t, row);
		}
		ctl_table_print(&t);
	}
	saga_register_result_free(r);
	saga_client_free(c);
	return 0;
}

/* ---- describe ---------------------------------------------------------------- */

/* Depth of each step: 0 without dependencies, else 1 + the deepest one. */
static void
step_levels(const saga_definition *d, int *level)
{
	for (size_t i = 0; i < d->n_steps; i++)
		level[i] = -1;
	for (size_t done = 0, pass = 0; done < d->n_steps && pass <= d->n_steps; pass++) {
		for (size_t i = 0; i < d->n_steps; i++) {
			if (level[i] >= 0)
				continue;
			int lv = 0, ready = 1;
			for (size_t k = 0; k < d->steps[i].n_depends_on && ready; k++) {
				for (size_t j = 0; j < d->n_steps; j++) {
					if (strcmp(d->steps[j].name, d->steps[i].depends_on[k]) !=
					    0)
						continue;
					if (level[j] < 0)
						ready = 0;
					else if (level[j] + 1 > lv)
						lv = level[j] + 1;
				}
			}
			if (ready) {
				level[i] = lv;
				done++;
			}
		}
	}
}

/* The steps as a graph in text: a chain on one line, otherwise one line
 * per level with what each step waits for. */
static void
print_graph(const saga_definition *d)
{
	int level[256], maxlv = 0, chain = 1;
	if (d->n_steps > 256)
		return;
	step_levels(d, level);
	for (size_t i = 0; i < d->n_steps; i++) {
		if (level[i] > maxlv)
			maxlv = level[i];
		if (d->steps[i].n_depends_on > 1)
			chain = 0;
	}
	for (int lv = 0; lv <= maxlv; lv++) {
		int n = 0;
		for (size_t i = 0; i < d->n_steps; i++)
			n += level[i] == lv;
		if (n != 1)
			chain = 0;
	}
	printf("\nflow:\n");
	if (chain) {
		printf("  ");
		for (int lv = 0; lv <= maxlv; lv++)
			for (size_t i = 0; i < d->n_steps; i++)
				if (level[i] == lv)
					printf("%s%s", lv ? " --> " : "", d->steps[i].name);
		printf("\n");
	} else {
		for (int lv = 0; lv <= maxlv; lv++) {
			printf("  %d:", lv + 1);
			for (size_t i = 0; i < d->n_steps; i++) {
				if (level[i] != lv)
					continue;
				printf("  %s", d->steps[i].name);
				if (d->steps[i].n_depends_on > 0) {
					printf(" <- ");
					for (size_t k = 0; k < d->steps[i].n_depends_on; k++)
						printf("%s%s", k ? "+" : "",
						    d->steps[i].depends_on[k]);
				}
			}
			printf("\n");
		}
	}
	/* The engine's rule (sm.c advance_compensation): a step is undone once
	 * every step depending on it is settled; independent branches at once.
	 * By levels, deepest first, that reads as below. */
	printf("on failure, each completed step is undone after the steps that depend on it,\n"
	       "independent branches in parallel:");
	int any = 0;
	for (int lv = maxlv; lv >= 0; lv--) {
		int here = 0;
		for (size_t i = d->n_steps; i-- > 0;)
			if (level[i] == lv && *d->steps[i].compensation) {
				printf("%s %s",
				    here      ? " +"
					: any ? ", then"
					      : "",
				    d->steps[i].compensation);
				any = here = 1;
			}
	}
	printf("%s\n", any ? "" : " (none)");
}

static void
json_definition(const saga_definition *d)
{
	char tb[64];
	int f = 1;
	putchar('{');
	ctl_json_kv_str(&f, "name", d->name);
	ctl_json_kv_int(&f, "version", d->version);
	ctl_json_kv_int(&f, "registered_us", d->registered_us);
	ctl_json_kv_str(&f, "registered", ctl_utc_time(d->registered_us, tb, sizeof(tb)));
	ctl_json_kv_str(&f, "input_type", d->input_type);
	ctl_json_kv_str(&f, "description", d->description);
	ctl_json_kv_int(&f, "deadline_ms", d->deadline_ms);
	ctl_json_kv_str(&f, "business_key", d->business_key);
	ctl_json_key(&f, "steps");
	putchar('[');
	for (size_t i = 0; i < d->n_steps; i++) {
		const saga_definition_step *st = &d->steps[i];
		int g = 1;
		printf("%s{", i ? "," : "");
		ctl_json_kv_str(&g, "name", st->name);
		ctl_json_kv_str(&g, "participant", st->participant);
		ctl_json_kv_str(&g, "compensation", st->compensation);
		ctl_json_kv_strs(&g, "depends_on", st->depends_on, st->n_depends_on);
		ctl_json_kv_int(&g, "timeout_ms", st->timeout_ms);
		ctl_json_kv_int(&g, "max_attempts", st->max_attempts);
		ctl_json_kv_int(&g, "compensation_timeout_ms", st->compensation_timeout_ms);
		ctl_json_kv_int(&g, "compensation_max_attempts", st->compensation_max_attempts);
		ctl_json_kv_int(&g, "heartbeat_timeout_ms", st->heartbeat_timeout_ms);
		ctl_json_kv_str(&g, "input_type", st->input_type);
		ctl_json_kv_str(&g, "output_type", st->output_type);
		putchar('}');
	}
	printf("]}");
}

int
ctl_cmd_describe(int argc, char **argv)
{
	const char *def = NULL, *v;
	uint32_t version = 0;
	for (int i = 1; i < argc; i++) {
		if (ctl_match_global(argc, argv, &i))
			continue;
		if (ctl_match_opt(argc, argv, &i, "--version", &v))
			version = (uint32_t)ctl_parse_num("--version", v, UINT32_MAX);
		else if (def == NULL && argv[i][0] != '-')
			def = argv[i];
		else
			ctl_unknown_arg("describe", argv[i]);
	}
	if (version != 0 && def == NULL)
		ctl_usage_error("describe: --version needs a DEFINITION");
	saga_client *c = ctl_connect();
	saga_definition_list *l = NULL;
	int rv = saga_client_describe(c, def, version, &l);
	if (rv != SAGA_OK) {
		char what[512];
		snprintf(what, sizeof(what), "cannot describe %s", def ? def : "the definitions");
		rv = ctl_fail(c, rv, what);
		saga_client_free(c);
		return rv;
	}
	char tb[64];
	if (ctl_opt_json) {
		printf("{\"definitions\":[");
		for (size_t i = 0; i < l->count; i++) {
			if (i > 0)
				putchar(',');
			json_definition(&l->definitions[i]);
		}
		printf("]}\n");
	} else if (def == NULL) {
		table t = { .cols = 5 };
		char *head[] = { ctl_cellf("DEFINITION"), ctl_cellf("LATEST"), ctl_cellf("STEPS"),
			ctl_cellf("REGISTERED"), ctl_cellf("DESCRIPTION") };
		ctl_table_add(&t, head);
		for (size_t i = 0; i < l->count; i++) {
			const saga_definition *d = &l->definitions[i];
			char *row[] = { ctl_cell(d->name, 80, NULL),
				ctl_cellf("v%" PRIu32, d->version), ctl_cellf("%zu", d->n_steps),
				ctl_cellf("%s", ctl_local_time(d->registered_us, tb, sizeof(tb))),
				ctl_cell(*d->description ? d->description : "-", 60, NULL) };
			ctl_table_add(&t, row);
		}
		ctl_table_print(&t);
		if (l->count == 0)
			printf(
			    "(no definitions; register one with `sagactl register FILE.binpb`)\n");
	} else {
		const saga_definition *d = &l->definitions[0];
		for (size_t i = 0; i < l->count; i++)
			if (l->definitions[i].version == (version ? version : d->version))
				d = &l->definitions[i];
		printf("definition   %s\n", d->name);
		printf("version      %" PRIu32 " of", d->version);
		for (size_t i = l->count; i-- > 0;)
			printf(" %" PRIu32, l->definitions[i].version);
		printf(" (registered %s)\n", ctl_local_time(d->registered_us, tb, sizeof(tb)));
		if (*d->description)
			printf("description  %s\n", d->description);
		printf("input        %s\n", d->input_type);
		if (*d->business_key)
			printf("business key input field %s\n", d->business_key);
		if (d->deadline_ms)
			printf("deadline     %" PRIu32 " ms\n", d->deadline_ms);
		putchar('\n');
		table t = { .cols = 7 };
		char *head[] = { ctl_cellf("STEP"), ctl_cellf("PARTICIPANT"),
			ctl_cellf("COMPENSATION"), ctl_cellf("TIMEOUT"), ctl_cellf("ATTEMPTS"),
			ctl_cellf("AFTER"), ctl_cellf("RESULT TYPE") };
		ctl_table_add(&t, head);
		for (size_t i = 0; i < d->n_steps; i++) {
			const saga_definition_step *st = &d->steps[i];
			char after[512] = "";
			size_t n = 0;
			for (size_t k = 0; k < st->n_depends_on && n < sizeof(after); k++)
				n += (size_t)snprintf(after + n, sizeof(after) - n, "%s%s",
				    k ? "," : "", st->depends_on[k]);
			char *row[] = { ctl_cell(st->name, 64, NULL),
				ctl_cell(st->participant, 40, NULL),
				ctl_cell(*st->compensation ? st->compensation : "-", 64, NULL),
				ctl_cellf("%" PRIu32 " ms", st->timeout_ms),
				st->compensation_max_attempts
				    ? ctl_cellf("%" PRIu32 " (undo %" PRIu32 ")", st->max_attempts,
					  st->compensation_max_attempts)
				    : ctl_cellf("%" PRIu32, st->max_attempts),
				ctl_cell(n ? after : "-", 80, NULL),
				ctl_cell(st->output_type, 80, NULL) };
			ctl_table_add(&t, row);
		}
		ctl_table_print(&t);
		print_graph(d);
	}
	saga_definition_list_free(l);
	saga_client_free(c);
	return 0;
}
