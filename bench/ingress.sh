#!/usr/bin/env bash
# Benchmark of Switchyard's built-in ingress (HTTP/1.1 reverse proxy, routing by Ingress
# objects of class `switchyard` with ingress-nginx canary annotations) against nginx as a
# reverse proxy in front of the same upstream.
#
# Starts the real `switchyard server` on a temp data dir (`--ingress-listen 127.0.0.1:0`),
# with two Deployments of the demo app (1 pod each: `stable` = switchyard/demo:blue,
# `canary` = switchyard/demo:green), their Services, and the Ingress `bench` (host
# bench.local, / Prefix -> stable:80). nginx (Debian's, generated config) proxies to the
# same pods: `worker_processes 2` (the ingress runs one worker thread per CPU),
# `upstream` blocks with `keepalive 64`, HTTP/1.1 with `Connection ""`, access_log off,
# and the request headers ingress-nginx sets (X-Forwarded-*, X-Real-IP, X-Request-ID), as
# Switchyard's ingress sets them too. Then, with wrk over keep-alive connections (small JSON
# responses of about 60 bytes):
#   1. plain routing: (a) direct to the stable pod, (b) the Switchyard ingress,
#      (c) nginx -> stable pod: req/s, p50, p99, proxy CPU per request;
#   2. 5 % canary: the Ingress `bench-canary` (nginx.ingress.kubernetes.io/canary: "true",
#      canary-weight "5") is added; nginx uses `split_clients` 5 % -> canary pod on a second
#      port. The same measures, plus the canary share: counted from the X-Switchyard-Version
#      header of CHECK_REQUESTS requests (one curl, keep-alive) through each proxy,
#      and from the pods' own request counters during every measured run.
# Each measure runs ROUNDS times with the order of the targets rotated (every target takes
# every position once in 3 rounds); medians are reported, with ratios ingress/nginx.
#
# Usage (as root, from anywhere; installs wrk, nginx, curl, jq, iproute2 when missing):
#   cargo build --release -p switchyard && bench/ingress.sh
# Environment: SWITCHYARD_BIN (default target/release/switchyard), ROUNDS (3),
#   DURATION (10s), THREADS (2), CONNECTIONS (64), NGINX_WORKERS (2), CANARY_WEIGHT (5),
#   CHECK_REQUESTS (2000), RESULTS_DIR (keep raw wrk outputs, configs and profiles there),
#   PERF (0; 1 = after the measured runs, profile both proxies under the same load with
#   `perf stat` and `perf record`, and print their top symbols), QUIET_BUSY (10) and
#   QUIET_WAIT (60): before each run, wait up to QUIET_WAIT s for the CPUs to be at most
#   QUIET_BUSY % busy (shared machines); runs that started busier, or during which
#   processes outside the benchmark used more than QUIET_BUSY % of the CPUs, are counted;
#   a run so disturbed during its course is repeated, at most RETRIES (2) more times, and
#   the least disturbed attempt counts.
# Traffic goes only to 127.0.0.0/8; every wait and loop is bounded; a trap stops the server
# (and its pods) and nginx and removes the temp dir, on success and on failure alike.

set -Eeuo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=${SWITCHYARD_BIN:-$ROOT/target/release/switchyard}
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10s}
THREADS=${THREADS:-2}
CONNECTIONS=${CONNECTIONS:-64}
NGINX_WORKERS=${NGINX_WORKERS:-2}
CANARY_WEIGHT=${CANARY_WEIGHT:-5}
CHECK_REQUESTS=${CHECK_REQUESTS:-2000}
PERF=${PERF:-0}
HOST=bench.local

log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() {
    log "error: $*"
    exit 1
}

[[ $EUID -eq 0 ]] || die "run as root (apt-get installs the tools; nginx starts as root)"
[[ $DURATION =~ ^[0-9]+s$ ]] || die "DURATION must be in seconds, like 10s"
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || die "ROUNDS must be a positive integer"
[[ $CANARY_WEIGHT =~ ^[0-9]+$ ]] && ((CANARY_WEIGHT > 0 && CANARY_WEIGHT < 100)) ||
    die "CANARY_WEIGHT must be in 1..99"
[[ $CHECK_REQUESTS =~ ^[1-9][0-9]*$ ]] || die "CHECK_REQUESTS must be a positive integer"
[[ -x $BIN ]] || die "$BIN not found: build it first with 'cargo build --release -p switchyard'"

# --- tools -------------------------------------------------------------------------------

