#!/bin/bash
# demo.sh: the whole system on one machine in one command.
#
#   sudo ./examples/demo.sh          (from the repository root, or as root)
#   sudo ./examples/demo.sh --keep   leave everything running afterwards
#   sudo ./examples/demo.sh --node   the Node.js participants (examples/order-node)
#                                    and its HTTP order service instead of the C ones
#   sudo ./examples/demo.sh --mix    C and Node.js participants together: C
#                                    inventory, Node.js shipping, and two replicas
#                                    of payment, one C and one Node.js, sharing
#                                    one barrier table
#
# It installs the build dependencies, builds everything in build/, starts
# sagad with its embedded PostgreSQL in a fresh temporary directory, starts
# the three order participants, registers the order saga, then runs two
# orders: one that completes and one whose shipping step fails (address
# "nowhere") so that sagad refunds the payment and releases the stock. It
# prints both sagas' status and the participants' logs, then stops
# everything it started (unless --keep). With --node or --mix the two orders
# go through the Node.js HTTP order service (POST /orders), which answers
# 201 completed and 422 compensated; its packages come from
# examples/order-node/package-lock.json (`npm ci`, once).
#
# Root is needed only to install missing packages. When run as root, the
# demo passes sagad --allow-root (it refuses root otherwise) and sagad runs
# its PostgreSQL as the `postgres` user.
set -euo pipefail

usage() {
	cat <<EOF
usage: $0 [--keep] [--node | --mix]
  --keep   leave sagad, its PostgreSQL and the participants running after the
           demo, and print how to use and stop them
  --node   run the Node.js participants (examples/order-node) instead of the
           C ones, and the orders through its HTTP order service
  --mix    run C and Node.js participants together: C inventory, Node.js
           shipping, two payment replicas (one C, one Node.js) sharing one
           barrier; the orders through the HTTP order service
EOF
}

keep=0
mode=c # c, node or mix
while [[ $# -gt 0 ]]; do
	case "$1" in
	--keep) keep=1 ;;
	--node | --mix)
		if [[ $mode != c && $mode != "${1#--}" ]]; then
			printf '%s\n' "demo: --node and --mix exclude each other" >&2
			exit 2
		fi
		mode=${1#--}
		;;
	-h | --help) usage; exit 0 ;;
	*) printf '%s\n' "demo: unknown argument: $1" >&2; usage >&2; exit 2 ;;
	esac
	shift
done

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

build=build
sagad_bin=$build/server/sagad
sagactl_bin=$build/client-lib/sagactl
examples_bin=$build/examples
binpb=$examples_bin/order.binpb
participants=(inventory payment shipping)
node_app=examples/order-node
# The participant processes, "LANG:ROLE" each, started in this order; their
# logs are $work/ROLE.log, or ROLE-LANG.log where a role has two replicas.
case $mode in
c) procs=(c:inventory c:payment c:shipping) ;;
node) procs=(node:inventory node:payment node:shipping) ;;
mix) procs=(c:inventory c:payment node:payment node:shipping) ;;
esac
service_pid=""
service_url=""

say() { printf '\n==> %s\n' "$*"; }
die() { printf '\ndemo: error: %s\n' "$*" >&2; exit 1; }

# ---- state for cleanup ------------------------------------------------
work=""       # temporary directory: data, socket, logs
sagad_pid=""
participant_pids=()
participant_logs=()
finished=0    # set once the demo succeeded

