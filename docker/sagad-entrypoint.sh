#!/bin/bash
# sagad-entrypoint.sh: the sagad image's entry point.
#
#   sagad-entrypoint.sh [run] [--flag value]...   migrate, then serve (default)
#   sagad-entrypoint.sh migrate|version|help|print-config [--flag value]...
#   sagad-entrypoint.sh COMMAND [ARGS]...          any other command: exec it
#                                                  (sh, sagactl ...)
#
# sagad reads its settings itself: the config file in SAGAD_CONFIG (the
# image sets /etc/sagad/sagad.conf), every SAGAD_* variable, then the flags
# given here. This script only checks what a container needs and orders
# the start:
#
#   1. A database is required. The image has no PostgreSQL server, so
#      sagad's embedded default (no `db` setting) cannot work there: one of
#      SAGAD_DB, --db or a `db = ...` line in the config file must give the
#      conninfo, or the script exits 78 (EX_CONFIG) saying so.
#   2. `sagad migrate` applies the schema, retried every 2 s for up to
#      WAIT_FOR_DB_SECONDS (default 60) while the database cannot be
#      reached yet (exit status 1). A usage or config error (64, 78) stops
#      at once. Several sagad replicas may migrate at once: migrations are
#      locked and tracked.
#   3. exec sagad run: sagad becomes the container's main process, so
#      `docker stop` (SIGTERM) reaches it and it drains before exiting 0,
#      and SIGHUP (`docker kill -s HUP`) reloads its live settings.
#
# Outside the image (tests/packaging), SAGAD_BIN overrides where sagad is.
set -euo pipefail

SAGAD_BIN=${SAGAD_BIN:-/usr/bin/sagad}
WAIT_FOR_DB_SECONDS=${WAIT_FOR_DB_SECONDS:-60}

say() { printf 'sagad-entrypoint: %s\n' "$*" >&2; }
die() {
	local status=$1
	shift
	say "error: $*"
	exit "$status"
}

case "${1:-run}" in
run) [[ $# -gt 0 ]] && shift ;;
migrate | version | help | print-config | --help | -h | --version)
	exec "$SAGAD_BIN" "$@"
	;;
-*) ;; # flags for `run`
*)
	command -v "$1" >/dev/null 2>&1 ||
		die 64 "unknown command: $1 (sagad commands: run, migrate, version, help, print-config)"
	exec "$@"
	;;
esac

[[ -x "$SAGAD_BIN" ]] || die 78 "sagad not found at $SAGAD_BIN (set SAGAD_BIN)"
[[ "$WAIT_FOR_DB_SECONDS" =~ ^[0-9]+$ ]] ||
	die 78 "WAIT_FOR_DB_SECONDS must be a number of seconds, not '$WAIT_FOR_DB_SECONDS'"

# Where a database may be given besides SAGAD_DB: a --db flag, or an
# uncommented, non-empty `db = ...` line of the config file (--config wins
# over SAGAD_CONFIG, as in sagad).
has_db=0
config=${SAGAD_CONFIG:-}
prev=""
for arg in "$@"; do
	case "$arg" in
	--db=?*) has_db=1 ;;
	--config=*) config=${arg#--config=} ;;
	esac
	[[ "$prev" == --db && -n "$arg" ]] && has_db=1
	[[ "$prev" == --config ]] && config=$arg
	prev=$arg
done
if [[ -n "${SAGAD_DB:-}" ]]; then
	has_db=1
elif [[ $has_db -eq 0 && -n "$config" && -r "$config" ]] &&
	grep -Eq '^[[:space:]]*db[[:space:]]*=[[:space:]]*([^"[:space:]#]|"[^"])' "$config"; then
	has_db=1
fi
if [[ $has_db -eq 0 ]]; then
	die 78 "SAGAD_DB is not set. Give sagad its PostgreSQL conninfo, e.g.
  SAGAD_DB='host=postgres port=5432 dbname=saga user=saga password=...'
(or --db, or db = ... in ${config:-the config file}). This image has no
PostgreSQL server, so sagad's embedded database cannot run in it."
fi

# Migrate, waiting for the database to come up.
deadline=$((SECONDS + WAIT_FOR_DB_SECONDS))
attempt=1
while :; do
	status=0
	"$SAGAD_BIN" migrate "$@" || status=$?
	[[ $status -eq 0 ]] && break
	# 1: the database could not be reached or the migration failed;
	# anything else (64 usage, 78 config) will not get better by waiting.
	[[ $status -eq 1 ]] || die "$status" "sagad migrate exited $status (see above)"
	if ((SECONDS >= deadline)); then
		die 1 "the database was not ready after ${WAIT_FOR_DB_SECONDS}s ($attempt attempts of sagad migrate, last error above); giving up"
	fi
	say "sagad migrate failed (attempt $attempt); retrying in 2 s"
	attempt=$((attempt + 1))
	sleep 2
done

exec "$SAGAD_BIN" run "$@"
