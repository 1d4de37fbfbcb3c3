#!/bin/sh
# dev-certs.sh: makes DEVELOPMENT certificates for the example system, with
# openssl, unless they are there already (so every `docker compose up` may
# run it: the certificates are made once, on the first start).
#
#   dev-certs.sh DIR [OWNER]
#
# Writes into DIR (created if missing):
#   ca.pem, ca.key          a private CA, valid 825 days, that signs the others
#   sagad.pem, sagad.key    sagad's certificate: DNS names sagad, localhost
#                           and 127.0.0.1 (nng 1.5.2 matches DNS names only,
#                           so the address is there as a DNS name too) and
#                           IP 127.0.0.1
#   client.pem, client.key  the certificate the participants, the register
#                           one-shot and sagactl show (mutual TLS)
# Keys are mode 0600, owned by OWNER (uid:gid, e.g. 10001:10001, the user
# the images run as) when given and run as root.
#
# These are for trying the system out on one machine: the CA key sits next
# to the certificates, in a docker volume. In production use certificates
# from your own CA and mount them instead (docs/SECURITY.md, "TLS").
set -eu

dir=${1:?usage: dev-certs.sh DIR [OWNER]}
owner=${2:-}
days=825

if [ -s "$dir/ca.pem" ] && [ -s "$dir/sagad.pem" ] && [ -s "$dir/sagad.key" ] &&
	[ -s "$dir/client.pem" ] && [ -s "$dir/client.key" ]; then
	echo "dev-certs: certificates already in $dir; nothing to do"
	exit 0
fi
command -v openssl >/dev/null 2>&1 || {
	echo "dev-certs: error: openssl is not installed" >&2
	exit 78
}
mkdir -p "$dir"
cd "$dir"
umask 077

key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }

key ca.key
openssl req -x509 -new -key ca.key -sha256 -days "$days" -subj "/CN=saga development CA" \
	-out ca.pem

# cert NAME SUBJECT_ALT_NAMES
cert() {
	key "$1.key"
	openssl req -new -key "$1.key" -subj "/CN=$1" -out "$1.csr"
	printf 'subjectAltName=%s\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth,clientAuth\n' \
		"$2" >"$1.ext"
	openssl x509 -req -in "$1.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -sha256 \
		-days "$days" -extfile "$1.ext" -out "$1.pem" 2>/dev/null
	rm -f "$1.csr" "$1.ext"
}
cert sagad "DNS:sagad,DNS:localhost,DNS:127.0.0.1,IP:127.0.0.1"
cert client "DNS:client"
rm -f ca.srl

chmod 0644 ca.pem sagad.pem client.pem
chmod 0600 ca.key sagad.key client.key
if [ -n "$owner" ] && [ "$(id -u)" = 0 ]; then
	chown "$owner" ca.pem sagad.pem client.pem ca.key sagad.key client.key
fi
echo "dev-certs: made a development CA, sagad and client certificates in $dir"
