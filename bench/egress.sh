#!/usr/bin/env bash
# bench/egress.sh — what the builds' network isolation costs.
#
# 1. overhead: a command that does nothing, run RUNS times in the build sandbox's bubblewrap
#    command line as it was before (host network, `sh -c true`) and as it is now (own network
#    namespace, under `cloudrunr egress-bridge`): the cost of the bridge per build step.
# 2. trivial: the `spa` fixture (no dependencies) deployed RUNS times through `cloudrunr serve`:
#    the build's phases and its total time, proxy included.
# 3. npm: `npm install` of a Vite + React app with a cold cache, RUNS times each, alternating: in
#    the sandbox on the host's network (the bubblewrap command line of before, by hand), and as a
#    real build through the proxy (the deployment's `installing` phase). This part reaches the npm
#    registry.
#
# Usage: bench/egress.sh [overhead|trivial|npm|all] (default all)
#   RUNS=5 runs of each (median and all runs printed); CLOUDRUNR_BIN=path/to/cloudrunr (default
#   the debug build in $CARGO_TARGET_DIR or target/); EGRESS_ALLOW=extra allow-list entries for
#   the platform's builds (e.g. registry.npmjs.org where the registry resolves to a reserved
#   address, as behind some sandboxes' intercepting resolvers); KEEP_LOG=file keeps the server's
#   log (RUST_LOG=info,builder::egress=debug lists every tunnel with its resolve/connect times).
# Needs: bwrap, git, node, npm, curl, jq, python3 (bench/git-http.py).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
WHAT=${1:-all}
RUNS=${RUNS:-5}
BIN=${CLOUDRUNR_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/debug/cloudrunr}
[ -x "$BIN" ] || { echo "no cloudrunr binary at $BIN (set CLOUDRUNR_BIN)" >&2; exit 1; }
WORK=$(mktemp -d /tmp/cloudrunr-egress-bench.XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  [ -z "${KEEP_LOG:-}" ] || cp "$WORK/serve.log" "$KEEP_LOG" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
median() { sort -n | awk '{a[NR]=$1} END {print (NR % 2 ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2)}'; }

# The sandbox's command line (builder/src/sandbox.rs), given extra options before `--`.
sandbox() {
  local ws=$1 cache=$2 net=$3; shift 3
  local etc=()
  for f in /etc/resolv.conf /etc/hosts /etc/nsswitch.conf /etc/ssl/certs /etc/alternatives /etc/localtime; do
    etc+=(--ro-bind-try "$f" "$f")
  done
  env -i PATH=/usr/local/bin:/usr/bin:/bin HOME=/tmp TMPDIR=/tmp LANG=C.UTF-8 CI=1 \
    npm_config_cache=/cache/npm npm_config_update_notifier=false npm_config_fund=false npm_config_audit=false \
    bwrap --unshare-all $net --unshare-user --uid 1000 --gid 1000 --disable-userns --cap-drop ALL \
    --die-with-parent --new-session --hostname build --ro-bind /usr /usr --symlink usr/bin /bin \
    --symlink usr/lib /lib --symlink usr/lib64 /lib64 --symlink usr/sbin /sbin --proc /proc --dev /dev \
    --tmpfs /tmp "${etc[@]}" --ro-bind "$WORK/passwd" /etc/passwd --bind "$ws" /workspace \
    --bind "$cache" /cache --chdir /workspace "$@"
}
printf 'build:x:1000:1000:build:/tmp:/bin/sh\n' > "$WORK/passwd"

overhead() {
  local ws=$WORK/ws cache=$WORK/cache sock=$WORK/sock
  mkdir -p "$ws" "$cache" "$sock"
  local before=() after=()
  for _ in $(seq "$RUNS"); do
    local t=$(now_ms)
    sandbox "$ws" "$cache" --share-net -- sh -c true
    before+=($(( $(now_ms) - t )))
    t=$(now_ms)
    sandbox "$ws" "$cache" "" --ro-bind "$BIN" /run/cloudrunr/bridge --ro-bind "$sock" /run/cloudrunr/egress \
      -- /run/cloudrunr/bridge egress-bridge --listen 127.0.0.1:3128 --socket /run/cloudrunr/egress/proxy.sock \
      -- sh -c true
    after+=($(( $(now_ms) - t )))
  done
  echo "overhead: sh -c true, host network:     median $(printf '%s\n' "${before[@]}" | median) ms (${before[*]})"
  echo "overhead: sh -c true, under the bridge: median $(printf '%s\n' "${after[@]}" | median) ms (${after[*]})"
}

# A platform with a git server, for the deploy-based parts.
GIT_PORT=18171
start_platform() {
  mkdir -p "$WORK/repos"
  python3 bench/git-http.py "$WORK/repos" "$GIT_PORT" >/dev/null 2>&1 &
  PIDS+=($!)
  env RUST_LOG="${RUST_LOG:-info}" CLOUDRUNR_GIT_ALLOW_HTTP_HOSTS=127.0.0.1 CLOUDRUNR_BUILD_EGRESS_ALLOW="127.0.0.1:$GIT_PORT${EGRESS_ALLOW:+,$EGRESS_ALLOW}" \
    "$BIN" serve --listen 127.0.0.1:0 --data-dir "$WORK/data" >"$WORK/serve.out" 2>"$WORK/serve.log" &
  PIDS+=($!)
  for _ in $(seq 100); do
    BASE=$(sed -n 's/^cloudrunr listening on //p' "$WORK/serve.out" | head -1)
    [ -n "$BASE" ] && break
    sleep 0.1
  done
  [ -n "$BASE" ] || { cat "$WORK/serve.log" >&2; exit 1; }
  TOKEN=$(curl -sf "$BASE/api/auth/signup" -H 'content-type: application/json' \
    -d '{"name":"Bench","email":"bench@example.com","password":"correct horse battery"}' | jq -r .token)
}

# Commits directory $2 as bare repository $1.git.
publish() {
  local name=$1 src=$2 tree=$WORK/tree-$1
  cp -r "$src" "$tree"
  git -C "$tree" init -q -b main
  git -C "$tree" add -A
  git -C "$tree" -c user.name=b -c user.email=b@example.com commit -qm "$name"
  git clone -q --bare "$tree" "$WORK/repos/$name.git"
}

# Deploys a new project of repository $1 (fresh dependency cache); prints the deployment's JSON.
deploy() {
  local repo=$1 name=$2
  curl -sf "$BASE/api/projects" -H "authorization: Bearer $TOKEN" -H 'content-type: application/json' \
    -d "{\"name\":\"$name\",\"git_url\":\"http://127.0.0.1:$GIT_PORT/$repo.git\"}" >/dev/null
  local id
  id=$(curl -sf -X POST "$BASE/api/projects/$name/deployments" -H "authorization: Bearer $TOKEN" \
    -H 'content-type: application/json' -d '{}' | jq -r .deployment.id)
  while :; do
    local d
    d=$(curl -sf "$BASE/api/deployments/$id" -H "authorization: Bearer $TOKEN" | jq -c .deployment)
    case $(jq -r .state <<<"$d") in
      ready) echo "$d"; return ;;
      failed|canceled|timed_out)
        curl -sf "$BASE/api/deployments/$id/logs?limit=5000" -H "authorization: Bearer $TOKEN" | jq -r '.lines[].text' >&2
        exit 1 ;;
    esac
    sleep 0.1
  done
}

