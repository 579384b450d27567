#!/usr/bin/env bash
# Generates the test control plane's PKI into DIR (openssl): a CA, the API server's serving
# certificate (SANs 127.0.0.1, localhost, kubernetes.default.svc...), an admin client certificate
# in system:masters, and the service-account signing key pair. Idempotent: an existing DIR/ca.crt
# is kept.
set -euo pipefail
dir=${1:?usage: k8s-pki.sh DIR}
mkdir -p "$dir"
cd "$dir"
[ -f ca.crt ] && [ -f admin.crt ] && [ -f apiserver.crt ] && [ -f sa.pub ] && exit 0
q() { "$@" >/dev/null 2>&1; }
q openssl req -x509 -newkey rsa:2048 -nodes -days 365 -keyout ca.key -out ca.crt -subj "/CN=cutover-test-ca"
cat > apiserver.ext <<'X'
basicConstraints=CA:FALSE
keyUsage=digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=IP:127.0.0.1,IP:10.96.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local
X
q openssl req -newkey rsa:2048 -nodes -keyout apiserver.key -out apiserver.csr -subj "/CN=kube-apiserver"
q openssl x509 -req -in apiserver.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 365 -out apiserver.crt -extfile apiserver.ext
cat > client.ext <<'X'
basicConstraints=CA:FALSE
keyUsage=digitalSignature,keyEncipherment
extendedKeyUsage=clientAuth
X
q openssl req -newkey rsa:2048 -nodes -keyout admin.key -out admin.csr -subj "/O=system:masters/CN=cutover-test-admin"
q openssl x509 -req -in admin.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 365 -out admin.crt -extfile client.ext
q openssl genrsa -out sa.key 2048
q openssl rsa -in sa.key -pubout -out sa.pub
rm -f ./*.csr ./*.ext ca.srl
