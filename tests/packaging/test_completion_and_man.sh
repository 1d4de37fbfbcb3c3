#!/bin/bash
# Proves sagactl's shell completion and the man pages work from the built
# files:
#  - the bash completion offers the commands for a partial command word,
#    a command's own options (from its --help) for a partial option, the
#    states after --state, and the principal sub-commands;
#  - the zsh completion at least parses (where zsh is installed);
#  - both man pages render without a groff warning, and name every sagactl
#    command and every sagad setting.
# Environment (tests/packaging/meson.build): SOURCE_ROOT, BUILT_SAGACTL,
# BUILT_SAGAD, BUILT_MAN_DIR.
set -euo pipefail
: "${SOURCE_ROOT:?}" "${BUILT_SAGACTL:?}" "${BUILT_SAGAD:?}" "${BUILT_MAN_DIR:?}"

status=0
fail() {
	printf 'FAIL: %s\n' "$*"
	status=1
}
ok() { printf 'ok: %s\n' "$*"; }

bin=$(mktemp -d "${TMPDIR:-/tmp}/saga-compl.XXXXXX")
trap 'rm -rf "$bin"' EXIT
ln -s "$BUILT_SAGACTL" "$bin/sagactl"

# Completes the words given (the last one partial); prints the candidates.
complete_words() {
	PATH="$bin:$PATH" bash -c '
		source "$1"; shift
		COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1))
		_sagactl
		printf "%s\n" "${COMPREPLY[@]}"' _ "$SOURCE_ROOT/dist/completion/sagactl.bash" "$@"
}

check() {
	local want=$1
	shift
	local got
	got=$(complete_words "$@" | tr '\n' ' ')
	if [[ " $got " == *" $want "* ]]; then
		ok "completing '$*' offers $want"
	else
		fail "completing '$*' offers '$got', not $want"
	fi
}
check register sagactl re
check retry sagactl re
check principal sagactl pri
check --state sagactl list --st
check --business-key sagactl list --bus
check --reason sagactl cancel ID --rea
check --credential-file sagactl get --cred
check compensated sagactl list --state comp
check revoke sagactl principal re
# A global option's value is not taken for the command.
check --limit sagactl --url tcp://127.0.0.1:7700 list --lim

if command -v zsh >/dev/null; then
	if zsh -n "$SOURCE_ROOT/dist/completion/_sagactl"; then
		ok "the zsh completion parses"
	else
		fail "the zsh completion does not parse"
	fi
else
	echo "skip: zsh not installed; the zsh completion was not parsed"
fi

for page in sagactl.1 sagad.8; do
	f=$BUILT_MAN_DIR/$page
	if [[ ! -s $f ]]; then
		fail "$page was not built"
		continue
	fi
	warn=$(groff -man -Tutf8 -wall "$f" 2>&1 >/dev/null || true)
	if [[ -z $warn ]]; then ok "$page renders without a warning"; else fail "$page: $warn"; fi
done
text=$(groff -man -Tutf8 "$BUILT_MAN_DIR/sagactl.1" 2>/dev/null | sed 's/.\x08//g')
for cmd in $("$BUILT_SAGACTL" --help | sed -n 's/^  \([a-z][a-z]*\) .*/\1/p'); do
	grep -q "usage: sagactl $cmd" <<<"$text" || fail "sagactl.1 has no usage of '$cmd'"
done
ok "sagactl.1 documents every command of sagactl --help"
text=$(groff -man -Tutf8 "$BUILT_MAN_DIR/sagad.8" 2>/dev/null | sed 's/.\x08//g')
for s in $("$BUILT_SAGAD" print-config | sed -n 's/^#\([a-z][a-z0-9-]*\) = .*/\1/p'); do
	grep -q -- "--$s=" <<<"$text" || fail "sagad.8 does not document --$s"
done
ok "sagad.8 documents every setting of sagad print-config"
exit $status
