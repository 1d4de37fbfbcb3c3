#!/bin/sh
# The addon's leak check: soak.js (100,000 steps through one Node.js Worker
# by default) in a node that has AddressSanitizer preloaded, the addon and
# libsaga built with -fsanitize=address (meson -Db_sanitize=address,...),
# LeakSanitizer on at exit. sagad runs uninstrumented (helpers.js keeps
# LD_PRELOAD from it).
#
#   client-lib/node/test/asan-leaks.sh BUILD_DIR [STEPS]
#
# node itself is not instrumented and keeps allocations at exit that LSan
# reports (V8's heap, its isolates, ICU, OpenSSL). A suppression by module
# (/usr/bin/node) would hide the addon's leaks too, since everything the
# addon does on the event loop is called from node's frames; so nothing is
# suppressed, and the reports are sorted here instead: one with a frame in
# saga_node.node or libsaga (a module or a source file of ours) is ours and
# fails the check (exit 1); the rest are node's own, counted. (Node 20
# itself leaves none: a run without the addon reports nothing.) The RSS every tenth of the way is soak.js's
# output.
# Not part of the suite: it takes minutes (docs/PERFORMANCE.md, "Node.js
# participants").
set -eu
here=$(cd "$(dirname "$0")" && pwd)
build=$(cd "${1:?usage: asan-leaks.sh BUILD_DIR [STEPS]}" && pwd)
steps=${2:-100000}
addon="$build/client-lib/node/saga_node.node"
[ -f "$addon" ] || { echo "no addon at $addon (ninja -C $build client-lib/node/saga_node.node)"; exit 2; }
asan=$(cc -print-file-name=libasan.so)
ubsan=$(cc -print-file-name=libubsan.so)
out=$(mktemp -d)
echo "logs in $out"
# fast_unwind_on_malloc=0: whole stacks through node's frames, so that the
# suppressions see them; exitcode=0: the report is judged here.
SAGA_NODE_ADDON="$addon" \
SAGAD_BIN="${SAGAD_BIN:-$build/server/sagad}" \
UV_THREADPOOL_SIZE=72 \
LD_PRELOAD="$asan $ubsan" \
ASAN_OPTIONS="detect_leaks=1:log_path=$out/asan:fast_unwind_on_malloc=0:malloc_context_size=12" \
LSAN_OPTIONS="exitcode=0" \
	node --expose-gc "$here/soak.js" "$steps" 64 >"$out/soak.txt" 2>&1 || soak_rc=$?
cat "$out/soak.txt"
[ "${soak_rc:-0}" = 0 ] || { echo "soak.js failed (exit ${soak_rc})"; exit 1; }
reports=$(ls "$out"/asan.* 2>/dev/null || true)
if [ -z "$reports" ]; then
	echo "LeakSanitizer: no report: nothing leaked"
	exit 0
fi
cat $reports > "$out/all.txt"
echo "---- LeakSanitizer: $(grep -c '^Direct leak' "$out/all.txt") direct and $(grep -c '^Indirect leak' "$out/all.txt") indirect leak reports in all"
grep -E "^SUMMARY" "$out/all.txt" || true
ours=$(awk '/^(Direct|Indirect) leak/ {blk=$0; keep=0; next}
	/^$/ { if (keep) print blk; blk=""; keep=0; next }
	{ blk = blk "\n" $0; if ($0 ~ /saga_node\.node|libsaga\.so|(client-lib|common|proto)\/[^ ]*\.c:/) keep=1 }
	END { if (keep) print blk }' "$out/all.txt")
if [ -n "$ours" ]; then
	echo "---- leaks with a frame in the addon or libsaga:"
	echo "$ours"
	exit 1
fi
echo "---- no leak report names the addon or libsaga"
grep -q "^ERROR: AddressSanitizer" "$out/all.txt" && { echo "AddressSanitizer found an error:"; cat "$out/all.txt"; exit 1; }
exit 0
