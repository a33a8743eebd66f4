#!/usr/bin/env bash
# HTTP/2 conformance, informational (not part of .ci/run): runs h2spec
# (https://github.com/summerwind/h2spec) against a weft listener speaking h2c
# on 127.0.0.1 (routed to a second weft listener that answers) and prints
# the pass/fail/skip counts and the failed cases. Idempotent: h2spec and the
# weft binary are cached under $H2SPEC_CACHE (default ~/.cache/weft-h2spec).
# The JUnit report goes to $H2SPEC_REPORT (default $H2SPEC_CACHE/report.xml),
# the full text output beside it (h2spec.log). Exits 0 whatever the score;
# non-zero only when it could not run.
set -euo pipefail
cd "$(dirname "$0")/.."
cache=${H2SPEC_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/weft-h2spec}
report=${H2SPEC_REPORT:-$cache/report.xml}
mkdir -p "$cache"

if [ ! -x "$cache/bin/h2spec" ]; then
  echo "h2spec: installing into $cache/bin"
  GOBIN="$cache/bin" go install github.com/summerwind/h2spec/cmd/h2spec@latest
fi
go build -o "$cache/weft" ./cmd/weft

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
port=$(free_port)
backend=$(free_port)
# The h2spec listener forwards to a second listener that answers: its
# answer comes once the request is whole (as from any real upstream), so
# h2spec's cases on request bodies are not raced by an early response.
cat >"$cache/weft.yaml" <<YAML
admin: {address: "off"}
listeners:
  - name: h2spec
    address: 127.0.0.1:$port
    virtual_hosts:
      - name: all
        domains: ["*"]
        routes:
          - match: {prefix: /}
            route: {cluster: backend}
  - name: backend
    address: 127.0.0.1:$backend
    virtual_hosts:
      - name: all
        domains: ["*"]
        routes:
          # a body of some length: h2spec skips its flow-control cases on tiny ones
          - match: {prefix: /}
            direct_response: {status: 200, body: "weft h2spec target: a direct response long enough for flow control"}
clusters:
  - name: backend
    endpoints: [{address: "127.0.0.1:$backend"}]
YAML

"$cache/weft" proxy -c "$cache/weft.yaml" -wasm-cache "" -log-level warn -drain 1s &
weft=$!
trap 'kill "$weft" 2>/dev/null || true; wait "$weft" 2>/dev/null || true' EXIT
for _ in $(seq 100); do
  (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
  kill -0 "$weft" 2>/dev/null || { echo "h2spec: weft exited"; exit 1; }
  sleep 0.1
done

# Plaintext: h2spec speaks h2c with prior knowledge unless -t is given.
"$cache/bin/h2spec" -h 127.0.0.1 -p "$port" -o 5 -j "$report" >"$cache/h2spec.log" 2>&1 || true
grep -E '^(Finished|[0-9]+ tests,)' "$cache/h2spec.log" || tail -5 "$cache/h2spec.log"
echo "h2spec: failures (if any):"
awk '/^Failures:/{f=1} f' "$cache/h2spec.log" | grep -E '^\s+[0-9.]+|×|Expected|Actual' | head -60 || true
echo "h2spec: report $report, log $cache/h2spec.log"