pg_ctl_bin() {
	local bindir=""
	bindir=$(pg_config --bindir 2>/dev/null || true)
	if [[ -n "$bindir" && -x "$bindir/pg_ctl" ]]; then
		printf '%s\n' "$bindir/pg_ctl"
		return 0
	fi
	# The newest installed major version.
	local p
	for p in $(printf '%s\n' /usr/lib/postgresql/*/bin/pg_ctl | sort -V -r); do
		if [[ -x "$p" ]]; then
			printf '%s\n' "$p"
			return 0
		fi
	done
	return 1
}

# Stops the embedded cluster if it still runs. sagad stops it on SIGTERM;
# this is the fallback for a sagad that crashed or had to be killed, as the
# cluster outlives sagad by design (a restarted sagad re-uses it).
stop_postgres() {
	local pgdata=$work/data/pg pg_ctl
	[[ -f "$pgdata/postmaster.pid" ]] || return 0
	if ! pg_ctl=$(pg_ctl_bin); then
		printf '%s\n' "demo: pg_ctl not found; stop PostgreSQL in $pgdata by hand" >&2
		return 0
	fi
	if [[ $(id -u) -eq 0 ]]; then
		runuser -u postgres -- "$pg_ctl" -D "$pgdata" stop -m fast >/dev/null 2>&1 || true
	else
		"$pg_ctl" -D "$pgdata" stop -m fast >/dev/null 2>&1 || true
	fi
}

# Sends SIGTERM and waits up to ~10 s, then SIGKILL.
stop_pid() {
	local pid=$1 i
	kill -TERM "$pid" 2>/dev/null || return 0
	for ((i = 0; i < 100; i++)); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	kill -KILL "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
}

cleanup() {
	local rc=$?
	# Finish the cleanup whatever fails on the way (e.g. stdout closed).
	set +e
	trap - EXIT INT TERM HUP
	trap '' PIPE
	if [[ $keep -eq 1 && $finished -eq 1 ]]; then
		print_keep_help
		exit "$rc"
	fi
	if [[ ${#participant_pids[@]} -gt 0 || -n "$sagad_pid" ]]; then
		printf '\n==> %s\n' "stopping everything the demo started" 2>/dev/null
	fi
	local pid
	if [[ -n "$service_pid" ]]; then
		stop_pid "$service_pid"
	fi
	# All participants at once (each may take a few seconds to finish its
	# running steps), then wait for each.
	for pid in "${participant_pids[@]}"; do
		kill -TERM "$pid" 2>/dev/null
	done
	for pid in "${participant_pids[@]}"; do
		stop_pid "$pid"
	done
	if [[ -n "$sagad_pid" ]]; then
		stop_pid "$sagad_pid"
	fi
	if [[ -n "$work" ]]; then
		stop_postgres
		if [[ $finished -eq 1 ]]; then
			rm -rf "$work"
		else
			printf '%s\n' "demo: logs and data kept in $work" >&2
		fi
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP
# A closed stdout (demo.sh | head) must not kill the script before it has
# stopped what it started. (A trap, not an ignore: children inherit an
# ignored SIGPIPE but not a trap.)
trap 'exit 141' PIPE

print_keep_help() {
	local pg_ctl
	pg_ctl=$(pg_ctl_bin || echo pg_ctl)
	cat <<EOF

==> left running (--keep)
  sagad         pid $sagad_pid, listening on $url, log $work/sagad.log
  participants  pids ${participant_pids[*]}, logs ${participant_logs[*]}
EOF
	if [[ -n "$service_pid" ]]; then
		printf '  %s\n' "order service pid $service_pid at $service_url, log $work/order-service.log"
	fi
	cat <<EOF
  try:
    $sagactl_bin --url $url list
    $examples_bin/order-client --url $url --address nowhere --wait
EOF
	if [[ -n "$service_pid" ]]; then
		printf '    %s\n' "curl -s $service_url/orders -H 'content-type: application/json' -d '{\"orderId\":\"o-1\",\"sku\":\"SKU-1\",\"quantity\":1,\"amountCents\":1999,\"card\":\"4242\",\"address\":\"nowhere\"}'"
	fi
	cat <<EOF
  stop everything:
    kill ${participant_pids[*]} ${service_pid:+$service_pid }$sagad_pid
    # sagad stops its PostgreSQL on SIGTERM; should it still run:
EOF
	if [[ $(id -u) -eq 0 ]]; then
		printf '    %s\n' "runuser -u postgres -- $pg_ctl -D $work/data/pg stop -m fast"
	else
		printf '    %s\n' "$pg_ctl -D $work/data/pg stop -m fast"
	fi
	printf '    %s\n' "rm -rf $work"
}

# Prints the last lines of a log, to explain a failure.
show_log() {
	local f=$1
	[[ -f "$f" ]] || return 0
	printf '%s\n' "---- last lines of $f ----" >&2
	tail -n 30 "$f" >&2 || true
	printf '%s\n' "----" >&2
}

# ---- 1. dependencies --------------------------------------------------
say "installing missing dependencies (tests/install-deps.sh)"
tests/install-deps.sh || die "installing dependencies failed"

# ---- 2. build ---------------------------------------------------------
say "building in $build/"
if [[ ! -f "$build/meson-private/coredata.dat" ]]; then
	meson setup "$build" || die "meson setup $build failed"
fi
ninja -C "$build" || die "build failed"
for b in "$sagad_bin" "$sagactl_bin" "${participants[@]/#/$examples_bin/order-}" \
	"$examples_bin/order-client"; do
	[[ -x "$b" ]] || die "$b was not built"
done
[[ -f "$binpb" ]] || die "$binpb was not built"

# The Node.js participants and order service: the build's addon (libsaga's
# npm package loads it from SAGA_NODE_ADDON, so nothing is built by npm)
# and the example's packages from its package-lock.json.
if [[ $mode != c ]]; then
	command -v node >/dev/null 2>&1 || die "node is not installed (tests/install-deps.sh installs nodejs)"
	export SAGA_NODE_ADDON=$root/$build/client-lib/node/saga_node.node
	[[ -f "$SAGA_NODE_ADDON" ]] ||
		die "$SAGA_NODE_ADDON was not built: node_api.h was missing when meson configured $build (install libnode-dev, then: meson setup --reconfigure $build)"
	if [[ ! -d "$node_app/node_modules/protobufjs" || ! -d "$node_app/node_modules/pg" ]]; then
		say "installing the Node.js example's packages: npm ci in $node_app"
		(cd "$node_app" && npm ci --ignore-scripts --no-audit --no-fund) ||
			die "npm ci in $node_app failed (is the npm registry reachable?)"
	fi
fi

# ---- 3. sagad ---------------------------------------------------------
work=$(mktemp -d "${TMPDIR:-/tmp}/saga-demo.XXXXXX")
# When root, sagad runs PostgreSQL as `postgres`, which must reach
# $work/data/pg: make the path traversable.
chmod 755 "$work"
mkdir -m 755 "$work/data"
# TCP on loopback (the product's default transport). A free port unless
# SAGA_DEMO_PORT says which. (nng 1.5.2's ipc listener can stop accepting
# after a client drops mid-handshake, so the demo does not use ipc.)
port="${SAGA_DEMO_PORT:-$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}"
url="tcp://127.0.0.1:$port"

say "starting sagad (embedded PostgreSQL in $work/data, listening on $url)"
root_flag=()
[[ $(id -u) -eq 0 ]] && root_flag=(--allow-root) # sagad refuses root otherwise
"$sagad_bin" "${root_flag[@]}" --data-dir "$work/data" --listen "$url" >"$work/sagad.log" 2>&1 &
sagad_pid=$!

# First start runs initdb: allow it a minute.
ready=0
last_err=""
for ((i = 0; i < 600; i++)); do
	if ! kill -0 "$sagad_pid" 2>/dev/null; then
		show_log "$work/sagad.log"
		die "sagad exited during start-up (log above)"
	fi
	if last_err=$("$sagactl_bin" --url "$url" list 2>&1 >/dev/null); then
		ready=1
		break
	fi
	sleep 0.1
done
if [[ $ready -ne 1 ]]; then
	show_log "$work/sagad.log"
	die "sagad did not answer \`sagactl --url $url list\` within 60 s: ${last_err:-no error text}"
fi
printf '%s\n' "sagad is up (pid $sagad_pid)"

# ---- 4. participants --------------------------------------------------
# Each participant keeps its data (stock, charges, shipments) and libsaga's
# barrier table in its own database. For the demo they share one database,
# `shop`, in sagad's embedded PostgreSQL (its socket is in $work/data/pg);
# in production each service has its own PostgreSQL.
shop_db="host=$work/data/pg port=5432 user=saga dbname=shop"
say "creating the participants' database: shop"
psql -X -q "host=$work/data/pg port=5432 user=saga dbname=postgres" \
	-c "CREATE DATABASE shop" || die "cannot create database shop"

labels=()
for proc in "${procs[@]}"; do
	if [[ ${proc%%:*} == c ]]; then labels+=("order-${proc#*:}"); else labels+=("${proc#*:}.js"); fi
done
if [[ $mode == c ]]; then
	say "starting the participants: ${participants[*]}"
else
	say "starting the participants: ${labels[*]} (order-X in C, X.js in Node.js)"
fi
for proc in "${procs[@]}"; do
	lang=${proc%%:*} p=${proc#*:}
	log=$work/$p.log
	# A role with two replicas: one log each.
	[[ $(printf '%s\n' "${procs[@]}" | grep -c ":$p\$") -gt 1 ]] && log=$work/$p-$lang.log
	: >"$log" # there before the process opens it: the wait below reads it
	if [[ $lang == c ]]; then
		"$examples_bin/order-$p" --url "$url" --db "$shop_db" >"$log" 2>&1 &
		printf '%s\n' "order-$p (pid $!), log $log"
	else
		node "$node_app/$p.js" --url "$url" --db "$shop_db" >"$log" 2>&1 &
		printf '%s\n' "node $node_app/$p.js (pid $!), log $log"
	fi
	participant_pids+=("$!")
	participant_logs+=("$log")
done
# Each says "serving at URL" once its tables exist and its worker runs.
for idx in "${!procs[@]}"; do
	for ((i = 0; ; i++)); do
		grep -q 'serving at' "${participant_logs[$idx]}" && break
		if ! kill -0 "${participant_pids[$idx]}" 2>/dev/null || [[ $i -ge 300 ]]; then
			show_log "${participant_logs[$idx]}"
			die "${labels[$idx]} exited at start-up or did not start within 30 s (log above)"
		fi
		sleep 0.1
	done
done

# ---- 5. register ------------------------------------------------------
say "registering the order saga: sagactl register $binpb"
"$sagactl_bin" --url "$url" register "$binpb" ||
	die "sagactl register $binpb failed"

say "what sagad now knows about it: sagactl describe shop.OrderSaga"
"$sagactl_bin" --url "$url" describe shop.OrderSaga || die "sagactl describe failed"

# ---- 6. two orders ----------------------------------------------------
# order-client prints the saga id first, then (with --wait) the outcome.
# Exit status: 0 completed, 2 compensated, 1 anything else.
run_order() {
	local label=$1 want=$2
	shift 2
	local out rc=0
	out=$("$examples_bin/order-client" --url "$url" --wait --timeout 60000 "$@") || rc=$?
	printf '%s\n' "$out"
	if [[ $rc -ne $want ]]; then
		show_log "$work/sagad.log"
		for log in "${participant_logs[@]}"; do show_log "$log"; done
		die "$label order: order-client exited $rc, expected $want"
	fi
	last_saga_id=$(head -n 1 <<<"$out")
}

# With --node or --mix: POST /orders to the HTTP order service; it answers
# the saga's outcome as JSON, 201 completed, 422 compensated.
post_order() {
	local label=$1 want=$2 id=$3 address=$4 out
	# shellcheck disable=SC2016 # JavaScript, not shell
	out=$(node -e '
		const [base, id, address] = process.argv.slice(1);
		const body = { orderId: id, sku: "SKU-1", quantity: 1, amountCents: 1999, card: "4242424242424242", address };
		console.log(`POST ${base}/orders ${JSON.stringify(body)}`);
		fetch(`${base}/orders`, { method: "POST", headers: { "content-type": "application/json", "idempotency-key": id }, body: JSON.stringify(body) })
			.then(async (r) => { console.log(`HTTP ${r.status}`); console.log(JSON.stringify(JSON.parse(await r.text()), null, 2)); })
			.catch((e) => { console.log(`HTTP error: ${e.message}`); process.exit(1); });
	' "$service_url" "$id" "$address") || true
	printf '%s\n' "$out"
	if ! grep -qx "HTTP $want" <<<"$out"; then
		show_log "$work/order-service.log"
		for log in "${participant_logs[@]}"; do show_log "$log"; done
		die "$label order: the order service did not answer HTTP $want"
	fi
	last_saga_id=$(sed -n 's/^  "sagaId": "\([^"]*\)",$/\1/p' <<<"$out")
	[[ -n "$last_saga_id" ]] || die "$label order: no sagaId in the answer"
}

if [[ $mode != c ]]; then
	say "starting the HTTP order service: node $node_app/order-service.js"
	: >"$work/order-service.log"
	node "$node_app/order-service.js" --url "$url" --listen 127.0.0.1:0 >"$work/order-service.log" 2>&1 &
	service_pid=$!
	for ((i = 0; i < 300; i++)); do
		service_url=$(sed -n 's/^order-service listening on \(http:[^ ]*\).*/\1/p' "$work/order-service.log")
		[[ -n "$service_url" ]] && break
		kill -0 "$service_pid" 2>/dev/null || break
		sleep 0.1
	done
	if [[ -z "$service_url" ]]; then
		show_log "$work/order-service.log"
		die "the order service did not start (log above)"
	fi
	printf '%s\n' "order-service (pid $service_pid) at $service_url, log $work/order-service.log"
fi

ok_order="demo-ok-$$"
fail_order="demo-nowhere-$$"

say "order $ok_order: should complete"
if [[ $mode == c ]]; then
	run_order "first" 0 --order-id "$ok_order" --address "1 Main St, Springfield"
else
	post_order "first" 201 "$ok_order" "1 Main St, Springfield"
fi
ok_id=$last_saga_id

say "order $fail_order: ships to \"nowhere\", so it should be compensated"
if [[ $mode == c ]]; then
	run_order "second" 2 --order-id "$fail_order" --address nowhere
else
	post_order "second" 422 "$fail_order" nowhere
fi
fail_id=$last_saga_id

# ---- 7. status and logs -----------------------------------------------
say "status of the completed saga: sagactl get $ok_id"
"$sagactl_bin" --url "$url" get "$ok_id" || die "sagactl get $ok_id failed"

say "status of the compensated saga: sagactl get $fail_id"
"$sagactl_bin" --url "$url" get "$fail_id" || die "sagactl get $fail_id failed"

say "its history: sagactl history $fail_id"
"$sagactl_bin" --url "$url" history "$fail_id" || die "sagactl history $fail_id failed"

json_order="demo-json-$$"
say "a third order started from the command line, its input written as JSON"
rc=0
"$sagactl_bin" --url "$url" start shop.OrderSaga --wait --wait-timeout 60000 \
	--input "{\"orderId\":\"$json_order\",\"sku\":\"SKU-1\",\"quantity\":1,\"amountCents\":\"999\",\"card\":\"4242\",\"address\":\"2 Elm St\"}" ||
	rc=$?
[[ $rc -eq 0 ]] || die "sagactl start --input JSON exited $rc"
say "found by its business key (the definition names order_id): sagactl list --business-key $json_order"
"$sagactl_bin" --url "$url" list --business-key "$json_order" --counts ||
	die "sagactl list --business-key failed"

say "the participants' own data: two orders kept one each of 100 in stock, the nowhere order's charge is refunded"
psql -X "$shop_db" -c "SELECT sku, qty FROM stock WHERE sku = 'SKU-1'" \
	-c "SELECT charge_id, amount_cents, refunded FROM charges ORDER BY charge_id" \
	-c "SELECT step, kind, outcome, nulled FROM saga_barrier ORDER BY created_at" ||
	die "cannot read the participants' tables"
stock=$(psql -X -At "$shop_db" -c "SELECT qty FROM stock WHERE sku = 'SKU-1'")
[[ "$stock" == 98 ]] || die "SKU-1 stock is $stock, expected 98 (two orders kept, one released)"

for idx in "${!procs[@]}"; do
	say "what ${labels[$idx]} did (${participant_logs[$idx]})"
	cat "${participant_logs[$idx]}"
done
if [[ -n "$service_pid" ]]; then
	say "what the order service did ($work/order-service.log)"
	cat "$work/order-service.log"
fi

# The refund must name the order's charge, which RefundPayment finds from
# the order id in the saga input.
refund_line=""
for ((i = 0; i < 20; i++)); do
	refund_line=$(grep -hF "refunded ch_$fail_order" "${participant_logs[@]}" || true)
	[[ -n "$refund_line" ]] && break
	sleep 0.1
done
[[ -n "$refund_line" ]] ||
	die "the payment participant did not log \"refunded ch_$fail_order\""

say "done"
printf '%s\n' "completed:   $ok_id"
printf '%s\n' "compensated: $fail_id"
printf '%s\n' "payment log: $refund_line"
finished=1