install_missing() {
    local -a missing=()
    command -v wrk >/dev/null || missing+=(wrk)
    command -v nginx >/dev/null || missing+=(nginx)
    command -v curl >/dev/null || missing+=(curl)
    command -v jq >/dev/null || missing+=(jq)
    command -v ss >/dev/null || missing+=(iproute2)
    if [[ $PERF == 1 ]] && ! command -v perf >/dev/null; then
        missing+=(linux-perf)
    fi
    ((${#missing[@]})) || return 0
    log "installing ${missing[*]} with apt-get"
    # Keep the packages' system services (nginx on *:80) from starting: a policy-rc.d for
    # the time of the install, unless one exists.
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        POLICY_RC_CREATED=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    if [[ ${POLICY_RC_CREATED:-} == 1 ]]; then
        rm -f /usr/sbin/policy-rc.d
        POLICY_RC_CREATED=
    fi
}

# --- cleanup -----------------------------------------------------------------------------

TMP=
SERVER_PID=
NGINX_PID=
WRK_PID=

stop_pid() { # PID [grace seconds]: SIGTERM, wait (bounded), SIGKILL
    local pid=$1 grace=${2:-5} i
    [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < grace * 10; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    set +e
    stop_pid "$WRK_PID" 2
    # nginx: SIGTERM to the master (fast shutdown) stops its workers too.
    stop_pid "$NGINX_PID" 5
    # A graceful stop (SIGTERM) makes the server stop its pods first.
    stop_pid "$SERVER_PID" 20
    if [[ -n $TMP && -d $TMP/data/pods ]]; then
        # Pods the server could not stop (it was killed): their groups, by pid file, when
        # the recorded start time still matches (not a recycled pid).
        local file pid start
        while IFS= read -r file; do
            read -r pid start <"$file" || continue
            [[ $pid =~ ^[0-9]+$ ]] || continue
            if [[ -r /proc/$pid/stat ]] &&
                [[ $(sed 's/^.*) //' "/proc/$pid/stat" | awk '{print $20}') == "$start" ]]; then
                kill -KILL -- "-$pid" 2>/dev/null
            fi
        done < <(find "$TMP/data/pods" -name '*.pid' 2>/dev/null)
    fi
    if [[ ${POLICY_RC_CREATED:-} == 1 ]]; then rm -f /usr/sbin/policy-rc.d; fi
    if ((rc != 0)) && [[ -n $TMP && -f $TMP/server.log ]]; then
        log "last lines of the server log:"
        tail -n 20 "$TMP/server.log" >&2
        if [[ -s $TMP/nginx/logs/error.log ]]; then
            log "last lines of the nginx error log:"
            tail -n 10 "$TMP/nginx/logs/error.log" >&2
        fi
    fi
    [[ -n $TMP ]] && rm -rf "$TMP"
    exit "$rc"
}
trap cleanup EXIT
# Any command that fails unguarded ends the run: say which one.
trap 'log "error: line $LINENO: \"$BASH_COMMAND\" failed (status $?)"' ERR
trap 'exit 130' INT
trap 'exit 143' TERM

install_missing
for tool in wrk nginx curl jq ss; do
    command -v "$tool" >/dev/null || die "$tool is missing after apt-get install"
done
if [[ $PERF == 1 ]] && ! command -v perf >/dev/null; then
    log "warning: perf is not available; skipping the profiles"
    PERF=0
fi

TMP=$(mktemp -d /tmp/switchyard-ingress-bench.XXXXXX)
DATA=$TMP/data
RAW=$TMP/raw
mkdir -p "$DATA" "$RAW" "$TMP/nginx/logs"

sy() { SWITCHYARD_DATA_DIR=$DATA "$BIN" "$@"; }

# Waits until "$@" succeeds, at most $1 seconds (polling every 0.2 s).
wait_for() {
    local seconds=$1 what=$2 deadline
    shift 2
    deadline=$((SECONDS + seconds))
    until "$@" >/dev/null 2>&1; do
        ((SECONDS < deadline)) || die "timed out after ${seconds}s waiting for $what"
        sleep 0.2
    done
}

declare -A TAKEN=()
# Listening ports come from below the ephemeral range (ip_local_port_range), where no
# outgoing connection (wrk, curl, the proxies' upstream connections) can hold them.
EPHEMERAL_START=$(awk '{ print $1 }' /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)
((EPHEMERAL_START > 11000)) || die "the ephemeral port range starts at $EPHEMERAL_START: no room for listeners below it"
free_port() { # VAR: a TCP port nobody listens on, in 10000..EPHEMERAL_START-1
    local port i
    for ((i = 0; i < 200; i++)); do
        port=$((10000 + (RANDOM * 32768 + RANDOM) % (EPHEMERAL_START - 10000)))
        [[ -z ${TAKEN[$port]:-} ]] || continue
        if [[ -z $(ss -Htan "sport = :$port") ]]; then
            TAKEN[$port]=1
            printf -v "$1" '%s' "$port"
            return 0
        fi
    done
    die "no free port found"
}

# GET through URL with Host: bench.local: succeeds on a 200.
http_ok() {
    [[ $(curl -s --max-time 2 -o /dev/null -w '%{http_code}' -H "Host: $HOST" "$1") == 200 ]]
}

# --- switchyard server, the demo pods, Services and the Ingress --------------------------

log "starting switchyard server ($BIN)"
"$BIN" server --data-dir "$DATA" --listen 127.0.0.1:0 --dns-listen 127.0.0.1:0 \
    --ingress-listen 127.0.0.1:0 >"$TMP/server.log" 2>&1 &
SERVER_PID=$!
server_recorded() { jq -e '.address and .ingress' "$DATA/server.json"; }
wait_for 20 "$DATA/server.json with the ingress address" server_recorded
INGRESS_ADDR=$(jq -r .ingress "$DATA/server.json")
[[ $INGRESS_ADDR =~ ^127\.[0-9.]+:[0-9]+$ ]] || die "unexpected ingress address $INGRESS_ADDR"
wait_for 20 "the server's API" sy get ns

# deployment NAME TAG: a Deployment of one demo pod plus its Service (port 80 -> http).
deployment() {
    cat <<EOF
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: $1
  labels: {app: $1}
spec:
  replicas: 1
  selector:
    matchLabels: {app: $1}
  template:
    metadata:
      labels: {app: $1}
    spec:
      containers:
        - name: demo
          image: switchyard/demo:$2
          ports:
            - {name: http, containerPort: 8080}
          readinessProbe:
            httpGet: {path: /healthz, port: http}
            periodSeconds: 1
---
apiVersion: v1
kind: Service
metadata:
  name: $1
spec:
  selector: {app: $1}
  ports:
    - {name: http, port: 80, targetPort: http}
EOF
}

# ingress NAME [ANNOTATIONS-YAML]: host bench.local, / Prefix -> stable:80.
ingress() {
    cat <<EOF
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: $1
  annotations: {${2:-}}
spec:
  ingressClassName: switchyard
  rules:
    - host: $HOST
      http:
        paths:
          - path: /
            pathType: Prefix
            backend:
              service:
                name: ${3:-stable}
                port: {number: 80}
EOF
}

# Both Deployments from the start (an idle canary pod costs nothing): one readiness wait.
{ deployment stable blue; deployment canary green; ingress bench; } | sy apply -f - >/dev/null

pod_ready() { # APP: exactly one Ready pod with an IP
    sy get pods -l "app=$1" -o json | jq -e \
        '[.items[] | select(.status.podIP != null and any(.status.conditions[]?; .type == "Ready" and .status == "True"))] | length == 1'
}
wait_for 60 "the stable pod to be Ready" pod_ready stable
wait_for 60 "the canary pod to be Ready" pod_ready canary
STABLE_IP=$(sy get pods -l app=stable -o json | jq -r '.items[0].status.podIP')
CANARY_IP=$(sy get pods -l app=canary -o json | jq -r '.items[0].status.podIP')
[[ $STABLE_IP =~ ^127\. && $CANARY_IP =~ ^127\. ]] ||
    die "unexpected pod addresses $STABLE_IP, $CANARY_IP (want 127.0.0.0/8)"
DIRECT_URL=http://$STABLE_IP:8080/
INGRESS_URL=http://$INGRESS_ADDR/
wait_for 30 "the ingress on $INGRESS_ADDR to answer Host: $HOST with 200" http_ok "$INGRESS_URL"

# --- nginx: the same upstream pods --------------------------------------------------------

free_port NGINX_PORT
free_port NGINX_CANARY_PORT
# Headers as ingress-nginx sets them (Switchyard's ingress sets the same ones).
# keepalive_requests: nginx's default (1000) would close every client and upstream
# connection after 1000 requests; hyper has no such limit, so both keep their connections
# for the whole run and only the proxying is compared.
cat >"$TMP/nginx/nginx.conf" <<EOF
daemon off;
worker_processes $NGINX_WORKERS;
pid $TMP/nginx/nginx.pid;
error_log $TMP/nginx/logs/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $TMP/nginx/client_body;
    proxy_temp_path $TMP/nginx/proxy;
    fastcgi_temp_path $TMP/nginx/fastcgi;
    uwsgi_temp_path $TMP/nginx/uwsgi;
    scgi_temp_path $TMP/nginx/scgi;
    keepalive_requests 1000000;

    upstream stable {
        server $STABLE_IP:8080;
        keepalive 64;
        keepalive_requests 1000000;
    }
    upstream canary {
        server $CANARY_IP:8080;
        keepalive 64;
        keepalive_requests 1000000;
    }
    # The canary split, per request (\$request_id is random), like canary-weight.
    split_clients "\${request_id}" \$bench_pool {
        $CANARY_WEIGHT% canary;
        * stable;
    }

    proxy_http_version 1.1;
    proxy_set_header Connection "";
    proxy_set_header Host \$host;
    proxy_set_header X-Request-ID \$request_id;
    proxy_set_header X-Real-IP \$remote_addr;
    proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
    proxy_set_header X-Forwarded-Host \$host;
    proxy_set_header X-Forwarded-Proto \$scheme;

    server {
        listen 127.0.0.1:$NGINX_PORT;
        server_name $HOST;
        location / { proxy_pass http://stable; }
    }
    server {
        listen 127.0.0.1:$NGINX_CANARY_PORT;
        server_name $HOST;
        location / { proxy_pass http://\$bench_pool; }
    }
}
EOF
NGINX=(nginx -p "$TMP/nginx" -e "$TMP/nginx/logs/error.log" -c "$TMP/nginx/nginx.conf")
"${NGINX[@]}" -t >/dev/null 2>&1 || die "nginx config invalid: $("${NGINX[@]}" -t 2>&1)"
"${NGINX[@]}" >"$TMP/nginx/logs/stdout.log" 2>&1 &
NGINX_PID=$!
NGINX_URL=http://127.0.0.1:$NGINX_PORT/
NGINX_CANARY_URL=http://127.0.0.1:$NGINX_CANARY_PORT/
wait_for 10 "nginx on 127.0.0.1:$NGINX_PORT" http_ok "$NGINX_URL"
wait_for 10 "nginx on 127.0.0.1:$NGINX_CANARY_PORT" http_ok "$NGINX_CANARY_URL"

# Every target must really reach the stable pod.
for url in "$DIRECT_URL" "$INGRESS_URL" "$NGINX_URL"; do
    version=$(curl -s --max-time 2 -D - -o /dev/null -H "Host: $HOST" "$url" |
        tr -d '\r' | awk -F': ' 'tolower($1) == "x-switchyard-version" { print $2 }')
    [[ $version == blue ]] || die "$url answered version '$version', want blue (the stable pod)"
done

log "stable pod $STABLE_IP:8080 (blue), canary pod $CANARY_IP:8080 (green), ingress $INGRESS_ADDR, nginx 127.0.0.1:$NGINX_PORT (canary split on :$NGINX_CANARY_PORT)"

# --- measuring ----------------------------------------------------------------------------

CLK_TCK=$(getconf CLK_TCK)
cpu_ticks_one() { # utime + stime of a process (all its threads), in clock ticks
    sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | awk '{print $12 + $13}'
}
nginx_pids() { # the master and its workers (its children)
    echo "$NGINX_PID"
    ps -o pid= --ppid "$NGINX_PID" 2>/dev/null | tr -d ' ' || true
}
cpu_ticks() { # PID-or-"nginx": ticks, summed over nginx's processes
    local total=0 pid t
    if [[ $1 == nginx ]]; then
        for pid in $(nginx_pids); do
            t=$(cpu_ticks_one "$pid")
            total=$((total + ${t:-0}))
        done
        echo "$total"
    else
        cpu_ticks_one "$1"
    fi
}

# Busy share of all CPUs (percent) over one second, from /proc/stat.
busy_pct() {
    local a b
    a=$(head -n1 /proc/stat)
    sleep 1
    b=$(head -n1 /proc/stat)
    awk -v a="$a" -v b="$b" 'BEGIN {
        split(a, x); split(b, y)
        for (i = 2; i <= 9; i++) total += y[i] - x[i]
        idle = (y[5] - x[5]) + (y[6] - x[6])
        printf "%.0f", total ? 100 * (total - idle) / total : 0
    }'
}

# Other engineers' builds and tests share the machine: before each run, wait (at most
# QUIET_WAIT seconds) until the CPUs are at most QUIET_BUSY percent busy; a run that starts
# on a busier machine is flagged in the results.
QUIET_BUSY=${QUIET_BUSY:-10}
QUIET_WAIT=${QUIET_WAIT:-60}
wait_quiet() { # sets BUSY
    local deadline=$((SECONDS + QUIET_WAIT))
    while :; do
        BUSY=$(busy_pct)
        ((BUSY <= QUIET_BUSY)) && return 0
        if ((SECONDS >= deadline)); then
            log "warning: the machine is still ${BUSY}% busy (other processes); running anyway"
            return 0
        fi
    done
}

# wrk output -> "rps p50_ms p99_ms errors"
parse_wrk() {
    awk '
        function ms(v) {
            if (v ~ /us$/) return substr(v, 1, length(v) - 2) / 1000
            if (v ~ /ms$/) return substr(v, 1, length(v) - 2) + 0
            if (v ~ /m$/) return substr(v, 1, length(v) - 1) * 60000
            if (v ~ /s$/) return substr(v, 1, length(v) - 1) * 1000
            return v + 0
        }
        /^Requests\/sec:/ { rps = $2 }
        $1 == "50%" { p50 = ms($2) }
        $1 == "99%" { p99 = ms($2) }
        /Socket errors:/ { gsub(/,/, ""); errors += $4 + $6 + $8 + $10 }
        /Non-2xx or 3xx responses:/ { errors += $NF }
        END {
            printf "%s %s %s %d\n", rps == "" ? "-" : rps, p50 == "" ? "-" : p50,
                p99 == "" ? "-" : p99, errors
        }
    ' "$1"
}

# The demo app counts the requests to / it has served (the reading request included).
# Prints the count, or nothing (with a warning) when the pod does not answer in 3 tries.
pod_requests() {
    local body try rc
    for ((try = 1; try <= 3; try++)); do
        rc=0
        body=$(curl -sS --max-time 5 "http://$1:8080/" 2>&1) || rc=$?
        if ((rc == 0)) && jq -er .requests <<<"$body" 2>/dev/null; then
            return 0
        fi
        sleep 0.5
    done
    log "warning: cannot read the request counter of $1 (curl exit $rc: ${body:0:200})"
}

# CPU ticks the whole machine spent busy (user, nice, system, irq, softirq, steal).
machine_busy_ticks() { awk 'NR == 1 { print $2 + $3 + $4 + $7 + $8 + $9 }' /proc/stat; }
# CPU ticks of the benchmark's own long-lived processes: the server, its pods, nginx.
ours_ticks() {
    local total=0 pid t
    for pid in "$SERVER_PID" $(ps -o pid= --ppid "$SERVER_PID" 2>/dev/null || true) $(nginx_pids); do
        t=$(cpu_ticks_one "$pid")
        total=$((total + ${t:-0}))
    done
    echo "$total"
}
# CPU ticks of this shell's finished children (wrk, curl), from the `times` builtin (run in
# this shell, not a subshell: a subshell has its own, empty, account).
children_ticks() {
    times >"$RAW/times"
    awk -v hz="$CLK_TCK" 'NR == 2 {
        t = 0
        for (i = 1; i <= 2; i++) { split($i, p, "m"); t += p[1] * 60 + p[2] }
        printf "%d\n", t * hz
    }' "$RAW/times"
}

# run_wrk NAME ROUND PID(or nginx or -) URL: one run; appends a line to $RAW/results:
# name round req/s p50_ms p99_ms errors proxy_cpu_s busy%_before canary_share% other%
# where other% is the share of the machine's CPU that processes outside the benchmark
# (other engineers' builds and tests) used during the run.
run_wrk() {
    local name=$1 round=$2 pid=$3 url=$4 before after cpu out rps p50 p99 errors
    local s0 c0 s1 c1 share=- m0 m1 o0 o1 w0 w1 t0 t1 other
    out=$RAW/$name-round$round.txt
    wait_quiet
    t0=$EPOCHREALTIME m0=$(machine_busy_ticks) o0=$(ours_ticks)
    children_ticks >"$RAW/w0" && w0=$(<"$RAW/w0")
    [[ $pid == - ]] || before=$(cpu_ticks "$pid")
    s0=$(pod_requests "$STABLE_IP")
    c0=$(pod_requests "$CANARY_IP")
    wrk "${WRK_ARGS[@]}" "$url" >"$out" 2>&1 || die "wrk failed for $name: $(cat "$out")"
    s1=$(pod_requests "$STABLE_IP")
    c1=$(pod_requests "$CANARY_IP")
    cpu=-
    if [[ $pid != - ]]; then
        after=$(cpu_ticks "$pid")
        cpu=$(awk -v t=$((after - before)) -v hz="$CLK_TCK" 'BEGIN { printf "%.2f", t / hz }')
    fi
    children_ticks >"$RAW/w1" && w1=$(<"$RAW/w1")
    t1=$EPOCHREALTIME m1=$(machine_busy_ticks) o1=$(ours_ticks)
    other=$(awk -v busy=$((m1 - m0)) -v ours=$((o1 - o0 + w1 - w0)) -v t0="$t0" -v t1="$t1" \
        -v cpus="$(nproc)" -v hz="$CLK_TCK" 'BEGIN {
            o = 100 * (busy - ours) / ((t1 - t0) * cpus * hz)
            printf "%.0f", o < 0 ? 0 : o }')
    # Each pod's delta includes the reading request itself.
    if [[ "$s0 $c0 $s1 $c1" =~ ^[0-9]+\ [0-9]+\ [0-9]+\ [0-9]+$ ]]; then
        share=$(awk -v s=$((s1 - s0 - 1)) -v c=$((c1 - c0 - 1)) \
            'BEGIN { if (s + c > 0) printf "%.2f", 100 * c / (s + c); else print "-" }')
    fi
    read -r rps p50 p99 errors < <(parse_wrk "$out")
    [[ $rps != - && $p99 != - ]] || die "could not parse wrk output for $name: $(cat "$out")"
    ((errors == 0)) || log "warning: $name round $round: $errors socket errors or non-2xx responses"
    LAST_OTHER=$other
    echo "$name $round $rps $p50 $p99 $errors $cpu $BUSY $share $other" >"$RAW/last"
    log "$(printf '%-14s round %d: %8.0f req/s  p50 %6s ms  p99 %6s ms  proxy CPU %5s s  canary %5s%%  (others: %s%% before, %s%% during)' \
        "$name" "$round" "$rps" "$p50" "$p99" "$cpu" "$share" "$BUSY" "$other")"
}

# run_target NAME ROUND PID URL: run_wrk, repeated (at most RETRIES more times) while other
# processes took more than QUIET_BUSY % of the CPUs during the run; the least disturbed
# attempt counts.
RETRIES=${RETRIES:-2}
run_target() {
    local attempt best=
    for ((attempt = 0; attempt <= RETRIES; attempt++)); do
        run_wrk "$@"
        if [[ -z $best ]] || ((LAST_OTHER < best)); then
            best=$LAST_OTHER
            cp "$RAW/last" "$RAW/best"
        fi
        ((LAST_OTHER <= QUIET_BUSY)) && break
        ((attempt < RETRIES)) && log "  disturbed by other processes (${LAST_OTHER}% of the CPUs): running it again"
    done
    cat "$RAW/best" >>"$RAW/results"
}

target_url() {
    case $1 in
    direct | canary-direct) echo "$DIRECT_URL" ;;
    ingress | canary-ingress) echo "$INGRESS_URL" ;;
    nginx) echo "$NGINX_URL" ;;
    canary-nginx) echo "$NGINX_CANARY_URL" ;;
    esac
}
target_pid() {
    case $1 in
    *ingress) echo "$SERVER_PID" ;;
    *nginx) echo nginx ;;
    *) echo - ;;
    esac
}

