#!/bin/bash
# Proves `meson install` gives a plain host the documented layout:
#  - `meson install --destdir` into a temp dir installs exactly the files of
#    tests/packaging/layout.txt (none missing, none extra) under the
#    configured directories;
#  - the installed config file is byte-identical to server/sagad.conf, and
#    is what the installed sagad documents (`sagad print-config`);
#  - the installed sagactl runs against the installed libsaga, and the
#    pkg-config file names the configured prefix; under a prefix other
#    than /usr the programs carry an rpath to the installed libsaga;
#  - the systemd unit starts the installed sagad with the installed config
#    file, as the `saga` user that the sysusers.d entry creates, reloads on
#    SIGHUP, and gives a stop longer than sagad's shutdown grace;
#  - the unit is Type=notify with a watchdog;
#  - `systemd-analyze verify` finds nothing wrong with the unit, and
#    `systemd-analyze security` scores it 2.0 or better (skipped, saying
#    so, where systemd-analyze is missing).
# Environment (from tests/packaging/meson.build): SOURCE_ROOT, BUILD_ROOT,
# MESON, PKG_{PREFIX,BINDIR,LIBDIR,INCLUDEDIR,SYSCONFDIR,DATADIR,UNITDIR,
# SYSUSERSDIR,VERSION}.
set -euo pipefail

: "${SOURCE_ROOT:?}" "${BUILD_ROOT:?}" "${MESON:?}" "${PKG_PREFIX:?}" "${PKG_BINDIR:?}"
: "${PKG_LIBDIR:?}" "${PKG_INCLUDEDIR:?}" "${PKG_SYSCONFDIR:?}" "${PKG_DATADIR:?}"
: "${PKG_VERSION:?}" "${PKG_UNITDIR?}" "${PKG_SYSUSERSDIR?}"
# shellcheck source=tests/packaging/lib.sh
. "$SOURCE_ROOT/tests/packaging/lib.sh"

