#!/bin/bash
# run.sh: build sagad, libsaga, sagactl and the examples, and run every test
# suite (unit and integration). The README's second command:
#
#   sudo ./tests/run.sh            # build-test/
#   sudo ./tests/run.sh --asan     # build-test-asan/, AddressSanitizer + UBSan
#   ./tests/run.sh -- --suite unit # anything after -- goes to `meson test`
#
# Installs missing Debian packages first (tests/install-deps.sh). Exits with
# the status of `meson test`, whose summary (Ok/Fail counts) is the last
# thing printed.
set -euo pipefail

usage() {
	cat <<EOF
usage: $0 [--asan] [-- MESON_TEST_ARGS...]
  --asan   build with -Db_sanitize=address,undefined in build-test-asan/
  --       pass the remaining arguments to meson test (e.g. --suite unit)
EOF
}

asan=0
test_args=()
while [[ $# -gt 0 ]]; do
	case "$1" in
	--asan) asan=1 ;;
	-h | --help) usage; exit 0 ;;
	--) shift; test_args=("$@"); break ;;
	*) printf '%s\n' "run.sh: unknown argument: $1" >&2; usage >&2; exit 2 ;;
	esac
	shift
done

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

printf '%s\n' "==> checking dependencies"
tests/install-deps.sh

builddir=build-test
setup_args=('-Dfatal_invariants=true')
if [[ $asan -eq 1 ]]; then
	builddir=build-test-asan
	setup_args+=('-Db_sanitize=address,undefined' '-Db_lundef=false')
	# meson 1.0 sets no sanitizer options for tests: make every report
	# fail the test that caused it. A caller's own settings win.
	export ASAN_OPTIONS="${ASAN_OPTIONS:-abort_on_error=1:halt_on_error=1:detect_leaks=1}"
	export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
fi

printf '%s\n' "==> configuring $builddir"
if [[ -f "$builddir/meson-private/coredata.dat" ]]; then
	meson setup --reconfigure "${setup_args[@]}" "$builddir"
elif [[ -e "$builddir" ]]; then
	# Left over from an interrupted setup: start again.
	meson setup --wipe "${setup_args[@]}" "$builddir"
else
	meson setup "${setup_args[@]}" "$builddir"
fi

printf '%s\n' "==> building"
meson compile -C "$builddir"

printf '%s\n' "==> testing (full log: $builddir/meson-logs/testlog.txt)"
# meson's summary (the Ok/Fail counts) must be the last thing printed:
# drop the "Full log written to ..." line meson adds after it (its path is
# printed above) and trailing blank lines. Lines pass through as they come.
summary_last() {
	local line blanks=0
	while IFS= read -r line || [[ -n "$line" ]]; do
		if [[ -z "$line" ]]; then
			blanks=$((blanks + 1))
			continue
		fi
		[[ "$line" == "Full log written to "* ]] && continue
		for ((; blanks > 0; blanks--)); do printf '\n'; done
		printf '%s\n' "$line"
	done
}
rc=0
PYTHONUNBUFFERED=1 meson test -C "$builddir" --print-errorlogs "${test_args[@]}" 2>&1 |
	summary_last || rc=$?
exit "$rc"
