#!/bin/bash
# run.sh: fuzz every network decoder with libFuzzer under ASan and UBSan.
#
#   tests/fuzz/run.sh [SECONDS_PER_TARGET] [TARGET...]     (default 60; all targets)
#   tests/fuzz/run.sh --merge [SECONDS] [TARGET...]         also fold new inputs
#                                                          into the committed corpus
#
# Builds build-fuzz/ with clang (-Dfuzz=true, b_sanitize=address,undefined),
# then runs each target from its committed corpus (tests/fuzz/corpus/NAME)
# plus new inputs in build-fuzz/corpus-NAME, for SECONDS each. A crash, a
# leak, running out of memory or a timeout leaves the input as
# build-fuzz/{crash,leak,oom,timeout}-* and exits non-zero. Targets:
# request (sagad's RPC decoder), response (libsaga's reply decoder: work
# batches, acks, ...), defn (the saga definition parser), pbjson (sagactl's
# protobuf <-> JSON transcoder), credential (sagad's credential check with
# auth on).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"
merge=0
if [[ ${1:-} == --merge ]]; then merge=1; shift; fi
secs=${1:-60}
[[ $# -gt 0 ]] && shift
targets=("$@")
[[ ${#targets[@]} -gt 0 ]] || targets=(request response defn pbjson credential)

command -v clang >/dev/null || { echo "run.sh: clang is needed (apt-get install clang libclang-rt-14-dev)" >&2; exit 2; }
if [[ ! -f build-fuzz/meson-private/coredata.dat ]]; then
	CC=clang meson setup build-fuzz -Dfuzz=true -Db_sanitize=address,undefined \
		-Db_lundef=false -Dbuildtype=debugoptimized >/dev/null
fi
ninja -C build-fuzz $(printf 'tests/fuzz/fuzz-%s ' "${targets[@]}") >/dev/null
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
for t in "${targets[@]}"; do
	mkdir -p "build-fuzz/corpus-$t"
	echo "== fuzz-$t: ${secs}s"
	build-fuzz/tests/fuzz/fuzz-"$t" -max_total_time="$secs" -max_len=65536 -rss_limit_mb=2048 \
		-artifact_prefix=build-fuzz/ -print_final_stats=1 \
		"build-fuzz/corpus-$t" "tests/fuzz/corpus/$t" 2>&1 |
		grep -E '^(stat::number_of_executed_units|stat::peak_rss_mb|INFO: -max_total_time|==[0-9]+==ERROR|SUMMARY)|Done ' || true
	if ls build-fuzz/{crash,leak,oom,timeout}-* >/dev/null 2>&1; then
		echo "run.sh: fuzz-$t failed; inputs: $(ls build-fuzz/{crash,leak,oom,timeout}-* 2>/dev/null)" >&2
		exit 1
	fi
	if [[ $merge -eq 1 ]]; then
		build-fuzz/tests/fuzz/fuzz-"$t" -merge=1 "tests/fuzz/corpus/$t" "build-fuzz/corpus-$t" 2>&1 | tail -1
	fi
done
echo "run.sh: no crash in ${targets[*]}"