# measure PREFIX: ROUNDS rounds over the three targets, the order rotated so that in 3
# rounds each target runs first, second and third once.
TARGETS=(direct ingress nginx)
measure() {
    local prefix=$1 round k t
    for ((round = 1; round <= ROUNDS; round++)); do
        for ((k = 0; k < 3; k++)); do
            t=$prefix${TARGETS[$(((round - 1 + k) % 3))]}
            run_target "$t" "$round" "$(target_pid "$t")" "$(target_url "$t")"
        done
    done
}

# canary_check NAME URL: CHECK_REQUESTS requests with one curl over one keep-alive
# connection, counted by their X-Switchyard-Version header; appends "name blue green other"
# to $RAW/canary-check.
canary_check() {
    local name=$1 url=$2 out=$RAW/check-$1.txt urls=$RAW/check-urls.txt i blue green total statuses
    for ((i = 0; i < CHECK_REQUESTS; i++)); do printf 'url = "%s"\n' "$url"; done >"$urls"
    curl -s --max-time 120 -D - -H "Host: $HOST" -K "$urls" >"$out" ||
        die "curl (canary check) failed for $name"
    # Bodies have no trailing newline: a status line may follow one on the same line.
    statuses=$(grep -aoE 'HTTP/1\.1 [0-9]{3}' "$out" | sort | uniq -c | awk '{ printf "%s%s x %s", sep, $1, $3; sep = ", " }')
    blue=$(tr -d '\r' <"$out" | grep -aic '^x-switchyard-version: blue$' || true)
    green=$(tr -d '\r' <"$out" | grep -aic '^x-switchyard-version: green$' || true)
    total=$(grep -aoE 'HTTP/1\.1 [0-9]{3}' "$out" | wc -l)
    ((total == CHECK_REQUESTS)) ||
        die "canary check $name: $total responses, want $CHECK_REQUESTS ($statuses)"
    [[ $statuses == "$CHECK_REQUESTS x 200" ]] || log "warning: canary check $name: statuses $statuses"
    echo "$name $blue $green $((total - blue - green))" >>"$RAW/canary-check"
    log "canary check $name: $blue blue, $green green, $((total - blue - green)) other of $total"
}

