#!/usr/bin/env bash
# bench/router-vs-nginx.sh — CloudRunr's router against nginx, same corpus, same run, same pinning.
#
# The corpus is the shared harness's (../shared/bench/edge-peers.sh): three built sites
# (site-a, site-b, site-c) with an index.html, a 150 KB JS bundle, a gzip-precompressed bundle
# (site-b), and 1000 small chunks (site-a). Each site is committed to a git repository, served
# over git's smart HTTP (bench/git-http.py), and deployed through CloudRunr's real path: a
# project per site, a build in the sandbox, the upload to the artifact store. Then the harness
# measures the router (`cloudrunr serve`, release build, pinned to the server CPUs) with
# `--target`, and nginx as it starts it itself (same CPUs, same wrk pinning). The servers take
# turns scenario by scenario (the order alternating), so that a slow minute of a shared machine
# weighs on both alike.
#
# Usage: bench/router-vs-nginx.sh [--quick] [--s3] [--duration S] [--repeat N] [--port N]
#   --quick        5 s per run, 1 run per scenario (default: the harness's 10 s x 3, median)
#   --s3           also serve the same sites from S3 (moto, warm router cache; a second
#                  `cloudrunr serve` on PORT+1) and compare with the local-disk figures
#   --scenarios L  comma list of the harness's scenarios [all]
#   --paired N     N single runs of each server per scenario, back to back (router, nginx, router,
#                  nginx...): the ratio printed is then the median of the N per-pair ratios, the
#                  figures the medians of the runs — steadier on a noisy machine than one median each
#   --dir DIR      work directory [/tmp/cloudrunr-bench]
#
# Needs: wrk, nginx, curl, jq, git, taskset (installed with apt when missing, as root), and
# the harness at $CLOUDRUNR_EDGE_PEERS (default ../shared/bench/edge-peers.sh).
#
# Output: the harness's lines for each server, then, last, one line per scenario:
#   scenario router_rps nginx_rps ratio
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

HARNESS=${CLOUDRUNR_EDGE_PEERS:-$ROOT/../shared/bench/edge-peers.sh}
DIR=/tmp/cloudrunr-bench
PORT=18090
NGINX_PORT=18080
GIT_PORT=18070
S3=0
PAIRS=0
HARNESS_ARGS=()
SERVER_CPUS=0
CLIENT_CPUS=1

while [ $# -gt 0 ]; do
  case "$1" in
    --quick) HARNESS_ARGS+=(--duration 5 --repeat 1 --warmup 1); shift ;;
    --paired) PAIRS=$2; shift 2 ;;
    --duration) HARNESS_ARGS+=(--duration "$2"); shift 2 ;;
    --repeat) HARNESS_ARGS+=(--repeat "$2"); shift 2 ;;
    --scenarios) HARNESS_ARGS+=(--scenarios "$2"); shift 2 ;;
    --s3) S3=1; shift ;;
    --dir) DIR=$2; shift 2 ;;
    --port) PORT=$2; shift 2 ;;
    -h|--help) sed -n '2,/^set -e/s/^# \{0,1\}//p' "$0" | sed '$d'; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
done

note() { echo "# $*" >&2; }
die() { echo "router-vs-nginx: $*" >&2; exit 1; }

[ -x "$HARNESS" ] || [ -f "$HARNESS" ] || die "no harness at $HARNESS (set CLOUDRUNR_EDGE_PEERS)"

missing=()
for tool in wrk nginx curl jq git taskset; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if [ ${#missing[@]} -gt 0 ]; then
  pkgs=("${missing[@]/taskset/util-linux}")
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    note "installing ${pkgs[*]} with apt-get"
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${pkgs[@]}" >/dev/null \
      || { apt-get update >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${pkgs[@]}" >/dev/null; }
  else
    die "missing: ${missing[*]}"
  fi
fi

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/cloudrunr/target}"
note "building cloudrunr (release)"
cargo build --release --locked -p cloudrunr -q
BIN=$CARGO_TARGET_DIR/release/cloudrunr

PIDS=()
SERVICES_ENV=
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [ -n "$SERVICES_ENV" ]; then
    (eval "$SERVICES_ENV"; scripts/services stop) || true
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The corpus, as git repositories on a local smart-HTTP server.
bash "$HARNESS" --dir "$DIR/edge" --corpus-only
rm -rf "$DIR/git" && mkdir -p "$DIR/git"
for site in site-a site-b site-c; do
  work=$DIR/git/work-$site
  rm -rf "$work" && cp -r "$DIR/edge/sites/$site" "$work"
  # The corpus is a single-page app: what nginx does with `try_files $uri $uri/ /index.html`,
  # a Netlify-style site says in `_redirects`.
  printf '/*  /index.html  200\n' > "$work/_redirects"
  git -C "$work" init -q -b main
  git -C "$work" add -A
  git -C "$work" -c user.name=bench -c user.email=bench@localhost commit -q -m corpus
  git clone -q --bare "$work" "$DIR/git/$site.git"
  rm -rf "$work"
