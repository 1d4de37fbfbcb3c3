# shellcheck shell=bash
# lib.sh: helpers shared by the packaging tests (sourced, not run).
#
# They read docker/compose.yaml and docker/*.Dockerfile the way Docker
# would for what the tests need (a service's environment, command,
# healthcheck, image ENV, ENTRYPOINT/CMD and COPY lines), without a YAML
# library: compose.yaml keeps to the subset yaml_flat understands (its
# header says so), and test_docker_static.sh compares yaml_flat with
# PyYAML when that is installed.

# yaml_flat FILE: one line per scalar, `path=value`, e.g.
#   services.sagad.environment.SAGAD_DB=host=postgres ...
#   services.inventory.command[]=inventory
# Lists (block `- x` or flow `[a, b]`) give one `path[]=item` per item.
# Quotes around a value are removed. Anything outside the subset (anchors,
# block scalars, flow maps, `- key: value` items, inline comments after an
# unquoted value) makes it fail naming the line.
yaml_flat() {
	awk '
	function fail(msg) {
		printf "%s:%d: %s: %s\n", FILENAME, NR, msg, $0 > "/dev/stderr"
		bad = 1
		exit 1
	}
	function unquote(v) {
		if (v ~ /^".*"$/ || v ~ /^\047.*\047$/)
			return substr(v, 2, length(v) - 2)
		if (v ~ / #/)
			fail("inline comment")
		if (v ~ /^[&*|>{]/)
			fail("YAML outside the subset")
		return v
	}
	function path(   p, i) {
		p = ""
		for (i = 1; i <= d; i++)
			p = p (i > 1 ? "." : "") key[i]
		return p
	}
	function emit(p, v,   n, i, items) {
		if (v ~ /^\[.*\]$/) {
			v = substr(v, 2, length(v) - 2)
			n = split(v, items, /,[ ]*/)
			for (i = 1; i <= n; i++) {
				sub(/^[ ]+/, "", items[i])
				sub(/[ ]+$/, "", items[i])
				if (items[i] != "")
					print p "[]=" unquote(items[i])
			}
			return
		}
		print p "=" unquote(v)
	}
	/^[ \t]*(#|$)/ { next }
	{
		if ($0 ~ /^\t/)
			fail("tab indentation")
		match($0, /^ */)
		col = RLENGTH
		line = substr($0, col + 1)
		sub(/[ ]+$/, "", line)
		# A list item may sit at its parent key'"'"'s column; anything
		# else closes every key at its column or deeper.
		while (d > 0 && (ind[d] > col || (ind[d] == col && line !~ /^- /)))
			d--
		if (line ~ /^- /) {
			v = substr(line, 3)
			if (v ~ /^[A-Za-z0-9_.-]+:( |$)/)
				fail("mapping inside a list")
			print path() "[]=" unquote(v)
			next
		}
		if (line !~ /^[A-Za-z0-9_.-]+:( |$)/)
			fail("not a `key: value` line")
		k = line
		sub(/:.*/, "", k)
		v = line
		sub(/^[^:]*:[ ]*/, "", v)
		if (v == "") {
			d++
			ind[d] = col
			key[d] = k
		} else {
			d++
			key[d] = k
			emit(path(), v)
			d--
		}
	}
	END { if (bad) exit 1 }
	' "$1"
}

# compose_get FILE PATH: the value(s) at PATH (one per line for a list).
compose_get() {
	local file=$1 p=$2
	yaml_flat "$file" | awk -v p="$p" '
		index($0, p "=") == 1 { print substr($0, length(p) + 2) }
		index($0, p "[]=") == 1 { print substr($0, length(p) + 4) }'
}

# compose_services FILE: the service names, in file order.
compose_services() {
	yaml_flat "$1" | sed -n 's/^services\.\([^.=]*\)\..*/\1/p' | awk '!seen[$0]++'
}

# compose_env FILE SERVICE: NAME=value lines of the service's environment.
compose_env() {
	yaml_flat "$1" | sed -n "s/^services\.$2\.environment\.//p"
}

# dockerfile_env FILE: NAME=value lines of its last stage's `ENV NAME=value`
# lines (one variable per ENV line, as our Dockerfiles write them).
dockerfile_env() {
	awk '/^FROM /{n = 0; delete env} /^ENV [A-Za-z_][A-Za-z0-9_]*=/{env[++n] = substr($0, 5)}
		END { for (i = 1; i <= n; i++) print env[i] }' "$1"
}

# dockerfile_exec FILE ENTRYPOINT|CMD|HEALTHCHECK: the items of the
# instruction's JSON (exec) form in the last stage, one per line.
dockerfile_exec() {
	awk -v what="$2" '
		/^FROM / { out = "" }
		{ line = $0 }
		cont { buf = buf " " line } !cont { buf = line }
		{ cont = (buf ~ /\\$/); if (cont) { sub(/\\$/, "", buf); next } }
		buf ~ "^" what " " {
			s = buf
			sub(/^[^[]*\[/, "", s)
			sub(/\][ ]*$/, "", s)
			out = s
		}
		END {
			n = split(out, items, /"[ ]*,[ ]*"/)
			for (i = 1; i <= n; i++) { gsub(/^[ ]*"|"[ ]*$/, "", items[i]); print items[i] }
		}' "$1"
}

# dockerfile_copies FILE: `FROM-STAGE|SOURCE|DEST` per COPY source
# (FROM-STAGE empty for the build context), backslash continuations joined.
dockerfile_copies() {
	awk '
		{ line = $0 }
		cont { buf = buf " " line } !cont { buf = line }
		{ cont = (buf ~ /\\$/); if (cont) { sub(/\\$/, "", buf); next } }
		buf ~ /^COPY / {
			n = split(buf, w, /[ ]+/)
			from = ""
			first = 2
			while (w[first] ~ /^--/) {
				if (w[first] ~ /^--from=/)
					from = substr(w[first], 8)
				first++
			}
			for (i = first; i < n; i++)
				printf "%s|%s|%s\n", from, w[i], w[n]
		}' "$1"
}

# copy_source FILE DEST: the build-context source COPY'd to DEST (a path in
# the image), or nothing.
copy_source() {
	dockerfile_copies "$1" | awk -F "|" -v d="$2" '$1 == "" && $3 == d { print $2 }'
}

# layout_expand LAYOUT bindir=... libdir=... ...: the absolute paths of
# layout.txt for those directories (a line whose directory is empty is
# left out).
layout_expand() {
	local layout=$1
	shift
	awk -v defs="$*" '
		BEGIN {
			n = split(defs, d, " ")
			for (i = 1; i <= n; i++) {
				eq = index(d[i], "=")
				val[substr(d[i], 1, eq - 1)] = substr(d[i], eq + 1)
			}
		}
		/^[ \t]*(#|$)/ { next }
		{
			line = $0
			out = ""
			while (match(line, /\$[a-z]+/)) {
				name = substr(line, RSTART + 1, RLENGTH - 1)
				if (!(name in val)) {
					printf "layout: unknown directory $%s\n", name > "/dev/stderr"
					exit 1
				}
				if (val[name] == "")
					next
				out = out substr(line, 1, RSTART - 1) val[name]
				line = substr(line, RSTART + RLENGTH)
			}
			print out line
		}' "$layout"
}
