/* principals: `sagactl principal create|list|revoke` (admin). See
 * sagactl.h. */
#include "sagactl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_DEFINITIONS 256

static void
json_principal(const saga_principal *p)
{
	int f = 1;
	char tb[64];
	printf("{");
	ctl_json_kv_str(&f, "id", p->id);
	ctl_json_kv_str(&f, "name", p->name);
	ctl_json_kv_str(&f, "role", p->role);
	ctl_json_kv_str(&f, "participant", p->participant);
	ctl_json_kv_strs(&f, "definitions", p->definitions, p->n_definitions);
	ctl_json_kv_str(&f, "created_at", ctl_utc_time(p->created_us, tb, sizeof(tb)));
	ctl_json_kv_str(&f, "created_by", p->created_by);
	ctl_json_kv_str(&f, "revoked_at", ctl_utc_time(p->revoked_us, tb, sizeof(tb)));
	printf("}");
}

static void
print_table(const saga_principal_list *l)
{
	table t = { .cols = 7 };
	char tb[64], tr[64];
	char *head[] = { ctl_cellf("NAME"), ctl_cellf("ID"), ctl_cellf("ROLE"),
		ctl_cellf("DEFINITIONS"), ctl_cellf("CREATED"), ctl_cellf("BY"),
		ctl_cellf("REVOKED") };
	ctl_table_add(&t, head);
	for (size_t i = 0; i < l->count; i++) {
		const saga_principal *p = &l->principals[i];
		size_t dl = 1;
		for (size_t k = 0; k < p->n_definitions; k++)
			dl += strlen(p->definitions[k]) + 1;
		char *defs = calloc(1, dl);
		for (size_t k = 0; defs != NULL && k < p->n_definitions; k++) {
			if (k)
				strcat(defs, ",");
			strcat(defs, p->definitions[k]);
		}
		char *row[] = { ctl_cell(p->name, 64, NULL), ctl_cellf("%s", p->id),
			p->participant[0] ? ctl_cellf("participant:%s", p->participant)
					  : ctl_cellf("%s", p->role),
			ctl_cell(defs != NULL && defs[0] ? defs : "(all)", 60, NULL),
			ctl_cellf("%s", ctl_local_time(p->created_us, tb, sizeof(tb))),
			ctl_cell(p->created_by, 32, NULL),
			ctl_cellf("%s",
			    p->revoked_us ? ctl_local_time(p->revoked_us, tr, sizeof(tr)) : "-") };
		free(defs);
		ctl_table_add(&t, row);
	}
	ctl_table_print(&t);
}

static int
cmd_create(int argc, char **argv)
{
	const char *name = NULL, *role = NULL, *part = NULL, *v;
	char *defs_copy = NULL;
	const char *defs[MAX_DEFINITIONS];
	size_t n_defs = 0;
	for (int i = 1; i < argc; i++) {
		if (ctl_match_global(argc, argv, &i))
			continue;
		if (ctl_match_opt(argc, argv, &i, "--role", &v)) {
			role = v;
			continue;
		}
		if (ctl_match_opt(argc, argv, &i, "--participant", &v)) {
			part = v;
			continue;
		}
		if (ctl_match_opt(argc, argv, &i, "--definitions", &v)) {
			free(defs_copy);
			n_defs = 0;
			if ((defs_copy = strdup(v)) == NULL)
				exit(SAGA_ENOMEM);
			char *save = NULL;
			for (char *d = strtok_r(defs_copy, ",", &save); d != NULL;
			     d = strtok_r(NULL, ",", &save)) {
				if (n_defs == MAX_DEFINITIONS)
					ctl_usage_error("principal create: at most %d definitions",
					    MAX_DEFINITIONS);
				defs[n_defs++] = d;
			}
			continue;
		}
		if (name == NULL && argv[i][0] != '-')
			name = argv[i];
		else
			ctl_unknown_arg("principal create", argv[i]);
	}
	if (name == NULL || role == NULL)
		ctl_usage_error("principal create NAME --role ROLE [--participant P] "
				"[--definitions A,B]");
	/* "participant:NAME" is how roles are shown; take it as given too. */
	char rolebuf[32];
	if (strncmp(role, "participant:", 12) == 0) {
		if (part == NULL)
			part = role + 12;
		role = "participant";
	}
	snprintf(rolebuf, sizeof(rolebuf), "%s", role);
	saga_client *c = ctl_connect();
	char *cred = NULL;
	saga_principal_list *l = NULL;
	int rv = saga_client_principal_create(c, name, rolebuf, part, defs, n_defs, &cred, &l);
	free(defs_copy);
	if (rv != SAGA_OK) {
		rv = ctl_fail(c, rv, "cannot create the principal");
		saga_client_free(c);
		return rv;
	}
	if (ctl_opt_json) {
		int f = 1;
		printf("{");
		ctl_json_kv_str(&f, "credential", cred);
		ctl_json_key(&f, "principal");
		if (l->count > 0)
			json_principal(&l->principals[0]);
		else
			printf("null");
		printf("}\n");
	} else {
		/* The credential alone on stdout, so `> FILE` makes a credential
		 * file; what it is goes to stderr. */
		printf("%s\n", cred);
		if (l->count > 0)
			fprintf(stderr,
			    "sagactl: principal %s (%s, id %s) created; its credential (above) "
			    "is shown only now: keep it in a file of mode 0600 and give it with "
			    "--credential-file\n",
			    l->principals[0].name, l->principals[0].role, l->principals[0].id);
	}
	memset(cred, 0, strlen(cred));
	saga_string_free(cred);
	saga_principal_list_free(l);
	saga_client_free(c);
	return 0;
}