: >"$RAW/results"
: >"$RAW/canary-check"
WRK_ARGS=(-t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency -H "Host: $HOST")

log "warm-up (2 s per target, not counted)"
for url in "$DIRECT_URL" "$INGRESS_URL" "$NGINX_URL"; do
    wrk -t"$THREADS" -c"$CONNECTIONS" -d2s -H "Host: $HOST" "$url" >/dev/null
done

log "1. plain routing: wrk ${WRK_ARGS[*]} URL, $ROUNDS rounds"
measure ""

log "2. adding the Ingress bench-canary (canary-weight \"$CANARY_WEIGHT\")"
ingress bench-canary "nginx.ingress.kubernetes.io/canary: \"true\", nginx.ingress.kubernetes.io/canary-weight: \"$CANARY_WEIGHT\"" canary |
    sy apply -f - >/dev/null
# The canary route is live once green answers appear (bounded: 30 s of 100-request batches).
canary_live() {
    local -a urls=()
    local i
    for ((i = 0; i < 100; i++)); do urls+=("$INGRESS_URL"); done
    curl -s --max-time 5 -H "Host: $HOST" "${urls[@]}" | grep -q '"version":"green"'
}
wait_for 30 "the ingress to send canary traffic to the green pod" canary_live
canary_check ingress "$INGRESS_URL"
canary_check nginx "$NGINX_CANARY_URL"
log "warm-up (2 s per target, not counted)"
for url in "$INGRESS_URL" "$NGINX_CANARY_URL"; do
    wrk -t"$THREADS" -c"$CONNECTIONS" -d2s -H "Host: $HOST" "$url" >/dev/null
