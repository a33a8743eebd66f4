#!/usr/bin/env bash
# Runs docs/control-plane.md's "Running three replicas on an etcd cluster" recipe on loopback: three etcd
# members (the etcd binary: apt-get install etcd-server) with client TLS, and three weft control replicas
# on them. Usage: hack/etcd-three-replicas.sh WEFT_BINARY WORKDIR [BASE_PORT]
# It prints the replicas' URLs and waits; Ctrl-C (or SIGTERM) stops everything it started.
set -euo pipefail
weft=$(realpath "$1"); dir=$2; base=${3:-20000}
command -v etcd >/dev/null || { echo "no etcd binary: apt-get install etcd-server" >&2; exit 1; }
mkdir -p "$dir"; cd "$dir"
pids=()
trap 'kill "${pids[@]}" 2>/dev/null; wait 2>/dev/null' EXIT

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 365 -subj /CN=etcd-ca \
        -keyout etcd-ca.key -out etcd-ca.pem 2>/dev/null
for n in m1 m2 m3 weft; do
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=$n -keyout $n.key -out $n.csr 2>/dev/null
  openssl x509 -req -in $n.csr -CA etcd-ca.pem -CAkey etcd-ca.key -CAcreateserial -days 365 \
          -extfile <(printf "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth") -out $n.pem 2>/dev/null
done
client() { echo $((base + 10*$1)); }
peer() { echo $((base + 10*$1 + 1)); }
cluster=m1=http://127.0.0.1:$(peer 1),m2=http://127.0.0.1:$(peer 2),m3=http://127.0.0.1:$(peer 3)
for i in 1 2 3; do
  etcd --name m$i --data-dir "$dir/etcd-m$i" \
       --listen-client-urls https://127.0.0.1:$(client $i) --advertise-client-urls https://127.0.0.1:$(client $i) \
       --listen-peer-urls http://127.0.0.1:$(peer $i) --initial-advertise-peer-urls http://127.0.0.1:$(peer $i) \
       --initial-cluster $cluster --initial-cluster-state new \
       --cert-file m$i.pem --key-file m$i.key --client-cert-auth --trusted-ca-file etcd-ca.pem >etcd-m$i.log 2>&1 &
  pids+=($!)
done
head -c32 /dev/urandom | base64 > ca-seal.key; chmod 600 ca-seal.key
store=etcd://127.0.0.1:$(client 1),127.0.0.1:$(client 2),127.0.0.1:$(client 3)
for i in 1 2 3; do
  "$weft" control -data "$dir/weft-$i" -addr 127.0.0.1:$((base + 100 + i)) -store "$store" \
       -etcd-ca etcd-ca.pem -etcd-cert weft.pem -etcd-key weft.key -ca-encryption-key-file ca-seal.key >weft-$i.out 2>weft-$i.log &
  pids+=($!)
done
for i in 1 2 3; do
  for _ in $(seq 300); do grep -q "weft control plane at" weft-$i.out 2>/dev/null && break; sleep 0.1; done
  head -1 weft-$i.out
done
echo "replicas up; admin tokens in $dir/weft-N/admin.token, CA bundle in $dir/weft-N/ca.pem"
wait
