#!/bin/sh
# Runs the JavaScript barrier's tests (client-lib/node/barrier/test) with
# node --test against a PostgreSQL they start, next to the C replica
# BARRIER_REPLICA. Skipped (exit 77) only when node is missing. `pg` comes
# from client-lib/node/barrier/node_modules if it is there, else `npm ci`
# installs the locked version into NODE_DEPS_DIR (the build directory).
set -eu
: "${SOURCE_ROOT:?}" "${NODE_DEPS_DIR:?}" "${BARRIER_REPLICA:?}"
pkg=$SOURCE_ROOT/client-lib/node/barrier

if ! command -v node >/dev/null 2>&1; then
	echo "SKIP: node is not installed (apt-get install nodejs); the JavaScript barrier is not tested"
	exit 77
fi
major=$(node -p 'process.versions.node.split(".")[0]')
if [ "$major" -lt 18 ]; then
	echo "FAIL: node $(node --version) is too old: the barrier and node --test need 18 or later"
	exit 1
fi

if [ -d "$pkg/node_modules/pg" ]; then
	NODE_PATH=$pkg/node_modules
else
	if ! cmp -s "$pkg/package-lock.json" "$NODE_DEPS_DIR/package-lock.json" ||
		[ ! -d "$NODE_DEPS_DIR/node_modules/pg" ]; then
		if ! command -v npm >/dev/null 2>&1; then
			echo "FAIL: pg is not installed and npm is missing: run 'npm ci' in $pkg or install npm"
			exit 1
		fi
		rm -rf "$NODE_DEPS_DIR"
		mkdir -p "$NODE_DEPS_DIR"
		cp "$pkg/package.json" "$pkg/package-lock.json" "$NODE_DEPS_DIR/"
		echo "installing pg (package-lock.json) into $NODE_DEPS_DIR"
		if ! (cd "$NODE_DEPS_DIR" && npm ci --prefer-offline --no-audit --no-fund); then
			echo "FAIL: npm ci could not install pg into $NODE_DEPS_DIR (registry unreachable and not in npm's cache?)"
			exit 1
		fi
	fi
	NODE_PATH=$NODE_DEPS_DIR/node_modules
fi
export NODE_PATH BARRIER_REPLICA
exec node --test "$pkg/test/barrier.test.js"
