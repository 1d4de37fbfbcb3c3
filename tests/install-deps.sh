#!/bin/bash
# install-deps.sh: install what building and testing sagad needs on Debian 12.
#
# Idempotent: checks each package with dpkg-query and installs only what is
# missing (running `apt-get update` once first, and only then). Runs apt-get
# as root, through sudo when not root.
#
# The Debian postgresql package creates and starts a cluster on port 5432.
# sagad and the tests do not use it (they run their own private clusters),
# so it is left alone.
set -euo pipefail

packages=(
	build-essential
	meson
	ninja-build
	pkg-config
	libpq-dev
	libssl-dev
	openssl
	groff-base
	postgresql
	libnng-dev
	libprotobuf-c-dev
	protobuf-c-compiler
	protobuf-compiler
	libprotobuf-dev
	check
	python3
)

# Node.js and its headers (node_api.h), for the Node.js package in
# client-lib/node and its tests. A machine whose node comes from elsewhere
# (e.g. Node 20 with /usr/include/node/node_api.h) keeps it.
if ! command -v node >/dev/null 2>&1; then
	packages+=(nodejs)
fi
if [[ ! -f /usr/include/node/node_api.h ]]; then
	packages+=(libnode-dev)
fi
# npm packs and installs the package in its test, and fetches pg for the
# barrier's tests (Debian's npm goes with Debian's nodejs; a node from
# elsewhere brings its own npm).
if ! command -v npm >/dev/null 2>&1; then
	packages+=(npm)
fi

# ip (iproute2) for it-partition, which cuts PostgreSQL off with network
# namespaces, veth pairs and blackhole routes.
if ! command -v ip >/dev/null 2>&1; then
	packages+=(iproute2)
fi

# A headless browser for the web UI's browser tests (tests/ui), driven by
# playwright-core from npm (client-lib/../tests/ui/package-lock.json).
if ! command -v chromium >/dev/null 2>&1; then
	packages+=(chromium)
fi

say() { printf '%s\n' "install-deps: $*"; }
die() { printf '%s\n' "install-deps: error: $*" >&2; exit 1; }

command -v dpkg-query >/dev/null 2>&1 ||
	die "dpkg-query not found: this script supports Debian 12 (bookworm) only; install by hand: ${packages[*]}"

missing=()
for p in "${packages[@]}"; do
	status=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
	if [[ "$status" != "installed" ]]; then
		missing+=("$p")
	fi
done

# playwright-core for the browser tests (tests/ui/package-lock.json), from
# the npm registry, once: it drives Debian's chromium, it downloads no
# browser of its own.
npm_ui() {
	local ui
	ui="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/ui"
	if [[ ! -d "$ui/node_modules/playwright-core" ]] && command -v npm >/dev/null 2>&1; then
		say "installing playwright-core for the browser tests (npm ci in tests/ui)"
		(cd "$ui" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund) ||
			die "npm ci failed in $ui"
	fi
}

if [[ ${#missing[@]} -eq 0 ]]; then
	say "all ${#packages[@]} packages already installed"
	npm_ui
	exit 0
fi

if [[ $(id -u) -eq 0 ]]; then
	as_root=()
elif command -v sudo >/dev/null 2>&1; then
	as_root=(sudo)
else
	die "missing packages (${missing[*]}) and not root, and sudo is not installed; run this script as root"
fi

say "installing: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q ||
	die "apt-get update failed"
"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive \
	apt-get install -y -q --no-install-recommends "${missing[@]}" ||
	die "apt-get install failed for: ${missing[*]}"
npm_ui
say "done"
