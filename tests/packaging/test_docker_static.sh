#!/bin/bash
# Proves, without Docker, that docker/ is consistent with the tree and with
# sagad:
#  - compose.yaml stays in the YAML subset the tests read (and, where
#    PyYAML is installed, reads the same as PyYAML reads it);
#  - every file compose.yaml and the Dockerfiles name exists: build
#    contexts, Dockerfiles, bind-mounted files, COPY sources from the
#    context (and .dockerignore does not hide them), and the files COPY'd
#    out of the builder's `meson install` are ones tests/packaging/layout.txt
#    says it installs, at the prefix and libdir the builder configures;
#  - ENTRYPOINT and every health check run a script the image copies in,
#    executable; a participant's health check names its own role;
#  - every environment variable compose.yaml or an image sets is one the
#    program reads: a real sagad setting (`sagad --help`) for the sagad
#    image, or read by the image's entry point or health check script;
#  - the listen ports are EXPOSEd, and every `service_healthy` dependency
#    has a health check.
# Environment: SOURCE_ROOT, BUILT_SAGAD, PKG_VERSION (tests/packaging/meson.build).
set -euo pipefail

: "${SOURCE_ROOT:?}" "${BUILT_SAGAD:?}" "${PKG_VERSION:?}"
# shellcheck source=tests/packaging/lib.sh
. "$SOURCE_ROOT/tests/packaging/lib.sh"

docker_dir=$SOURCE_ROOT/docker
compose=$docker_dir/compose.yaml
status=0
fail() {
	printf 'FAIL: %s\n' "$*"
	status=1
}
ok() { printf 'ok: %s\n' "$*"; }

# --- compose.yaml is readable --------------------------------------------
flat=$(yaml_flat "$compose") || {
	fail "compose.yaml is outside the YAML subset tests/packaging/lib.sh reads"
	exit 1
}
if python3 -c 'import yaml' 2>/dev/null; then
	from_pyyaml=$(python3 - "$compose" <<'EOF'
import sys, yaml

def flat(v, path):
    if isinstance(v, dict):
        for k, x in v.items():
            flat(x, f"{path}.{k}" if path else str(k))
    elif isinstance(v, list):
        for x in v:
            print(f"{path}[]={x}")
    elif v is not None:
        print(f"{path}={v}")

with open(sys.argv[1]) as f:
    flat(yaml.safe_load(f), "")
EOF
	)
	if [[ "$(LC_ALL=C sort <<<"$flat")" == "$(LC_ALL=C sort <<<"$from_pyyaml")" ]]; then
		ok "compose.yaml reads the same with PyYAML as with the tests' reader"
	else
		fail "compose.yaml reads differently with PyYAML:"
		diff <(LC_ALL=C sort <<<"$flat") <(LC_ALL=C sort <<<"$from_pyyaml") || true
	fi
else
	echo "skip: PyYAML not installed; compose.yaml checked with the tests' reader only"
fi

services=$(compose_services "$compose")
settings=$("$BUILT_SAGAD" --help | grep -oE 'env SAGAD_[A-Z0-9_]+' | awk '{ print $2 }' | sort -u)
[[ -n "$settings" ]] || fail "no 'env SAGAD_*' in sagad --help"

# Names a script reads: $NAME, ${NAME...}, and `require NAME`.
reads() {
	{
		grep -oE '\$\{?[A-Za-z_][A-Za-z0-9_]*' "$1" | sed 's/^\$[{]*//'
		grep -oE '^[[:space:]]*require [A-Z_]+' "$1" | awk '{ print $2 }'
	} | sort -u
}