done
log "2. ${CANARY_WEIGHT}% canary: wrk ${WRK_ARGS[*]} URL, $ROUNDS rounds"
measure canary-

kill -0 "$SERVER_PID" 2>/dev/null || die "the switchyard server died during the runs"
kill -0 "$NGINX_PID" 2>/dev/null || die "nginx died during the runs"

# --- optional profiles ----------------------------------------------------------------------

# profile NAME PID-or-nginx URL: under the benchmark's load (plain routing), `perf stat`
# of the proxy's processes for PROFILE_SECONDS, reported per request (requests counted by
# the stable pod over the same window), then `perf record` (self symbols, no call graphs:
# the release build has no frame pointers) for PROFILE_SECONDS more.
PROFILE_SECONDS=8
PERF_EVENTS=task-clock,context-switches,cpu-migrations,sched:sched_wakeup,raw_syscalls:sys_enter,syscalls:sys_enter_futex,syscalls:sys_enter_epoll_wait
profile() {
    local name=$1 target=$2 url=$3 pids dir=$RAW/perf s0 s1
    mkdir -p "$dir"
    if [[ $target == nginx ]]; then pids=$(nginx_pids | paste -sd,); else pids=$target; fi
    wrk -t"$THREADS" -c"$CONNECTIONS" -d$((2 * PROFILE_SECONDS + 4))s -H "Host: $HOST" "$url" >"$dir/$name-wrk.txt" 2>&1 &
    WRK_PID=$!
    sleep 1
    s0=$(pod_requests "$STABLE_IP")
    perf stat -x, -e "$PERF_EVENTS" -p "$pids" -o "$dir/$name-stat.csv" -- sleep "$PROFILE_SECONDS" 2>/dev/null ||
        perf stat -x, -e task-clock,context-switches,cpu-migrations -p "$pids" \
            -o "$dir/$name-stat.csv" -- sleep "$PROFILE_SECONDS" 2>/dev/null ||
        log "warning: perf stat failed for $name"
    s1=$(pod_requests "$STABLE_IP")
    perf record -F 999 -p "$pids" -o "$dir/$name.data" -- sleep "$PROFILE_SECONDS" \
        >/dev/null 2>&1 || log "warning: perf record failed for $name"
    wait "$WRK_PID" || true
    WRK_PID=
    {
        echo "== $name: perf stat over ${PROFILE_SECONDS}s, $((s1 - s0 - 1)) requests, per request:"
        awk -F, -v n=$((s1 - s0 - 1)) '$1 ~ /^[0-9.]+$/ && n > 0 {
            if ($3 == "task-clock") printf "   %-32s %8.1f us\n", "CPU (task-clock)", $1 * 1000 / n
            else printf "   %-32s %8.2f\n", $3, $1 / n
        }' "$dir/$name-stat.csv" 2>/dev/null || true
        echo "== $name: top self symbols"
        perf report -i "$dir/$name.data" --no-children --sort dso,symbol --stdio 2>/dev/null |
            grep -vE '^#|^$' | head -n 30 | cut -c1-150 | sed 's/ *$//' || true
        echo "== $name: share by DSO"
        perf report -i "$dir/$name.data" --no-children --sort dso --stdio 2>/dev/null |
            grep -vE '^#|^$' | head -n 8 | sed 's/ *$//' || true
    } >"$dir/$name-summary.txt"
}
if [[ $PERF == 1 ]]; then
    log "profiling both proxies (plain routing, ${PROFILE_SECONDS}s each; not part of the figures)"
    profile ingress "$SERVER_PID" "$INGRESS_URL"
    profile nginx nginx "$NGINX_URL"
