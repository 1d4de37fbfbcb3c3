#!/bin/sh
# ui_list.sh URL: the web UI's list call (GET /api/v1/sagas with counts per
# state, docs/HTTP-API.md) under each filter; prints the median of 21 calls
# of each. docs/PERFORMANCE.md, "The web UI's list", says how the million
# sagas it was measured on were made.
set -eu
base=${1:?usage: ui_list.sh http://127.0.0.1:PORT}
for q in "limit=50&counts=1" "state=failed&limit=50&counts=1" \
	"definition=ittest.Parallel&limit=50&counts=1" \
	"definition=ittest.Parallel&version=1&state=compensated&limit=50&counts=1" \
	"business_key=order-777777&limit=50&counts=1" "participant=pD&limit=50&counts=1" \
	"created_after_us=1796000000000000&created_before_us=1796100000000000&limit=50&counts=1" \
	"error=ledger&limit=50&counts=1" "error=nomatch&limit=50&counts=1" \
	"limit=50&counts=1&counts_limit=0"; do
	for _ in $(seq 21); do
		curl -s -o /dev/null -w "%{time_total}\n" "$base/api/v1/sagas?$q"
	done | sort -n | sed -n 11p | awk -v q="$q" '{printf "%7.1f ms  %s\n", $1 * 1000, q}'
done