done
python3 bench/git-http.py "$DIR/git" "$GIT_PORT" &
PIDS+=($!)
for _ in $(seq 1 100); do
  curl -sf -o /dev/null "http://127.0.0.1:$GIT_PORT/site-a.git/info/refs?service=git-upload-pack" && break
  sleep 0.1
done

declare -A ROUTER_PIDS ROUTER_PORT

# start_router NAME PORT [VAR=VALUE...]: `cloudrunr serve` on PORT, pinned to the server CPUs,
# with the sites deployed. Sets ROUTER_PIDS[NAME] and ROUTER_PORT[NAME].
start_router() {
  local name=$1 port=$2; shift 2
  local data=$DIR/$name
  rm -rf "$data" && mkdir -p "$data"
  env "$@" CLOUDRUNR_DATA_DIR="$data" CLOUDRUNR_LISTEN="127.0.0.1:$port" CLOUDRUNR_DOMAIN=localtest \
    CLOUDRUNR_GIT_ALLOW_HTTP_HOSTS="127.0.0.1:$GIT_PORT" CLOUDRUNR_BUILD_EGRESS_ALLOW="127.0.0.1:$GIT_PORT" RUST_LOG=warn \
    taskset -c "$SERVER_CPUS" "$BIN" serve > "$data/server.log" 2>&1 &
  local pid=$!
  PIDS+=("$pid")
  ROUTER_PIDS[$name]=$pid
  ROUTER_PORT[$name]=$port
  local api=http://127.0.0.1:$port/api i
  for i in $(seq 1 100); do
    curl -sf -o /dev/null "$api/openapi.json" && break
    kill -0 "$pid" 2>/dev/null || die "cloudrunr exited at start; see $data/server.log"
    sleep 0.1
  done
  local token
  token=$(curl -sf "$api/auth/signup" -H 'content-type: application/json' \
    -d '{"name":"Bench","email":"bench@example.com","password":"correct horse battery"}' | jq -r .token)
  local site id state out
  for site in site-a site-b site-c; do
    out=$(curl -s -w ' %{http_code}' "$api/projects" -H "authorization: Bearer $token" -H 'content-type: application/json' \
      -d "{\"name\":\"$site\",\"git_url\":\"http://127.0.0.1:$GIT_PORT/$site.git\"}")
    [ "${out##* }" = 201 ] || die "cannot create project $site: $out"
    id=$(curl -sf -X POST "$api/projects/$site/deployments" -H "authorization: Bearer $token" | jq -r .deployment.id)
    for i in $(seq 1 600); do
      state=$(curl -sf "$api/deployments/$id" -H "authorization: Bearer $token" | jq -r .deployment.state)
      case "$state" in ready) break ;; failed|canceled|timed_out) die "$site: deployment $state; see $data/server.log" ;; esac
      sleep 0.2
    done
    [ "$state" = ready ] || die "$site: deployment still $state"
  done
  sleep 2
  note "$name: cloudrunr pid $pid, idle $(awk '/^(VmRSS|RssAnon|RssFile):/ { sub(":", ""); printf "%s%s_kb %s", sep, tolower($1), $2; sep = " " }' "/proc/$pid/status")"
}

harness() { bash "$HARNESS" --dir "$DIR/edge" --server-cpus "$SERVER_CPUS" --client-cpus "$CLIENT_CPUS" "${HARNESS_ARGS[@]}" "$@"; }

