#!/bin/sh
# Runs one test of the Node.js order example (examples/order-node) with
# node --test: a real sagad with its embedded PostgreSQL, the example's
# participants as processes (Node.js, and C for the mixed replicas), its
# HTTP order service. Skipped (exit 77) only when node is missing; when the
# addon is not built or npm cannot install the example's packages, it
# fails, saying why.
#
# The example's packages (pg, protobufjs, and libsaga and saga-barrier
# linked by their file: paths) are installed from its package-lock.json by
# `npm ci` into a copy in the build directory (NODE_DEPS_DIR), so the
# source tree stays clean; examples/order-node/node_modules is used instead
# if a developer installed it there.
# Usage: run_order_example_tests.sh TEST_FILE
set -eu
: "${SOURCE_ROOT:?}" "${NODE_DEPS_DIR:?}"
addon=${SAGA_NODE_ADDON:-}
test_file=$1
app=$SOURCE_ROOT/examples/order-node

if ! command -v node >/dev/null 2>&1; then
	echo "SKIP: node is not installed (tests/install-deps.sh installs nodejs); the Node.js order example is not tested"
	exit 77
fi
if [ -z "$addon" ] || [ ! -f "$addon" ]; then
	echo "FAIL: the Node.js addon is not built${addon:+ ($addon)}: node_api.h was not found when meson configured; install libnode-dev (tests/install-deps.sh), then meson setup --reconfigure"
	exit 1
fi

if [ -d "$app/node_modules/pg" ] && [ -d "$app/node_modules/protobufjs" ]; then
	NODE_PATH=$app/node_modules
else
	# The copy keeps the example's relative file: paths: its package.json
	# sits at examples/order-node under a folder whose client-lib links to
	# the source tree's.
	copy=$NODE_DEPS_DIR/examples/order-node
	if ! cmp -s "$app/package-lock.json" "$copy/package-lock.json" ||
		[ ! -d "$copy/node_modules/protobufjs" ]; then
		if ! command -v npm >/dev/null 2>&1; then
			echo "FAIL: the example's packages are not installed and npm is missing (tests/install-deps.sh installs it)"
			exit 1
		fi
		rm -rf "$NODE_DEPS_DIR"
		mkdir -p "$copy"
		ln -s "$SOURCE_ROOT/client-lib" "$NODE_DEPS_DIR/client-lib"
		cp "$app/package.json" "$app/package-lock.json" "$copy/"
		echo "installing the example's packages (package-lock.json) into $copy"
		# --ignore-scripts: libsaga's addon is the build's (SAGA_NODE_ADDON),
		# not one node-gyp would build against an installed libsaga.
		if ! (cd "$copy" && npm ci --ignore-scripts --prefer-offline --no-audit --no-fund); then
			echo "FAIL: npm ci could not install the example's packages into $copy (registry unreachable and not in npm's cache?)"
			exit 1
		fi
	fi
	NODE_PATH=$copy/node_modules
fi
export NODE_PATH
# A sanitizer build: node is not instrumented, the addon and libsaga are;
# the runtimes are preloaded into node (not into sagad or the C
# participants, which the test starts without them).
if [ -n "${SAGA_NODE_PRELOAD:-}" ]; then
	export LD_PRELOAD="$SAGA_NODE_PRELOAD${LD_PRELOAD:+ $LD_PRELOAD}"
	export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0"
fi
exec node --test --test-concurrency=1 "$SOURCE_ROOT/tests/node/$test_file"
