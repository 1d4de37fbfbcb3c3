#!/bin/bash
# Proves the container entry points run the system docker/compose.yaml
# describes, with the real binaries and a real PostgreSQL, outside Docker:
#
#  - Each service runs as Docker would run it: its image's ENTRYPOINT (the
#    script the Dockerfile copies there) with the compose `command` (else
#    the image's CMD), in an environment of exactly the image's ENV lines
#    plus the compose `environment` (env -i: nothing else leaks in).
#    Only what cannot be the same outside a container is changed: host
#    names (postgres, sagad) and wildcard listeners become a private
#    PostgreSQL's unix socket and loopback with free ports, image paths
#    become build-tree paths (SAGAD_BIN, SAGACTL_BIN, PARTICIPANT_BIN_DIR,
#    SAGA_DEFINITIONS, the config file, the /certs volume), and when the
#    test runs as root SAGAD_ALLOW_ROOT=true (the image runs sagad as uid
#    10001).
#  - the certs one-shot (docker/dev-certs.sh) runs first and makes the
#    development certificates once (a second run leaves them); sagad then
#    listens on tls+tcp:// with mutual TLS and every client of it (the
#    participants, register, sagactl, the health checks) uses them.
#  - postgres is a private cluster (initdb, unix socket, as user postgres
#    when root) with compose's POSTGRES_USER/POSTGRES_DB, initialised with
#    docker/postgres-init.sql as the postgres image would.
#  - sagad becomes ready (its compose health check passes), the one-shots
#    (register) exit 0, every participant becomes healthy (its compose
#    health check), each entry point exec'd its program (the pid we
#    started is the program), a saga started with `sagactl start --wait`
#    completes and one shipped to "nowhere" through the `client` role is
#    compensated; SIGTERM then stops every participant and sagad with exit
#    status 0.
#  - The entry points fail clearly: a missing required variable is named
#    (exit 78) before anything starts, an unknown role is a usage error
#    (64), an unreachable database or sagad is given up on after the wait.
#
# Environment (from tests/packaging/meson.build): SOURCE_ROOT, BUILT_SAGAD,
# BUILT_SAGACTL, BUILT_EXAMPLES_DIR, BUILT_ORDER_BINPB, PROTOC.
set -euo pipefail

: "${SOURCE_ROOT:?}" "${BUILT_SAGAD:?}" "${BUILT_SAGACTL:?}" "${BUILT_EXAMPLES_DIR:?}"
: "${BUILT_ORDER_BINPB:?}" "${PROTOC:?}"
# shellcheck source=tests/packaging/lib.sh
. "$SOURCE_ROOT/tests/packaging/lib.sh"

compose=$SOURCE_ROOT/docker/compose.yaml

work=$(mktemp -d "${TMPDIR:-/tmp}/saga-entrypoints.XXXXXX")
chmod 755 "$work" # PostgreSQL runs as `postgres` when we are root
pids=()
pg_started=0
finished=0

say() { printf '%s\n' "$*"; }
ok() { printf 'ok: %s\n' "$*"; }
show_logs() {
	local f
	for f in "$work"/*.log; do
		[[ -f "$f" ]] || continue
		printf -- '---- %s (last 25 lines) ----\n' "${f##*/}"
		tail -n 25 "$f"
	done
}
die() {
	printf 'FAIL: %s\n' "$*"
	show_logs
	exit 1
}

as_pg() {
	if [[ $(id -u) -eq 0 ]]; then
		runuser -u postgres -- "$@"
	else
		"$@"
	fi
}

pg_bindir() {
	local d
	d=$(pg_config --bindir 2>/dev/null || true)
	if [[ -n "$d" && -x "$d/initdb" ]]; then
		printf '%s\n' "$d"
		return
	fi
	for d in $(printf '%s\n' /usr/lib/postgresql/*/bin | sort -V -r); do
		[[ -x "$d/initdb" ]] && printf '%s\n' "$d" && return
	done
	die "cannot find initdb (pg_config --bindir, /usr/lib/postgresql/*/bin)"
}
PGBIN=$(pg_bindir)

