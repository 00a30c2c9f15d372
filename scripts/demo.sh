#!/usr/bin/env bash
# `make demo`: start a local control plane, deploy examples/hello to staging,
# promote the very same artifacts to production, show production answering
# with the promoted version, and stop the control plane.
#
# Everything lives in .demo/ (state, token, CLI login), so a login you already
# have for a hosted Compartment is neither used nor changed.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
bin="$root/.venv/bin"
demo="$root/.demo"
rm -rf "$demo"
mkdir -p "$demo"
export COMPARTMENT_CLI_CONFIG_DIR="$demo/config"
unset COMPARTMENT_API_URL COMPARTMENT_TOKEN COMPARTMENT_ORG

port=$("$bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')

if [ -t 1 ] && [ -z "${NO_COLOR:-}" ]; then bold=$'\033[1m' plain=$'\033[0m'; else bold='' plain=''; fi
step() { printf '\n%s==> %s%s\n' "$bold" "$*" "$plain"; }

step "compartment server --port $port --data-dir .demo/data"
"$bin/compartment" server --port "$port" --data-dir "$demo/data" >"$demo/server.log" 2>&1 &
server=$!
stop_server() {
  kill -TERM "$server" 2>/dev/null && wait "$server" || true
}
trap stop_server EXIT
for _ in $(seq 100); do
  "$bin/python" - "$port" <<'PY' && break
import sys, urllib.request
try:
    urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/healthz", timeout=1)
except OSError:
    sys.exit(1)
PY
  kill -0 "$server" 2>/dev/null || { cat "$demo/server.log"; exit 1; }
  sleep 0.1
done

cd "$root/examples/hello"

step "compartment deploy --env staging"
"$bin/compartment" deploy --env staging

step "compartment promote --from staging --to production --verbose"
"$bin/compartment" promote --from staging --to production --verbose

step "what production serves now"
"$bin/compartment" deployment list --env production --output json >"$demo/production.json"
"$bin/python" - "$demo/production.json" <<'PY'
import json, sys, urllib.request

listing = json.load(open(sys.argv[1]))
for deployment in listing["deployments"]:
    if deployment["isActive"] and deployment["serviceName"] == "api":
        url = deployment["routeUrl"]
        body = urllib.request.urlopen(url, timeout=5).read().decode().strip()
        print(f"GET {url}\n{body}")
        answer = json.loads(body)
        assert answer["environment"] == "production", answer
        assert answer["deploymentId"] == deployment["id"], answer
        break
else:
    sys.exit("no active api deployment in production")
PY

step "stopping the control plane"