# The scenarios, one at a time, each measured on both servers back to back (the order
# alternating), so that a slow minute on a shared machine weighs on both sides alike.
SCENARIO_LIST=$(sed -n 's/^ALL_SCENARIOS="\(.*\)"/\1/p' "$HARNESS")
for ((i = 0; i < ${#HARNESS_ARGS[@]}; i++)); do
  [ "${HARNESS_ARGS[$i]}" = --scenarios ] && SCENARIO_LIST=${HARNESS_ARGS[$((i + 1))]//,/ }
done
[ -n "$SCENARIO_LIST" ] || die "cannot read the harness's scenario list"

# measure NAME...: each named server ("router", "router-s3", "nginx") on each scenario, appending
# the harness's lines to $DIR/NAME.txt.
measure() {
  local name sc n=0 order run runs=1 single=()
  [ "$PAIRS" -gt 0 ] && { runs=$PAIRS; single=(--repeat 1); }
  for name in "$@"; do : > "$DIR/$name.txt"; done
  for sc in $SCENARIO_LIST; do
    order=("$@")
    # Every other scenario, the other way round.
    if (( n++ % 2 )); then order=(); for name in "$@"; do order=("$name" "${order[@]}"); done; fi
    for ((run = 0; run < runs; run++)); do
      for name in "${order[@]}"; do
        case "$name" in
          nginx) harness --port "$NGINX_PORT" --scenarios "$sc" "${single[@]}" nginx ;;
          *) harness --target "127.0.0.1:${ROUTER_PORT[$name]}" --name "$name" --pid "${ROUTER_PIDS[$name]}" \
               --scenarios "$sc" "${single[@]}" ;;
        esac | tee -a "$DIR/$name.txt"
      done
    done
  done
}

start_router router "$PORT"
if [ "$S3" = 1 ]; then
  note "starting moto (scripts/services) for the S3 run"
  SERVICES_ENV=$(CLOUDRUNR_SERVICES_DIR='' scripts/services start)
  eval "$SERVICES_ENV"
  curl -sf -X PUT "$CLOUDRUNR_TEST_AWS_ENDPOINT/cloudrunr-bench" > /dev/null || die "cannot create the bucket"
  start_router router-s3 "$((PORT + 1))" CLOUDRUNR_ARTIFACT_STORE=s3://cloudrunr-bench/sites CLOUDRUNR_S3_PATH_STYLE=true \
    AWS_ENDPOINT_URL="$CLOUDRUNR_TEST_AWS_ENDPOINT" AWS_REGION=us-east-1 AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test
  # Warm the router's cache the way traffic would, before measuring.
  harness --target "127.0.0.1:${ROUTER_PORT[router-s3]}" --name router-s3 --pid "${ROUTER_PIDS[router-s3]}" \
    --duration 2 --repeat 1 --warmup 1 > /dev/null
  measure router router-s3 nginx
else
  measure router nginx
fi

# side_by_side LEFT RIGHT FIELD HEADER: per scenario, harness field FIELD (3 = rps, 5 = p99 ms) of
# LEFT's and RIGHT's lines (the median of their runs), with, when HEADER names one, the median of
# the ratios of the runs taken in pairs (the k-th of LEFT with the k-th of RIGHT).
side_by_side() {
  awk -v left="$1" -v right="$2" -v field="$3" -v header="$4" '
    function median(v, k,   i, j, t) {
      for (i = 2; i <= k; i++) for (j = i; j > 1 && v[j - 1] > v[j]; j--) { t = v[j]; v[j] = v[j - 1]; v[j - 1] = t }
      return k % 2 ? v[(k + 1) / 2] : (v[k / 2] + v[k / 2 + 1]) / 2
    }
    FNR == 1 { file++ }
    /^#/ { next }
    file == 1 { if (!($2 in na)) order[++n] = $2; a[$2, ++na[$2]] = $field }
    file == 2 { b[$2, ++nb[$2]] = $field }
    END {
      print header
      ratio = header ~ / ratio$/
      for (i = 1; i <= n; i++) {
        s = order[i]; split("", va); split("", vb); split("", vr)
        for (k = 1; k <= na[s]; k++) va[k] = a[s, k]
        for (k = 1; k <= nb[s]; k++) vb[k] = b[s, k]
        pairs = na[s] < nb[s] ? na[s] : nb[s]
        for (k = 1; k <= pairs; k++) vr[k] = (b[s, k] > 0 ? a[s, k] / b[s, k] : 0)
        ma = median(va, na[s]); mb = (nb[s] > 0 ? median(vb, nb[s]) : 0)
        if (ratio) printf "%s %s %s %.2f\n", s, ma, mb, (pairs > 0 ? median(vr, pairs) : 0)
        else printf "%s %s %s\n", s, ma, mb
      }
    }' "$DIR/$1.txt" "$DIR/$2.txt"
}
# Latency first, as comments; the ratios last.
side_by_side router nginx 5 "scenario router_p99_ms nginx_p99_ms" | sed 's/^/# /'
if [ "$S3" = 1 ]; then
  echo "# S3 (warm cache) against local disk:"
  side_by_side router-s3 router 3 "scenario router-s3_rps router_rps ratio" | sed 's/^/# /'
fi
side_by_side router nginx 3 "scenario router_rps nginx_rps ratio"