cleanup() {
	local pid
	set +e
	# The children too: an entry point that failed to exec has its
	# program as a child.
	for pid in "${pids[@]}"; do
		pkill -TERM -P "$pid" 2>/dev/null
		kill -TERM "$pid" 2>/dev/null
	done
	for pid in "${pids[@]}"; do
		for _ in $(seq 50); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		kill -KILL "$pid" 2>/dev/null
	done
	[[ $pg_started -eq 1 ]] && as_pg "$PGBIN/pg_ctl" -D "$work/pg/data" stop -m immediate >/dev/null 2>&1
	if [[ $finished -eq 1 ]]; then
		rm -rf "$work"
	else
		say "logs and data kept in $work"
	fi
}
trap cleanup EXIT

free_port() {
	python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# --- how Docker would run a service, localised ---------------------------

# The ports compose.yaml uses (on sagad or a wildcard host), each mapped to
# a free local port.
declare -A port_map
for p in $(yaml_flat "$compose" | grep -oE '//(sagad|0\.0\.0\.0):[0-9]+' | sed 's/.*://' | sort -u); do
	port_map[$p]=$(free_port)
done
pgsock=$work/pg

# localise: a value from compose.yaml or a Dockerfile, with container
# names, ports and image paths replaced by their local equivalents.
localise() {
	local v=$1 p from to
	v=${v//"host=postgres"/"host=$pgsock"}
	for p in "${!port_map[@]}"; do
		to="//127.0.0.1:${port_map[$p]}"
		from="//sagad:$p"
		v=${v//"$from"/"$to"}
		from="//0.0.0.0:$p"
		v=${v//"$from"/"$to"}
	done
	v=${v//"/etc/sagad/sagad.conf"/"$SOURCE_ROOT/server/sagad.conf"}
	v=${v//"/var/lib/sagad"/"$work/sagad-data"}
	# The volume the certs one-shot fills (compose.yaml).
	[[ "$v" == /certs || "$v" == /certs/* ]] && v=$work$v
	if [[ "$v" =~ host=postgres|//sagad:|0\.0\.0\.0|/etc/sagad|/var/lib/sagad ]]; then
		die "no local equivalent for the compose/Dockerfile value '$1'"
	fi
	printf '%s' "$v"
}

dockerfile_of() {
	local df
	df=$(compose_get "$compose" "services.$1.build.dockerfile")
	[[ -n "$df" ]] || die "service $1 has no build.dockerfile"
	printf '%s\n' "$SOURCE_ROOT/$df"
}

# The image path -> build-tree script of a COPY'd file.
image_script() {
	local src
	src=$(copy_source "$1" "$2")
	[[ -n "$src" ]] || die "$1 copies nothing to $2"
	printf '%s\n' "$SOURCE_ROOT/$src"
}

# service_env SERVICE: NAME=value lines: image ENV, then compose
# environment (which wins), localised, then the binary locations.
service_env() {
	local svc=$1 df line
	df=$(dockerfile_of "$svc")
	while IFS= read -r line; do
		[[ -n "$line" ]] && printf '%s=%s\n' "${line%%=*}" "$(localise "${line#*=}")"
	done < <(dockerfile_env "$df"; compose_env "$compose" "$svc")
	printf '%s\n' "SAGAD_BIN=$BUILT_SAGAD" "SAGACTL_BIN=$BUILT_SAGACTL" \
		"PARTICIPANT_BIN_DIR=$BUILT_EXAMPLES_DIR" "SAGA_DEFINITIONS=$BUILT_ORDER_BINPB"
	if [[ $(id -u) -eq 0 ]]; then
		printf '%s\n' "SAGAD_ALLOW_ROOT=true"
	fi
}

# env_args SERVICE [DROP_NAME] [NAME=value...]: env -i arguments for the
# service (minus DROP_NAME, plus extra assignments).
env_args() {
	local svc=$1 drop=${2:-} line
	shift
	[[ $# -gt 0 ]] && shift
	env_cmd=(env -i "PATH=$PATH" "HOME=${HOME:-/}")
	# A sanitizer build's settings (meson test sets them) still apply.
	for line in ASAN_OPTIONS UBSAN_OPTIONS LSAN_OPTIONS; do
		[[ -n "${!line:-}" ]] && env_cmd+=("$line=${!line}")
	done
	while IFS= read -r line; do
		[[ -n "$drop" && "${line%%=*}" == "$drop" ]] && continue
		env_cmd+=("$line")
	done < <(service_env "$svc")
	env_cmd+=("$@")
}

# service_cmd SERVICE: entry point script, then the compose command (else
# the image's CMD), one per line.
service_cmd() {
	local svc=$1 df cmd
	df=$(dockerfile_of "$svc")
	image_script "$df" "$(dockerfile_exec "$df" ENTRYPOINT | head -n 1)"
	cmd=$(compose_get "$compose" "services.$svc.command")
	if [[ -n "$cmd" ]]; then
		printf '%s\n' "$cmd"
	else
		dockerfile_exec "$df" CMD
	fi
}

# run_service SERVICE LOG [extra args...]: starts it in the background
# (entry point + command + extra args); its pid in $last_pid.
run_service() {
	local svc=$1 log=$2 cmd=()
	shift 2
	mapfile -t cmd < <(service_cmd "$svc")
	env_args "$svc" ""
	"${env_cmd[@]}" "${cmd[@]}" "$@" >"$work/$log" 2>&1 &
	last_pid=$!
	pids+=("$last_pid")
}

# healthy SERVICE: runs the service's compose health check once (the
# script the image has at that path), in the service's environment.
healthy() {
	local svc=$1 df test=()
	df=$(dockerfile_of "$svc")
	mapfile -t test < <(compose_get "$compose" "services.$svc.healthcheck.test")
	[[ "${test[0]:-}" == CMD ]] || die "service $svc: healthcheck.test is not a CMD list"
	test[1]=$(image_script "$df" "${test[1]}")
	env_args "$svc" ""
	"${env_cmd[@]}" "${test[@]:1}" >"$work/health-$svc.out" 2>&1
}

# wait_healthy SERVICE PID SECONDS
wait_healthy() {
	local svc=$1 pid=$2 i
	for ((i = 0; i < $3 * 5; i++)); do
		if healthy "$svc"; then
			ok "$svc is healthy: $(cat "$work/health-$svc.out")"
			return 0
		fi
		kill -0 "$pid" 2>/dev/null || die "$svc exited before it was healthy"
		sleep 0.2
	done
	die "$svc was not healthy within $3 s: $(cat "$work/health-$svc.out")"
}

# expect_exit STATUS TEXT LOG CMD...: runs CMD, wants STATUS and TEXT in
# its output.
expect_exit() {
	local want=$1 text=$2 log=$3 rc=0
	shift 3
	"$@" >"$work/$log" 2>&1 || rc=$?
	[[ $rc -eq $want ]] || die "$log: exit status $rc, want $want: $(cat "$work/$log")"
	grep -qF -- "$text" "$work/$log" || die "$log: no '$text' in: $(cat "$work/$log")"
	ok "$log: exits $want saying '$text'"
}

# exits_zero_on_sigterm NAME PID SECONDS
exits_zero_on_sigterm() {
	local name=$1 pid=$2 i rc
	kill -TERM "$pid"
	for ((i = 0; i < $3 * 10; i++)); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	kill -0 "$pid" 2>/dev/null && die "$name did not exit within $3 s of SIGTERM"
	rc=0
	wait "$pid" || rc=$?
	[[ $rc -eq 0 ]] || die "$name exited $rc after SIGTERM, want 0"
	ok "$name exited 0 on SIGTERM"
}

services=$(compose_services "$compose")
for s in postgres sagad; do
	grep -qx "$s" <<<"$services" || die "compose.yaml has no service $s"
done

# --- postgres -------------------------------------------------------------
pg_user=$(compose_get "$compose" services.postgres.environment.POSTGRES_USER)
pg_db=$(compose_get "$compose" services.postgres.environment.POSTGRES_DB)
mkdir -m 700 "$work/pg"
[[ $(id -u) -eq 0 ]] && chown postgres: "$work/pg"
as_pg "$PGBIN/initdb" -D "$work/pg/data" -U "$pg_user" -A trust -E UTF8 --locale=C --nosync \
	>"$work/initdb.log" 2>&1 || die "initdb failed"
as_pg "$PGBIN/pg_ctl" -D "$work/pg/data" -l "$work/pg/postgres.log" -w -t 60 \
	-o "-c listen_addresses='' -c unix_socket_directories=$pgsock -c fsync=off" start \
	>"$work/pg_ctl.log" 2>&1 || die "pg_ctl start failed: $(cat "$work/pg/postgres.log")"
pg_started=1
psql -X -q -v ON_ERROR_STOP=1 "host=$pgsock user=$pg_user dbname=postgres" \
	-c "CREATE DATABASE \"$pg_db\"" >"$work/psql.log" 2>&1 || die "cannot create $pg_db"
# As the postgres image runs /docker-entrypoint-initdb.d/*.sql.
init_sql=$(compose_get "$compose" services.postgres.volumes | sed -n 's|^\(\./[^:]*\.sql\):.*|\1|p')
[[ -n "$init_sql" ]] || die "compose.yaml mounts no init .sql into postgres"
psql -X -q -v ON_ERROR_STOP=1 "host=$pgsock user=$pg_user dbname=$pg_db" \
	-f "$SOURCE_ROOT/docker/$init_sql" >>"$work/psql.log" 2>&1 || die "docker/$init_sql failed"
ok "private PostgreSQL up with database $pg_db, initialised by docker/$init_sql"

# --- certs: the one-shot that makes the development certificates ------------
# First, as compose orders it (sagad waits for it to complete): its command
# is a script its image copies in, with /certs localised.
mapfile -t certs_cmd < <(compose_get "$compose" services.certs.command)
[[ ${#certs_cmd[@]} -gt 0 ]] || die "compose.yaml has no certs one-shot with a command"
certs_cmd[0]=$(image_script "$(dockerfile_of certs)" "${certs_cmd[0]}")
for ((i = 1; i < ${#certs_cmd[@]}; i++)); do
	certs_cmd[i]=$(localise "${certs_cmd[i]}")
done
"${certs_cmd[@]}" >"$work/certs.log" 2>&1 || die "the certs one-shot failed: $(cat "$work/certs.log")"
"${certs_cmd[@]}" >>"$work/certs.log" 2>&1 || die "the certs one-shot failed when run again"
grep -q "nothing to do" "$work/certs.log" || die "the certs one-shot made new certificates on its second run"
ok "the certs one-shot made the development certificates once: $(head -n 1 "$work/certs.log")"
# Services that are not programs behind an entry point, run above.
made_first=" certs "

# --- clear failures, before sagad is up ------------------------------------
mapfile -t sagad_cmd < <(service_cmd sagad)
env_args sagad SAGAD_DB
expect_exit 78 "SAGAD_DB is not set" sagad-without-db.log "${env_cmd[@]}" "${sagad_cmd[@]}"
env_args sagad SAGAD_DB "SAGAD_DB=host=$work/nowhere dbname=saga" WAIT_FOR_DB_SECONDS=2
expect_exit 1 "was not ready after 2s" sagad-db-unreachable.log "${env_cmd[@]}" "${sagad_cmd[@]}"
# A database given by the config file or by --db also satisfies the entry
# point (it goes on to migrate, which finds nothing there).
printf 'db = "host=%s/nowhere dbname=saga"\n' "$work" >"$work/with-db.conf"
env_args sagad SAGAD_DB "SAGAD_CONFIG=$work/with-db.conf" WAIT_FOR_DB_SECONDS=0
expect_exit 1 "was not ready after 0s" sagad-db-in-config.log "${env_cmd[@]}" "${sagad_cmd[@]}"
env_args sagad SAGAD_DB WAIT_FOR_DB_SECONDS=0
expect_exit 1 "was not ready after 0s" sagad-db-flag.log "${env_cmd[@]}" "${sagad_cmd[@]}" \
	--db "host=$work/nowhere dbname=saga"
env_args sagad ""
expect_exit 64 "unknown command" sagad-unknown-command.log "${env_cmd[@]}" "${sagad_cmd[0]}" rnu

# Every variable an entry point `require`s, left out of a service's compose
# environment, is named (and nothing starts).
for svc in $services; do
	[[ "$svc" == postgres || "$svc" == sagad || "$made_first" == *" $svc "* ]] && continue
	mapfile -t cmd < <(service_cmd "$svc")
	required=$(grep -oE '^[[:space:]]*require [A-Z_]+' "${cmd[0]}" | awk '{ print $2 }' | sort -u)
	while IFS= read -r line; do
		name=${line%%=*}
		grep -qx "$name" <<<"$required" || continue
		env_args "$svc" "$name"
		expect_exit 78 "$name is not set" "$svc-without-$name.log" "${env_cmd[@]}" "${cmd[@]}"
	done < <(compose_env "$compose" "$svc")
	env_args "$svc" "" WAIT_FOR_SAGAD_SECONDS=1
	expect_exit 1 "did not answer within 1s" "$svc-no-sagad.log" "${env_cmd[@]}" "${cmd[@]}"
done
env_args inventory ""
mapfile -t cmd < <(service_cmd inventory)
expect_exit 64 "unknown role or command: inventroy" participant-unknown-role.log \
	"${env_cmd[@]}" "${cmd[0]}" inventroy

# --- sagad ---------------------------------------------------------------
run_service sagad sagad.log
sagad_pid=$last_pid
wait_healthy sagad "$sagad_pid" 60
[[ "$(readlink "/proc/$sagad_pid/exe")" == "$(readlink -f "$BUILT_SAGAD")" ]] ||
	die "the sagad entry point did not exec sagad (pid $sagad_pid is $(readlink "/proc/$sagad_pid/exe"))"
ok "the sagad entry point exec'd sagad (pid $sagad_pid)"
grep -q 'settings read from' "$work/sagad.log" || die "sagad did not read the config file"
sagad_url=$(localise "$(compose_get "$compose" services.register.environment.SAGA_URL)")

# --- one-shots, then the long-running participants --------------------------
participants=()
for svc in $services; do
	[[ "$svc" == postgres || "$svc" == sagad || "$made_first" == *" $svc "* ]] && continue
	if [[ "$(compose_get "$compose" "services.$svc.restart")" == no ]]; then
		run_service "$svc" "$svc.log"
		rc=0
		wait "$last_pid" || rc=$?
		[[ $rc -eq 0 ]] || die "one-shot $svc exited $rc"
		ok "one-shot $svc exited 0: $(tail -n 1 "$work/$svc.log")"
	else
		run_service "$svc" "$svc.log"
		participants+=("$svc:$last_pid")
	fi
done
[[ ${#participants[@]} -gt 0 ]] || die "compose.yaml has no long-running participant"
for sp in "${participants[@]}"; do
	svc=${sp%%:*} pid=${sp#*:}
	wait_healthy "$svc" "$pid" 30
	exe=$(readlink "/proc/$pid/exe")
	[[ "$exe" == "$(readlink -f "$BUILT_EXAMPLES_DIR")"/order-* ]] ||
		die "the $svc entry point did not exec its participant (pid $pid is $exe)"
	ok "the $svc entry point exec'd ${exe##*/} (pid $pid)"
done

# --- sagas ---------------------------------------------------------------
# The input as JSON, encoded by sagactl with the registered definition's types.
# sagactl with the TLS settings a client of compose.yaml gets (SAGA_TLS_*).
mapfile -t tls_env < <(service_env register | grep '^SAGA_TLS_' || true)
rc=0
env "${tls_env[@]}" "$BUILT_SAGACTL" --url "$sagad_url" start shop.OrderSaga \
	--input "{\"orderId\":\"pkg-$$\",\"sku\":\"SKU-1\",\"quantity\":1,\"amountCents\":\"1250\",\"card\":\"4242\",\"address\":\"1 Main St\"}" \
	--wait --wait-timeout 60000 >"$work/sagactl-start.log" 2>&1 || rc=$?
if [[ $rc -ne 0 ]] || ! grep -q completed "$work/sagactl-start.log" ||
	! grep -q "\"orderId\":\"pkg-$$\"" "$work/sagactl-start.log"; then
	die "sagactl start --wait exited $rc: $(cat "$work/sagactl-start.log")"
fi
ok "a saga started with sagactl start --wait completed"

# The `client` role, in a participant's environment as `docker compose run
# --rm inventory client ...` would: exit 2 = compensated.
env_args inventory ""
mapfile -t cmd < <(service_cmd inventory)
expect_exit 2 "compensated" client-nowhere.log "${env_cmd[@]}" "${cmd[0]}" client \
	--order-id "pkg-nowhere-$$" --address nowhere --wait --timeout 60000

# --- docker stop ---------------------------------------------------------
for sp in "${participants[@]}"; do
	exits_zero_on_sigterm "${sp%%:*}" "${sp#*:}" 15
done
stop_grace=$(compose_get "$compose" services.sagad.stop_grace_period)
exits_zero_on_sigterm sagad "$sagad_pid" "${stop_grace%s}"
grep -q 'msg=stopped\|msg="stopped"\|"stopped"' "$work/sagad.log" || die "sagad did not log that it stopped"
pids=()
finished=1
ok "every service started from compose.yaml's environment, ran sagas and stopped cleanly"
