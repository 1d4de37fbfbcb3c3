# bash completion for sagactl. Installed as
# $datadir/bash-completion/completions/sagactl (bash-completion loads it on
# first use). Commands and options come from sagactl's own --help, so they
# never drift from the program.

_sagactl()
{
	local cur prev cmd i
	COMPREPLY=()
	cur=${COMP_WORDS[COMP_CWORD]}
	prev=${COMP_WORDS[COMP_CWORD - 1]}

	# Options that take a file.
	case $prev in
	--credential-file | --tls-ca | --tls-cert | --tls-key | --input-file | --input-raw-file | --result-file | --result-raw-file)
		mapfile -t COMPREPLY < <(compgen -f -- "$cur")
		return 0
		;;
	--state)
		mapfile -t COMPREPLY < <(compgen -W "running compensating completed compensated failed terminated" -- "$cur")
		return 0
		;;
	--role)
		mapfile -t COMPREPLY < <(compgen -W "participant client operator admin" -- "$cur")
		return 0
		;;
	esac

	# The command: the first word that is not an option or an option's value.
	cmd=
	for ((i = 1; i < COMP_CWORD; i++)); do
		case ${COMP_WORDS[i]} in
		--url | --timeout | --credential-file | --tls-ca | --tls-cert | --tls-key | --tls-server-name)
			((i++))
			;;
		-*) ;;
		*)
			cmd=${COMP_WORDS[i]}
			break
			;;
		esac
	done

	local words
	if [[ -z $cmd ]]; then
		if [[ $cur == -* ]]; then
			words=$(sagactl --help 2>/dev/null | grep -o -- '--[a-z][a-z-]*' | sort -u)
		else
			words=$(sagactl --help 2>/dev/null | sed -n 's/^  \([a-z][a-z]*\) .*/\1/p')
		fi
	elif [[ $cur == -* ]]; then
		words=$( (sagactl "$cmd" --help; sagactl --help) 2>/dev/null |
			grep -o -- '--[a-z][a-z-]*' | sort -u)
	elif [[ $cmd == register ]]; then
		mapfile -t COMPREPLY < <(compgen -f -- "$cur")
		return 0
	elif [[ $cmd == principal && $prev == principal ]]; then
		words="create list revoke"
	elif [[ $cmd == batch && $prev == batch ]]; then
		words="cancel terminate retry rerun"
	elif [[ $cmd == force && ${COMP_WORDS[COMP_CWORD - 3]} == force ]]; then
		words="succeeded compensated"
	else
		return 0
	fi
	mapfile -t COMPREPLY < <(compgen -W "$words" -- "$cur")
	return 0
}
complete -F _sagactl sagactl
