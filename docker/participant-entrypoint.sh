#!/bin/bash
# participant-entrypoint.sh: the example image's entry point. The first
# argument is the role:
#
#   inventory|payment|shipping [ARGS]   run that example participant
#                                       (order-ROLE), ARGS passed on
#   register                            register the example saga definition
#                                       with sagactl, then exit (a one-shot)
#   client [ARGS]                       run order-client ARGS (start an order)
#   COMMAND [ARGS]                      any other command: exec it (sh,
#                                       sagactl); not a command: usage error
#
# Environment (what compose.yaml sets):
#   SAGA_URL   sagad's address, e.g. tcp://sagad:7700. Required: libsaga's
#              default, tcp://127.0.0.1:7700, is never right in a container.
#   SHOP_DB    the participants' own PostgreSQL database (conninfo).
#              Required by inventory, payment and shipping; they create their
#              tables and libsaga's barrier table in it if missing.
#   WAIT_FOR_SAGAD_SECONDS  how long to wait for sagad to answer before
#              starting (default 60), polling `sagactl participants` every
#              second; then the script exits 1 saying sagad is unreachable.
#   SAGA_DEFINITIONS        the descriptor set `register` registers
#              (default: the example's, /usr/share/saga/examples/order.binpb)
#   SAGA_TLS_CA, SAGA_TLS_CERT, SAGA_TLS_KEY, SAGA_TLS_SERVER_NAME
#              TLS for a tls+tcp:// SAGA_URL, read by sagactl and order-*
#              themselves: $SAGA_TLS_CA (required with such a URL) is the
#              CA sagad's certificate must be signed by, $SAGA_TLS_CERT and
#              $SAGA_TLS_KEY the client certificate shown to a sagad that
#              requires one, $SAGA_TLS_SERVER_NAME the name sagad's
#              certificate carries if not the URL's host. A file named there
#              that cannot be read is reported by name (exit 78).
# A missing required variable is reported by name, with exit status 78
# (EX_CONFIG); an unknown role is a usage error (64).
#
# Binary locations, overridable to run this outside the image
# (tests/packaging): PARTICIPANT_BIN_DIR (default /usr/bin, where order-* are)
# and SAGACTL_BIN (default /usr/bin/sagactl).
#
# Every role ends in exec, so the program is the container's main process
# and gets `docker stop`'s SIGTERM itself: a participant finishes the steps
# it is running and exits 0.
set -euo pipefail

PARTICIPANT_BIN_DIR=${PARTICIPANT_BIN_DIR:-/usr/bin}
SAGACTL_BIN=${SAGACTL_BIN:-/usr/bin/sagactl}
SAGA_DEFINITIONS=${SAGA_DEFINITIONS:-/usr/share/saga/examples/order.binpb}
WAIT_FOR_SAGAD_SECONDS=${WAIT_FOR_SAGAD_SECONDS:-60}

say() { printf 'participant-entrypoint: %s\n' "$*" >&2; }
die() {
	local status=$1
	shift
	say "error: $*"
	exit "$status"
}
usage() {
	cat >&2 <<'EOF'
usage: participant-entrypoint.sh inventory|payment|shipping [ARGS]
       participant-entrypoint.sh register
       participant-entrypoint.sh client [order-client ARGS]
       participant-entrypoint.sh COMMAND [ARGS]
EOF
}

# require NAME EXAMPLE: exits 78 naming NAME if it is unset or empty.
require() {
	[[ -n "${!1:-}" ]] || die 78 "$1 is not set (the $role role needs it), e.g. $1='$2'"
}

# check_tls: a tls+tcp:// SAGA_URL needs SAGA_TLS_CA; every SAGA_TLS_* file
# given must be readable. Exits 78 naming the variable otherwise.
check_tls() {
	local v
	case "$SAGA_URL" in
	tls+* | wss*)
		[[ -n "${SAGA_TLS_CA:-}" ]] ||
			die 78 "SAGA_URL $SAGA_URL uses TLS but SAGA_TLS_CA is not set (the CA file sagad's certificate is checked against), e.g. SAGA_TLS_CA=/certs/ca.pem"
		;;
	esac
	for v in SAGA_TLS_CA SAGA_TLS_CERT SAGA_TLS_KEY; do
		[[ -z "${!v:-}" || -r "${!v}" ]] || die 78 "$v=${!v}: cannot read that file"
	done
}

# Waits until sagad answers a request (not merely accepts a connection).
wait_for_sagad() {
	local deadline=$((SECONDS + WAIT_FOR_SAGAD_SECONDS)) err=""
	[[ "$WAIT_FOR_SAGAD_SECONDS" =~ ^[0-9]+$ ]] ||
		die 78 "WAIT_FOR_SAGAD_SECONDS must be a number of seconds, not '$WAIT_FOR_SAGAD_SECONDS'"
	say "waiting for sagad at $SAGA_URL (up to ${WAIT_FOR_SAGAD_SECONDS}s)"
	while ! err=$("$SAGACTL_BIN" --url "$SAGA_URL" --timeout 2000 participants 2>&1 >/dev/null); do
		if ((SECONDS >= deadline)); then
			die 1 "sagad at $SAGA_URL did not answer within ${WAIT_FOR_SAGAD_SECONDS}s: ${err:-no error text}"
		fi
		sleep 1
	done
}

role=${1:-}
[[ $# -gt 0 ]] && shift
case "$role" in
inventory | payment | shipping)
	require SAGA_URL tcp://sagad:7700
	require SHOP_DB 'host=postgres dbname=shop user=saga password=...'
	check_tls
	bin=$PARTICIPANT_BIN_DIR/order-$role
	[[ -x "$bin" ]] || die 78 "$bin not found (set PARTICIPANT_BIN_DIR)"
	wait_for_sagad
	# order-* read SAGA_URL and SHOP_DB themselves. Not passed as --db:
	# a password in the conninfo would show in `ps`.
	exec "$bin" "$@"
	;;
register)
	require SAGA_URL tcp://sagad:7700
	[[ -r "$SAGA_DEFINITIONS" ]] || die 78 "cannot read $SAGA_DEFINITIONS (set SAGA_DEFINITIONS)"
	check_tls
	wait_for_sagad
	# Registering an unchanged definition is a no-op, so this one-shot
	# may run on every `docker compose up`.
	exec "$SAGACTL_BIN" --url "$SAGA_URL" register "$SAGA_DEFINITIONS"
	;;
client)
	require SAGA_URL tcp://sagad:7700
	check_tls
	exec "$PARTICIPANT_BIN_DIR/order-client" "$@"
	;;
"" | -h | --help)
	usage
	exit 64
	;;
*)
	command -v "$role" >/dev/null 2>&1 || {
		say "error: unknown role or command: $role"
		usage
		exit 64
	}
	exec "$role" "$@"
	;;
esac
