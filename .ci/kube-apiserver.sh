#!/usr/bin/env bash
# Builds kube-apiserver (the binary the Kubernetes tests start on loopback,
# as controller-runtime's envtest does) from the k8s.io/kubernetes module at
# the release matching client-go, into $WEFT_KUBE_CACHE (default
# ~/.cache/weft-kube/v$KUBE_VERSION). Idempotent: a built binary is reused.
# The first build takes ~12 minutes on 2 cores and 1.4 GB of module cache.
# Prints the binary's path on its last line.
set -euo pipefail
version=${KUBE_VERSION:-1.37.2}
staging=0.${version#1.}
cache=${WEFT_KUBE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/weft-kube/v$version}
bin="$cache/kube-apiserver"
if [ -x "$bin" ] && "$bin" --version >/dev/null 2>&1; then echo "$bin"; exit 0; fi
mkdir -p "$cache/src"
cd "$cache/src"
cat >main.go <<'GO'
// kube-apiserver for weft's Kubernetes tests (built by .ci/kube-apiserver.sh).
package main

import (
	"os"

	"k8s.io/component-base/cli"
	"k8s.io/kubernetes/cmd/kube-apiserver/app"
)

func main() { os.Exit(cli.Run(app.NewAPIServerCommand())) }
GO
[ -f go.mod ] || go mod init weft.local/kube-apiserver >/dev/null 2>&1
export GOFLAGS=-mod=mod
go get "k8s.io/kubernetes@v$version" >/dev/null 2>&1 || go get "k8s.io/kubernetes@v$version"
modfile="$(go env GOMODCACHE)/k8s.io/kubernetes@v$version/go.mod"
# Every k8s.io module kubernetes replaces with ./staging/... at this release.
for m in $(grep -oE 'k8s\.io/[a-z0-9-]+ => \./staging' "$modfile" | awk '{print $1}'); do
  go mod edit -replace "$m=$m@v$staging"
done
go mod tidy >/dev/null 2>&1 || go mod tidy
go build -trimpath -ldflags='-s -w' -o "$bin.tmp" .
mv "$bin.tmp" "$bin"
echo "$bin"
