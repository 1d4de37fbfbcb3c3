#!/bin/bash
# healthcheck.sh: container health checks, installed in the images as
# /usr/local/bin/saga-healthcheck. Exit 0 = healthy, 1 = not (with a reason
# on stderr, which `docker inspect` shows).
#
#   healthcheck.sh http [PATH]
#       GET PATH (default /readyz) from sagad's own HTTP listener, the one
#       SAGAD_HTTP_LISTEN names (http://HOST:PORT; a wildcard host such as
#       0.0.0.0 is asked on loopback). Healthy = status 200.
#       /readyz: sagad is up and its PostgreSQL answers.
#       /healthz: sagad's process is up and serving.
#   healthcheck.sh participant NAME
#       Asks sagad (SAGA_URL) with `sagactl participants` whether it holds at
#       least one connection of participant NAME. Healthy = this
#       participant is connected to sagad and polling for steps. (With
#       replicas, sagad counts them together: a replica's check passes if
#       any replica is connected.) For a tls+tcp:// SAGA_URL, sagactl reads
#       $SAGA_TLS_CA, $SAGA_TLS_CERT, $SAGA_TLS_KEY and $SAGA_TLS_SERVER_NAME
#       from the environment.
#
# Why bash and not curl: debian:12-slim has no curl or wget, and installing
# curl would add a dozen libraries to the image for one GET. bash (always
# there) can open a TCP connection itself (/dev/tcp), and `timeout`
# (coreutils) bounds it. SAGACTL_BIN overrides where sagactl is.
set -euo pipefail

SAGACTL_BIN=${SAGACTL_BIN:-/usr/bin/sagactl}
TIMEOUT_SECONDS=${HEALTHCHECK_TIMEOUT_SECONDS:-5}

unhealthy() {
	printf 'unhealthy: %s\n' "$*" >&2
	exit 1
}

check_http() {
	local path=${1:-/readyz} listen=${SAGAD_HTTP_LISTEN:-} hostport host port status
	[[ -n "$listen" ]] || unhealthy "SAGAD_HTTP_LISTEN is empty: sagad serves no /healthz or /readyz"
	hostport=${listen#http://}
	hostport=${hostport%%/*}
	port=${hostport##*:}
	host=${hostport%:*}
	host=${host#[}
	host=${host%]}
	[[ "$port" =~ ^[0-9]+$ ]] || unhealthy "no port in SAGAD_HTTP_LISTEN=$listen"
	case "$host" in
	"" | 0.0.0.0 | '*') host=127.0.0.1 ;;
	::) host=::1 ;;
	esac
	# HTTP/1.0 with Connection: close, so the answer ends at end of file;
	# only the status line is read.
	# shellcheck disable=SC2016 # $1.. expand in the inner bash
	status=$(timeout "$TIMEOUT_SECONDS" bash -c '
		exec 3<>"/dev/tcp/$1/$2" || exit 1
		printf "GET %s HTTP/1.0\r\nHost: %s\r\nConnection: close\r\n\r\n" "$3" "$1" >&3
		head -n 1 <&3' _ "$host" "$port" "$path" 2>/dev/null) ||
		unhealthy "no answer from http://$host:$port$path within ${TIMEOUT_SECONDS}s"
	status=${status%$'\r'}
	[[ "$status" =~ ^HTTP/1\.[01]\ 200\  ]] || unhealthy "GET http://$host:$port$path: $status"
	printf 'healthy: GET http://%s:%s%s: %s\n' "$host" "$port" "$path" "$status"
}

check_participant() {
	local name=${1:-} out conns
	[[ -n "$name" ]] || unhealthy "usage: healthcheck.sh participant NAME"
	[[ -n "${SAGA_URL:-}" ]] || unhealthy "SAGA_URL is not set"
	out=$("$SAGACTL_BIN" --url "$SAGA_URL" --timeout $((TIMEOUT_SECONDS * 1000)) --json participants 2>&1) ||
		unhealthy "sagad at $SAGA_URL: $out"
	# sagactl prints {"name":"NAME","connections":N,...} per participant.
	conns=$(printf '%s\n' "$out" | grep -o "\"name\":\"$name\",\"connections\":[0-9]*" |
		sed 's/.*://' || true)
	[[ -n "$conns" && "$conns" -gt 0 ]] ||
		unhealthy "sagad at $SAGA_URL has no connection of participant $name"
	printf 'healthy: sagad holds %s connection(s) of participant %s\n' "$conns" "$name"
}

case "${1:-}" in
http) check_http "${2:-}" ;;
participant) check_participant "${2:-}" ;;
*)
	printf 'usage: healthcheck.sh http [PATH] | participant NAME\n' >&2
	exit 1
	;;
esac