trivial() {
  [ -n "${BASE:-}" ] || start_platform
  publish spa test-support/fixtures/spa
  local totals=() builds=()
  for i in $(seq "$RUNS"); do
    local d
    d=$(deploy spa "spa-$i")
    builds+=($(jq '.phases.building // 0' <<<"$d"))
    totals+=($(jq '[.phases[]] | add' <<<"$d"))
  done
  echo "trivial: spa build step (node build.js, bridged): median $(printf '%s\n' "${builds[@]}" | median) ms (${builds[*]})"
  echo "trivial: spa all phases:                          median $(printf '%s\n' "${totals[@]}" | median) ms (${totals[*]})"
}

vite_app() {
  local app=$WORK/vite
  mkdir -p "$app/src"
  cat >"$app/package.json" <<'EOF'
{
  "name": "bench-vite",
  "private": true,
  "type": "module",
  "scripts": { "build": "vite build" },
  "dependencies": { "react": "^18.3.1", "react-dom": "^18.3.1" },
  "devDependencies": { "@vitejs/plugin-react": "^4.3.4", "vite": "^5.4.11" }
}
EOF
  cat >"$app/index.html" <<'EOF'
<!doctype html><html><body><div id="root"></div><script type="module" src="/src/main.jsx"></script></body></html>
EOF
  cat >"$app/src/main.jsx" <<'EOF'
import { createRoot } from 'react-dom/client';
createRoot(document.getElementById('root')).render(<h1>bench</h1>);
EOF
  cat >"$app/vite.config.js" <<'EOF'
import { defineConfig } from 'vite';
import react from '@vitejs/plugin-react';
export default defineConfig({ plugins: [react()] });
EOF
  echo "$app"
}

npm_bench() {
  local app
  app=$(vite_app)
  local host=() proxied=()
  [ -n "${BASE:-}" ] || start_platform
  publish vite "$app"
  # Alternating, so that the registry's and the network's moods weigh on both alike.
  for i in $(seq "$RUNS"); do
    local ws=$WORK/npm-ws-$i cache=$WORK/npm-cache-$i
    cp -r "$app" "$ws"
    mkdir -p "$cache"
    local t=$(now_ms)
    sandbox "$ws" "$cache" --share-net -- sh -c 'npm install --no-audit --no-fund >/dev/null 2>&1'
    host+=($(( $(now_ms) - t )))
    local d
    d=$(deploy vite "vite-$i")
    proxied+=($(jq '.phases.installing' <<<"$d"))
  done
  echo "npm: install, host network:      median $(printf '%s\n' "${host[@]}" | median) ms (${host[*]})"
  echo "npm: install, through the proxy: median $(printf '%s\n' "${proxied[@]}" | median) ms (${proxied[*]})"
}

case $WHAT in
  overhead) overhead ;;
  trivial) trivial ;;
  npm) npm_bench ;;
  all) overhead; trivial; npm_bench ;;
  *) echo "unknown part: $WHAT" >&2; exit 2 ;;
esac