fi

# --- summary ------------------------------------------------------------------------------

# median NAME COLUMN (columns: 3 req/s, 4 p50, 5 p99, 6 errors, 7 CPU s, 8 busy% before,
# 9 canary%, 10 others' CPU % during)
median() {
    awk -v n="$1" -v c="$2" '$1 == n && $c != "-" { print $c }' "$RAW/results" | sort -g |
        awk '{ v[NR] = $1 } END { if (NR == 0) print "-"; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
total() { awk -v n="$1" -v c="$2" '$1 == n { s += $c } END { print s + 0 }' "$RAW/results"; }
fmt() { awk -v v="$1" -v f="$2" 'BEGIN { if (v == "-") print "-"; else printf f, v }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b == 0 || a == "-" || b == "-") print "n/a"; else printf "%.2f", a / b }'; }
secs=${DURATION%s}
# Proxy CPU per request, from the sums over all rounds, in microseconds.
cpu_us_per_request() { awk -v cpu="$(total "$1" 7)" -v rps="$(total "$1" 3)" -v s="$secs" \
    'BEGIN { printf "%.1f", cpu * 1e6 / (rps * s) }'; }
row() { # LABEL PREFIX COLUMN FORMAT
    local a b c
    a=$(median "$2direct" "$3")
    b=$(median "$2ingress" "$3")
    c=$(median "$2nginx" "$3")
    echo "| $1 | $(fmt "$a" "$4") | $(fmt "$b" "$4") | $(fmt "$c" "$4") | $(ratio "$b" "$c") |"
}
cpu_row() { # LABEL PREFIX
    local b c
    b=$(cpu_us_per_request "$2ingress")
    c=$(cpu_us_per_request "$2nginx")
    echo "| $1 | | $b µs | $c µs | $(ratio "$b" "$c") |"
}
share_row() {
    local b c
    b=$(median canary-ingress 9)
    c=$(median canary-nginx 9)
    echo "| canary share during the measured runs (pod counters, median) | | $(fmt "$b" '%.2f %%') | $(fmt "$c" '%.2f %%') | |"
}
check_cell() { # NAME: "green/total (x.x %)"
    awk -v n="$1" '$1 == n { t = $2 + $3 + $4; printf "%d/%d = %.1f %%%s", $3, t, 100 * $3 / t, ($4 ? " (" $4 " other)" : "") }' "$RAW/canary-check"
}
errors() { awk -v t="$1" '$1 ~ ("^(canary-)?" t "$") { s += $6 } END { print s + 0 }' "$RAW/results"; }
RUNS=$(wc -l <"$RAW/results")
BUSY_RUNS=$(awk -v q="$QUIET_BUSY" '$8 > q || $10 > q' "$RAW/results" | wc -l)
# Binomial 99% range of the canary count for CHECK_REQUESTS requests at CANARY_WEIGHT %.
RANGE=$(awk -v n="$CHECK_REQUESTS" -v p="$CANARY_WEIGHT" 'BEGIN {
    p /= 100; m = n * p; sd = sqrt(n * p * (1 - p))
    printf "%.1f-%.1f %%", 100 * (m - 2.576 * sd) / n, 100 * (m + 2.576 * sd) / n }')

echo
echo "Per-run results (name round req/s p50_ms p99_ms errors proxy_cpu_s busy%_before canary% others%_during):"
sort -k1,1 -k2,2n "$RAW/results"
echo
echo "Canary checks (name blue green other):"
cat "$RAW/canary-check"
if [[ $PERF == 1 ]]; then
    echo
    cat "$RAW/perf/ingress-summary.txt" "$RAW/perf/nginx-summary.txt"
fi
echo
SWITCHYARD_VERSION=$({ "$BIN" --version 2>/dev/null || true; } | awk '{ v = $NF } END { print v }')
NGINX_VERSION=$({ nginx -v 2>&1 || true; } | sed 's/.*: //')
WRK_VERSION=$({ wrk -v 2>&1 || true; } | awk 'NR == 1 { print $2 }') # wrk -v exits 1
echo "Ingress vs nginx: $(date -u +%Y-%m-%d), $(nproc) cores, switchyard $SWITCHYARD_VERSION (one ingress worker per CPU), $NGINX_VERSION worker_processes $NGINX_WORKERS, wrk $WRK_VERSION"
echo "Medians of $ROUNDS rounds, target order rotated per round: wrk ${WRK_ARGS[*]} URL (keep-alive, ~60-byte JSON responses)."
echo "Runs during which processes outside the benchmark used over ${QUIET_BUSY}% of the CPUs (before or during the run): $BUSY_RUNS of $RUNS."
echo
echo "| measure | direct to the pod | Switchyard ingress | nginx | ingress / nginx |"
echo "| --- | --- | --- | --- | --- |"
row "req/s" "" 3 %.0f
row "p50 latency" "" 4 '%.2f ms'
row "p99 latency" "" 5 '%.2f ms'
cpu_row "proxy CPU per request" ""
row "${CANARY_WEIGHT}% canary: req/s" canary- 3 %.0f
row "${CANARY_WEIGHT}% canary: p50 latency" canary- 4 '%.2f ms'
row "${CANARY_WEIGHT}% canary: p99 latency" canary- 5 '%.2f ms'
cpu_row "${CANARY_WEIGHT}% canary: proxy CPU per request" canary-
share_row
echo "| canary share, $CHECK_REQUESTS counted requests (99 % range $RANGE) | | $(check_cell ingress) | $(check_cell nginx) | |"
echo "| errors (socket + non-2xx, all runs) | $(errors direct) | $(errors ingress) | $(errors nginx) | |"

if [[ -n ${RESULTS_DIR:-} ]]; then
    mkdir -p "$RESULTS_DIR"
    cp -r "$RAW"/. "$RESULTS_DIR"/
    cp "$TMP/nginx/nginx.conf" "$RESULTS_DIR"/
    log "raw wrk outputs, configs and profiles copied to $RESULTS_DIR"
fi