status=0
fail() {
	printf 'FAIL: %s\n' "$1"
	shift
	[[ $# -gt 0 ]] && printf '  %s\n' "$@"
	status=1
}
ok() { printf 'ok: %s\n' "$*"; }

work=$(mktemp -d "${TMPDIR:-/tmp}/saga-install.XXXXXX")
trap 'rm -rf "$work"' EXIT
dest=$work/dest

"$MESON" install -C "$BUILD_ROOT" --no-rebuild --destdir "$dest" --quiet >"$work/install.log" 2>&1 || {
	cat "$work/install.log"
	fail "meson install --destdir failed"
	exit 1
}

# --- every file in its place, and nothing else -------------------------
expected=$(layout_expand "$SOURCE_ROOT/tests/packaging/layout.txt" \
	bindir="$PKG_BINDIR" libdir="$PKG_LIBDIR" includedir="$PKG_INCLUDEDIR" \
	sysconfdir="$PKG_SYSCONFDIR" datadir="$PKG_DATADIR" unitdir="$PKG_UNITDIR" \
	sysusersdir="$PKG_SYSUSERSDIR" version="$PKG_VERSION" | LC_ALL=C sort)
installed=$(cd "$dest" && find . \( -type f -o -type l \) | sed 's/^\.//' | LC_ALL=C sort)
missing=$(LC_ALL=C comm -23 <(printf '%s\n' "$expected") <(printf '%s\n' "$installed"))
extra=$(LC_ALL=C comm -13 <(printf '%s\n' "$expected") <(printf '%s\n' "$installed"))
if [[ -n "$missing" ]]; then
	# shellcheck disable=SC2086 # one path per word
	fail "documented files that meson install did not install:" $missing
fi
if [[ -n "$extra" ]]; then
	# shellcheck disable=SC2086
	fail "installed files not in tests/packaging/layout.txt (document them there and in docs/OPERATIONS.md):" $extra
fi
[[ -z "$missing$extra" ]] && ok "meson install installs the $(wc -l <<<"$expected") documented files, and only those"

# --- the config file ----------------------------------------------------
conf=$PKG_SYSCONFDIR/sagad/sagad.conf
if cmp -s "$SOURCE_ROOT/server/sagad.conf" "$dest$conf"; then
	ok "$conf is byte-identical to server/sagad.conf"
else
	fail "$conf differs from server/sagad.conf"
fi
sagad=$dest$PKG_BINDIR/sagad
if "$sagad" print-config | cmp -s - "$dest$conf"; then
	ok "the installed sagad documents exactly the installed config file (print-config)"
else
	fail "installed sagad print-config differs from the installed $conf"
fi

# --- the library, sagactl and pkg-config ---------------------------------
if out=$(LD_LIBRARY_PATH=$dest$PKG_LIBDIR "$dest$PKG_BINDIR/sagactl" --version 2>&1) &&
	[[ "$out" == *"$PKG_VERSION"* ]]; then
	ok "the installed sagactl runs on the installed libsaga: $out"
else
	fail "the installed sagactl does not run on the installed libsaga" "$out"
fi
# Under any prefix but /usr the installed programs carry an rpath to the
# installed libsaga, so a custom --prefix needs no ldconfig.
if [[ "$PKG_PREFIX" != /usr ]] && command -v readelf >/dev/null; then
	for exe in sagactl order-client; do
		rp=$(readelf -d "$dest$PKG_BINDIR/$exe" | grep -E 'RUNPATH|RPATH' || true)
		if [[ "$rp" == *"[$PKG_LIBDIR]"* ]]; then
			ok "the installed $exe finds libsaga in $PKG_LIBDIR by itself"
		else
			fail "the installed $exe has no rpath to $PKG_LIBDIR" "$rp"
		fi
	done
fi
# The headers are under include/saga/: a program compiles with pkg-config's
# flags either as #include <saga.h> or as #include <saga/saga.h>.
if command -v pkg-config >/dev/null && command -v cc >/dev/null; then
	flags=$(PKG_CONFIG_PATH=$dest$PKG_LIBDIR/pkgconfig PKG_CONFIG_SYSROOT_DIR=$dest \
		pkg-config --cflags --libs libsaga)
	# A libsaga built with sanitizers (tests/run.sh --asan) needs them at
	# link time too.
	# (grep reads all of it: grep -q would end nm early, and pipefail would
	# count its SIGPIPE as a failure.)
	if nm -D "$dest$PKG_LIBDIR/libsaga.so" 2>/dev/null | grep __asan_ >/dev/null; then
		flags="$flags -fsanitize=address,undefined"
	fi
	for inc in '<saga.h>' '<saga/saga.h>'; do
		printf '#include %s\nint main(void) { return saga_version() == 0; }\n' \
			"$inc" >"$work/use.c"
		# shellcheck disable=SC2086 # the flags are words
		if cc -std=c99 -I"$dest$PKG_INCLUDEDIR" "$work/use.c" $flags -o "$work/use" 2>"$work/cc.log" &&
			LD_LIBRARY_PATH=$dest$PKG_LIBDIR "$work/use"; then
			ok "a program with #include $inc builds with pkg-config's flags and runs"
		else
			fail "#include $inc does not build with pkg-config's flags ($flags)" "$(cat "$work/cc.log")"
		fi
	done
fi
if command -v pkg-config >/dev/null; then
	pc_prefix=$(PKG_CONFIG_PATH=$dest$PKG_LIBDIR/pkgconfig pkg-config --variable=prefix libsaga)
	if [[ "$pc_prefix" == "$PKG_PREFIX" ]]; then
		ok "libsaga.pc says prefix=$pc_prefix"
	else
		fail "libsaga.pc says prefix=$pc_prefix, configured $PKG_PREFIX"
	fi
fi

# --- the systemd unit ---------------------------------------------------
if [[ -z "$PKG_UNITDIR" ]]; then
	ok "built with -Dsystemd_unit=false: no unit expected, none installed"
	exit $status
fi
unit=$dest$PKG_UNITDIR/sagad.service
unit_line() { sed -n "s/^$1=//p" "$unit"; }
want_exec="$PKG_BINDIR/sagad --config $conf"
if [[ "$(unit_line ExecStart)" == "$want_exec" ]]; then
	ok "ExecStart=$want_exec"
else
	fail "the unit's ExecStart is '$(unit_line ExecStart)', want '$want_exec'"
fi
for f in "$PKG_BINDIR/sagad" "$conf"; do
	[[ -e "$dest$f" ]] || fail "the unit names $f, which is not installed"
done
[[ "$(unit_line User)" == saga ]] || fail "the unit runs as '$(unit_line User)', not saga"
grep -Eq '^u[[:space:]]+saga[[:space:]]' "$dest$PKG_SYSUSERSDIR/sagad.conf" ||
	fail "sysusers.d/sagad.conf does not create the user saga"
# shellcheck disable=SC2016 # a literal $MAINPID
[[ "$(unit_line ExecReload)" == '/bin/kill -HUP $MAINPID' ]] ||
	fail "the unit's ExecReload is not a SIGHUP: '$(unit_line ExecReload)'"
[[ "$(unit_line StateDirectory)" == sagad ]] || fail "the unit has no StateDirectory=sagad"
[[ "$(unit_line Type)" == notify && -n "$(unit_line WatchdogSec)" ]] ||
	fail "the unit is not Type=notify with a WatchdogSec"
grace_ms=$("$sagad" --help | sed -n '/--shutdown-grace-ms/{n;s/.*default "\([0-9]*\)".*/\1/p}')
stop=$(unit_line TimeoutStopSec)
stop_s=${stop%s}
if [[ "$grace_ms" =~ ^[0-9]+$ && "$stop_s" =~ ^[0-9]+$ ]] && ((stop_s * 1000 > grace_ms + 5000)); then
	ok "TimeoutStopSec=$stop leaves more than 5 s beyond the default shutdown grace (${grace_ms} ms)"
else
	fail "TimeoutStopSec='$stop' is not well above the shutdown grace ('$grace_ms' ms)"
fi
[[ $status -eq 0 ]] && ok "the unit runs the installed sagad with the installed config as saga"

if command -v systemd-analyze >/dev/null; then
	# verify checks that ExecStart's program exists: point it at the copy
	# in the destdir (nothing else changes). Any message is a failure:
	# verify exits 0 on unknown keys and bad values.
	mkdir "$work/unit"
	sed "s|^ExecStart=$PKG_BINDIR/sagad |ExecStart=$dest$PKG_BINDIR/sagad |" "$unit" \
		>"$work/unit/sagad.service"
	if out=$(systemd-analyze verify "$work/unit/sagad.service" 2>&1) && [[ -z "$out" ]]; then
		ok "systemd-analyze verify finds nothing to say about sagad.service"
	else
		fail "systemd-analyze verify sagad.service:" "$out"
	fi
	# Hardened: systemd's own exposure score, 2.0 or better ("OK").
	score=$(systemd-analyze security --offline=yes "$work/unit/sagad.service" 2>/dev/null |
		sed -n 's/.*Overall exposure level for sagad.service: \([0-9.]*\).*/\1/p')
	if [[ -n "$score" ]] && awk -v s="$score" 'BEGIN { exit !(s <= 2.0) }'; then
		ok "systemd-analyze security scores sagad.service $score (2.0 or better)"
	else
		fail "systemd-analyze security scores sagad.service '${score:-?}', want 2.0 or better"
	fi
else
	echo "skip: systemd-analyze not found; the unit was not verified by systemd"
fi
exit $status