# is_ignored PATH: .dockerignore (at the context root) excludes PATH.
is_ignored() {
	local pat p=$1
	[[ -f "$SOURCE_ROOT/.dockerignore" ]] || return 1
	while IFS= read -r pat; do
		[[ -z "$pat" || "$pat" == \#* || "$pat" == !* ]] && continue
		pat=${pat%/}
		pat=${pat#\*\*/}
		# shellcheck disable=SC2053 # pat is a pattern
		[[ "$p" == $pat || "$p" == $pat/* || "${p##*/}" == $pat ]] && return 0
	done <"$SOURCE_ROOT/.dockerignore"
	return 1
}

# --- files named by compose.yaml ------------------------------------------
dockerfiles=()
for svc in $services; do
	ctx=$(compose_get "$compose" "services.$svc.build.context")
	df=$(compose_get "$compose" "services.$svc.build.dockerfile")
	if [[ -n "$ctx" ]]; then
		ctx_abs=$(cd "$docker_dir" && cd "$ctx" 2>/dev/null && pwd) || {
			fail "$svc: build context $ctx does not exist"
			continue
		}
		[[ "$ctx_abs" == "$(cd "$SOURCE_ROOT" && pwd)" ]] ||
			fail "$svc: build context $ctx is not the repository root"
		if [[ -f "$ctx_abs/$df" ]]; then
			[[ " ${dockerfiles[*]} " == *" $df "* ]] || dockerfiles+=("$df")
		else
			fail "$svc: dockerfile $df does not exist in $ctx"
		fi
	fi
	while IFS= read -r vol; do
		src=${vol%%:*}
		[[ "$src" == ./* || "$src" == ../* ]] || continue
		if [[ -e "$docker_dir/$src" ]]; then
			ok "$svc: mounts $src, which exists"
		else
			fail "$svc: mounts $src, which does not exist in docker/"
		fi
	done < <(compose_get "$compose" "services.$svc.volumes")
	while IFS= read -r dep; do
		[[ -n "$dep" ]] || continue
		grep -qx "$dep" <<<"$services" || fail "$svc depends on $dep, which is no service"
	done < <(sed -n "s/^services\.$svc\.depends_on\.\([^.]*\)\.condition=.*/\1/p" <<<"$flat")
done
[[ ${#dockerfiles[@]} -gt 0 ]] || fail "compose.yaml builds no image"

# --- each Dockerfile -------------------------------------------------------
declare -A entry_of health_of
for df in "${dockerfiles[@]}"; do
	path=$SOURCE_ROOT/$df
	stages=$(sed -n 's/^FROM .* AS \([A-Za-z0-9_-]*\)$/\1/p' "$path")
	# The builder's install: prefix and libdir from its `meson setup`.
	prefix=$(grep -oE 'meson setup .*--prefix=[^ ]+' "$path" | sed 's/.*--prefix=//' | head -n 1)
	libdir=$(grep -oE 'meson setup .*--libdir=[^ ]+' "$path" | sed 's/.*--libdir=//' | head -n 1)
	[[ -n "$prefix" && -n "$libdir" ]] || fail "$df: no meson setup --prefix=... --libdir=..."
	sysconfdir=$prefix/etc
	[[ "$prefix" == /usr ]] && sysconfdir=/etc
	installed=$(layout_expand "$SOURCE_ROOT/tests/packaging/layout.txt" \
		bindir="$prefix/bin" libdir="$prefix/$libdir" includedir="$prefix/include" \
		sysconfdir="$sysconfdir" datadir="$prefix/share" unitdir="$prefix/lib/systemd/system" \
		sysusersdir="$prefix/lib/sysusers.d" version="$PKG_VERSION")
	# OCI annotations: a title, and the version of this source tree.
	label_version=$(sed -n 's/.*org\.opencontainers\.image\.version="\([^"]*\)".*/\1/p' "$path")
	[[ "$label_version" == "$PKG_VERSION" ]] ||
		fail "$df: org.opencontainers.image.version is '$label_version', not $PKG_VERSION"
	grep -q 'org\.opencontainers\.image\.title=' "$path" || fail "$df: no org.opencontainers.image.title"
	staging=$(grep -oE 'meson install .*--destdir +[^ ]+' "$path" | awk '{ print $NF }' | head -n 1)
	[[ -n "$staging" ]] || fail "$df: no meson install --destdir"

	while IFS='|' read -r from src _; do
		if [[ -n "$from" ]]; then
			grep -qx "$from" <<<"$stages" || fail "$df: COPY --from=$from: no such stage"
			rel=${src#"$staging"}
			[[ "$rel" != "$src" ]] || {
				fail "$df: COPY --from=$from $src is not under the install destdir $staging"
				continue
			}
			found=0
			while IFS= read -r f; do
				# shellcheck disable=SC2053 # rel may be a glob
				[[ "$f" == $rel ]] && found=1
			done <<<"$installed"
			if [[ $found -eq 1 ]]; then
				ok "$df: copies $rel, which meson install installs"
			else
				fail "$df: copies $rel, which meson install (prefix $prefix, libdir $libdir) does not install (tests/packaging/layout.txt)"
			fi
		else
			[[ "$src" == . ]] && continue
			# shellcheck disable=SC2086 # src may be a glob
			if ! compgen -G "$SOURCE_ROOT/$src" >/dev/null; then
				fail "$df: COPY $src: no such file in the repository"
			elif is_ignored "$src"; then
				fail "$df: COPY $src: excluded from the build context by .dockerignore"
			else
				ok "$df: copies $src from the repository"
			fi
		fi
	done < <(dockerfile_copies "$path")

	# ENTRYPOINT and HEALTHCHECK run scripts this image copies in.
	entry=$(dockerfile_exec "$path" ENTRYPOINT | head -n 1)
	script=$(copy_source "$path" "$entry")
	if [[ -n "$script" && -x "$SOURCE_ROOT/$script" ]]; then
		ok "$df: ENTRYPOINT $entry is $script"
		entry_of[$df]=$SOURCE_ROOT/$script
	else
		fail "$df: ENTRYPOINT $entry is not an executable script COPY'd from the repository"
	fi
	hc=$(dockerfile_exec "$path" HEALTHCHECK | head -n 1)
	if [[ -n "$hc" ]]; then
		s=$(copy_source "$path" "$hc")
		[[ -n "$s" && -x "$SOURCE_ROOT/$s" ]] || fail "$df: HEALTHCHECK runs $hc, not a script it copies"
		health_of[$df]=$SOURCE_ROOT/$s
	fi
	# Every copied script's health script, for the env check below.
	hs=$(copy_source "$path" /usr/local/bin/saga-healthcheck)
	[[ -n "$hs" ]] && health_of[$df]=$SOURCE_ROOT/$hs

	# Listen ports are exposed.
	exposed=" $(sed -n 's/^EXPOSE //p' "$path" | tr '\n' ' ') "
	while IFS= read -r line; do
		case "${line%%=*}" in
		SAGAD_LISTEN | SAGAD_HTTP_LISTEN)
			port=$(grep -oE ':[0-9]+' <<<"${line#*=}" | tail -n 1 | tr -d :)
			[[ "$exposed" == *" $port "* ]] ||
				fail "$df: ${line%%=*} listens on $port, which it does not EXPOSE"
			;;
		esac
	done < <(dockerfile_env "$path")
done

# --- services: health checks, environment, ports ------------------------
for svc in $services; do
	df=$(compose_get "$compose" "services.$svc.build.dockerfile")
	[[ -n "$df" && -n "${entry_of[$df]:-}" ]] || continue
	path=$SOURCE_ROOT/$df
	mapfile -t test < <(compose_get "$compose" "services.$svc.healthcheck.test")
	if [[ ${#test[@]} -gt 0 ]]; then
		s=$(copy_source "$path" "${test[1]:-}")
		if [[ "${test[0]}" != CMD || -z "$s" || ! -x "$SOURCE_ROOT/$s" ]]; then
			fail "$svc: health check ${test[*]} does not run a script its image copies in"
		fi
		if [[ "${test[2]:-}" == participant ]]; then
			role=$(compose_get "$compose" "services.$svc.command" | head -n 1)
			[[ "${test[3]:-}" == "$role" ]] ||
				fail "$svc: its health check asks for participant '${test[3]:-}', its role is '$role'"
		fi
	fi

	allowed=$( {
		reads "${entry_of[$df]}"
		if [[ -n "${health_of[$df]:-}" ]]; then reads "${health_of[$df]}"; fi
		# An image whose entry point runs sagad: sagad reads its settings.
		if grep -q SAGAD_BIN "${entry_of[$df]}"; then printf '%s\n' "$settings"; fi
	} | sort -u)
	n=0
	while IFS= read -r line; do
		[[ -n "$line" ]] || continue
		name=${line%%=*}
		n=$((n + 1))
		if [[ "$name" == SAGAD_* ]] && ! grep -qx "$name" <<<"$settings"; then
			fail "$svc sets $name, which is not a sagad setting (sagad --help)"
		elif ! grep -qx "$name" <<<"$allowed"; then
			fail "$svc sets $name, which neither its entry point ${entry_of[$df]##*/} nor what it runs reads"
		fi
		case "$name" in
		SAGAD_LISTEN | SAGAD_HTTP_LISTEN)
			port=$(grep -oE ':[0-9]+' <<<"${line#*=}" | tail -n 1 | tr -d :)
			grep -q "^EXPOSE .*\b$port\b" "$path" || fail "$svc: $name port $port is not EXPOSEd by $df"
			;;
		esac
	done < <(compose_env "$compose" "$svc"; dockerfile_env "$path")
	ok "$svc: the $n variables it and its image set are ones it reads"
	while IFS= read -r p; do
		[[ -n "$p" ]] || continue
		grep -q "^EXPOSE .*\b${p##*:}\b" "$path" || fail "$svc publishes port ${p##*:}, which $df does not EXPOSE"
	done < <(compose_get "$compose" "services.$svc.ports")
done

# A service_healthy dependency needs a health check (compose or image).
while IFS= read -r dep; do
	[[ -n "$dep" ]] || continue
	df=$(compose_get "$compose" "services.$dep.build.dockerfile")
	if [[ -n "$(compose_get "$compose" "services.$dep.healthcheck.test")" ]] ||
		{ [[ -n "$df" ]] && grep -q '^HEALTHCHECK' "$SOURCE_ROOT/$df"; }; then
		ok "$dep has a health check, which service_healthy dependencies wait for"
	else
		fail "services wait for $dep to be healthy, but it has no health check"
	fi
done < <(sed -n 's/^services\.[^.]*\.depends_on\.\([^.]*\)\.condition=service_healthy$/\1/p' <<<"$flat" | sort -u)

exit $status
