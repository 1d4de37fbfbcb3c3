#!/bin/sh
# Proves that libsaga exports exactly the saga_* functions declared in
# its public headers, each at version LIBSAGA_0, and that libsaga.map lists
# them in alphabetical order.
# Usage: check_exports.sh LIBSAGA.so libsaga.map saga.h [other headers...]
set -eu
lib=$1 map=$2
shift 2
NM=${NM:-nm}
status=0

fail() {
	echo "FAIL: $1"
	shift
	[ $# -gt 0 ] && printf '  %s\n' "$@"
	status=1
}

# Defined dynamic symbols, minus the version node itself (type A).
syms=$($NM -D --defined-only "$lib" | awk '$2 != "A" { print $3 }')
exported=$(printf '%s\n' "$syms" | sed 's/@.*//' | sort)

leaks=$(printf '%s\n' "$exported" | grep -v '^saga_' || true)
[ -z "$leaks" ] || fail "symbols outside the saga_ namespace are exported:" $leaks

unversioned=$(printf '%s\n' "$syms" | grep -v '@@LIBSAGA_0$' || true)
[ -z "$unversioned" ] || fail "symbols not at version LIBSAGA_0:" $unversioned

mapped=$(sed -n 's/^[[:space:]]*\(saga_[a-z0-9_]*\);.*/\1/p' "$map")
[ "$(printf '%s\n' "$mapped" | LC_ALL=C sort)" = "$mapped" ] ||
	fail "libsaga.map is not in alphabetical order"

declared=$(cat "$@" | grep -o 'SAGA_API[^(]*(' | grep -o 'saga_[a-z0-9_]*($' | tr -d '(' | sort)
if [ "$exported" != "$declared" ]; then
	fail "exports differ from the functions declared in the headers (< declared, > exported):" \
	    $(printf '%s\n' "$declared" > "${TMPDIR:-/tmp}/decl.$$"
	      printf '%s\n' "$exported" | diff "${TMPDIR:-/tmp}/decl.$$" - | grep '^[<>]' | tr ' ' '_' || true)
	rm -f "${TMPDIR:-/tmp}/decl.$$"
fi

[ $status -eq 0 ] && echo "ok: $(printf '%s\n' "$exported" | wc -l) saga_* symbols at LIBSAGA_0"
exit $status
