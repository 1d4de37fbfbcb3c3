#!/bin/sh
# Proves the user documents are whole: README.md has its quick start with
# the two commands (.ci/run relies on the second), and every document in
# docs/ that the README and the issues point to exists and is not empty.
# Usage: check_docs.sh REPO_ROOT
set -eu
root=$1
status=0
fail() { echo "FAIL: $*"; status=1; }
readme=$root/README.md
[ -s "$readme" ] || fail "README.md is missing or empty"
grep -q '^## Quick start' "$readme" || fail "README.md has no '## Quick start' section"
grep -q '^sudo ./examples/demo.sh$' "$readme" || fail "README.md quick start lacks 'sudo ./examples/demo.sh'"
grep -q '^sudo ./tests/run.sh$' "$readme" || fail "README.md quick start lacks 'sudo ./tests/run.sh'"
for d in ARCHITECTURE.md PERFORMANCE.md GUARANTEES.md OPERATIONS.md SCALING.md SECURITY.md PROTOCOL.md TRACING.md HTTP-API.md; do
	[ -s "$root/docs/$d" ] || fail "docs/$d is missing or empty"
done
[ $status -eq 0 ] && echo "ok: README.md and docs/ are in place"
exit $status
