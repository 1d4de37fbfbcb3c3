#!/bin/sh
# The Node.js package's tests (node --test), as the meson test 'node' runs
# them: against the in-tree addon (SAGA_NODE_ADDON) and sagad (SAGAD_BIN).
# Exits 77 (meson: skipped) with the reason when Node.js or its headers
# are missing; tests/install-deps.sh installs both.
# Usage: run.sh [ADDON]   (ADDON "" = not built)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
if ! command -v node >/dev/null 2>&1; then
	echo "SKIP: node is not installed, so the Node.js package is not tested (tests/install-deps.sh installs nodejs and libnode-dev)"
	exit 77
fi
addon=${1:-}
if [ -z "$addon" ] || [ ! -f "$addon" ]; then
	echo "SKIP: the Node.js addon was not built: node_api.h was not found in -Dnode_includedir when meson configured (install libnode-dev, then reconfigure)"
	exit 77
fi
export SAGA_NODE_ADDON="$addon"
# A sanitizer build (meson -Db_sanitize): node is not instrumented, so the
# runtimes are preloaded into it (and the Node participants it starts).
# Leak detection is off for node: V8 keeps allocations at exit that LSan
# would report; memory errors in the addon and libsaga still abort.
if [ -n "${SAGA_NODE_PRELOAD:-}" ]; then
	export LD_PRELOAD="$SAGA_NODE_PRELOAD${LD_PRELOAD:+ $LD_PRELOAD}"
	export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0"
fi
cd "$here/.."
exec node --test --test-concurrency=1 test/*.test.js