static int
cmd_list(int argc, char **argv)
{
	for (int i = 1; i < argc; i++)
		if (!ctl_match_global(argc, argv, &i))
			ctl_unknown_arg("principal list", argv[i]);
	saga_client *c = ctl_connect();
	saga_principal_list *l = NULL;
	int rv = saga_client_principal_list(c, &l);
	if (rv != SAGA_OK) {
		rv = ctl_fail(c, rv, "cannot list principals");
		saga_client_free(c);
		return rv;
	}
	if (ctl_opt_json) {
		printf("[");
		for (size_t i = 0; i < l->count; i++) {
			printf(i ? "," : "");
			json_principal(&l->principals[i]);
		}
		printf("]\n");
	} else {
		print_table(l);
	}
	saga_principal_list_free(l);
	saga_client_free(c);
	return 0;
}

static int
cmd_revoke(int argc, char **argv)
{
	const char *key = NULL;
	for (int i = 1; i < argc; i++) {
		if (ctl_match_global(argc, argv, &i))
			continue;
		if (key == NULL && argv[i][0] != '-')
			key = argv[i];
		else
			ctl_unknown_arg("principal revoke", argv[i]);
	}
	if (key == NULL)
		ctl_usage_error("principal revoke NAME|ID");
	saga_client *c = ctl_connect();
	saga_principal_list *l = NULL;
	int rv = saga_client_principal_revoke(c, key, &l);
	if (rv != SAGA_OK) {
		rv = ctl_fail(c, rv, "cannot revoke the principal");
		saga_client_free(c);
		return rv;
	}
	if (ctl_opt_json) {
		if (l->count > 0)
			json_principal(&l->principals[0]);
		printf("\n");
	} else if (l->count > 0) {
		printf("revoked %s (id %s)\n", l->principals[0].name, l->principals[0].id);
	}
	saga_principal_list_free(l);
	saga_client_free(c);
	return 0;
}

int
ctl_cmd_principal(int argc, char **argv)
{
	int i = 1;
	while (i < argc && ctl_match_global(argc, argv, &i))
		i++;
	if (i >= argc)
		ctl_usage_error("principal: create, list or revoke? (sagactl principal --help)");
	if (strcmp(argv[i], "create") == 0)
		return cmd_create(argc - i, argv + i);
	if (strcmp(argv[i], "list") == 0)
		return cmd_list(argc - i, argv + i);
	if (strcmp(argv[i], "revoke") == 0)
		return cmd_revoke(argc - i, argv + i);
	ctl_usage_error("principal: unknown subcommand '%s' (create, list, revoke)", argv[i]);
}
