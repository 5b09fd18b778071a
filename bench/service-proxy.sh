#!/usr/bin/env bash
# Benchmark of Switchyard's user-space service proxy against HAProxy 2.6 in TCP mode.
#
# Starts the real `switchyard server` on a temp data dir with a Deployment of one demo pod
# behind a ClusterIP Service, and HAProxy (generated config, `mode tcp`) in front of the same
# pod, then measures with wrk:
#   - HTTP keep-alive requests: req/s and p50/p99 latency, (a) direct to the pod,
#     (b) through the Service's ClusterIP, (c) through HAProxy;
#   - the same with a new connection per request (`Connection: close`), which adds what a
#     proxy pays per connection (accept, connect upstream, buffers, task);
#   - bulk transfer: MiB/s downloading a 64 MiB file from nginx, direct, through a
#     selector-less Service with a hand-written EndpointSlice, and through HAProxy.
# Each measure runs ROUNDS times with the order of the targets rotated (every target takes
# every position once in 3 rounds); medians are reported, with ratios switchyard/haproxy,
# and the CPU time each proxy process used per request (or per GiB).
#
# Usage (as root, from anywhere; the ClusterIP listens on port 80 of a 127.96.x.y address):
#   cargo build --release -p switchyard && bench/service-proxy.sh
# Environment: SWITCHYARD_BIN (default target/release/switchyard), ROUNDS (3),
#   DURATION (10s), THREADS (2), CONNECTIONS (64), BULK_CONNECTIONS (4),
#   HAPROXY_THREADS (2), RESULTS_DIR (keep the raw wrk outputs there), QUIET_BUSY (10) and
#   QUIET_WAIT (60): before each run, wait up to QUIET_WAIT s for the CPUs to be at most
#   QUIET_BUSY % busy (shared machines); NOISY (10) and RETRIES (2): a run during which
#   other processes used more than NOISY % of the CPUs is repeated up to RETRIES times (the
#   least disturbed attempt is kept), and the summary says how many runs stayed noisy.
# Traffic goes only to 127.0.0.0/8; every wait has a deadline; a trap stops the server (and
# its pods), HAProxy and nginx and removes the temp dir, on success and on failure alike.

set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=${SWITCHYARD_BIN:-$ROOT/target/release/switchyard}
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10s}
THREADS=${THREADS:-2}
CONNECTIONS=${CONNECTIONS:-64}
BULK_CONNECTIONS=${BULK_CONNECTIONS:-4}
HAPROXY_THREADS=${HAPROXY_THREADS:-2}
BULK_MIB=64

exec 3>&2 # the log goes here even from commands whose stderr is silenced
log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&3; }
die() {
    log "error: $*"
    exit 1
}

[[ $EUID -eq 0 ]] || die "run as root: the ClusterIP listens on port 80 (and apt-get installs the tools)"
[[ $DURATION =~ ^[0-9]+s$ ]] || die "DURATION must be in seconds, like 10s"
[[ -x $BIN ]] || die "$BIN not found: build it first with 'cargo build --release -p switchyard'"

# --- tools -------------------------------------------------------------------------------

install_missing() {
    local -a missing=()
    command -v wrk >/dev/null || missing+=(wrk)
    command -v haproxy >/dev/null || missing+=(haproxy)
    command -v nginx >/dev/null || missing+=(nginx)
    command -v curl >/dev/null || missing+=(curl)
    command -v jq >/dev/null || missing+=(jq)
    command -v ss >/dev/null || missing+=(iproute2)
    ((${#missing[@]})) || return 0
    log "installing ${missing[*]} with apt-get"
    # Keep the packages' system services (nginx on *:80 would take the ClusterIP's port)
    # from starting: a policy-rc.d for the time of the install, unless one exists.
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
HAPROXY_PID=
NGINX_PID=

# Start time of a process (clock ticks since boot), to tell it from a recycled pid: pids
# wrap quickly on machines with a small pid_max, and bash reaps exited children at once.
start_time() { # not zombies; nothing for a process that is gone
    sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | awk '$1 != "Z" {print $20}' || true
}
declare -A STARTED=()
started() { STARTED[$1]=$(start_time "$1"); } # PID: remember a child we launched
ours() { [[ -n $1 && -n ${STARTED[$1]:-} && $(start_time "$1") == "${STARTED[$1]}" ]]; }

stop_pid() { # PID [grace seconds]: SIGTERM, wait (bounded), SIGKILL; only our own process
    local pid=$1 grace=${2:-5} i
    ours "$pid" || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < grace * 10; i++)); do
        ours "$pid" || break
        sleep 0.1
    done
    ours "$pid" && kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null || true
}

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    set +e
    stop_pid "$HAPROXY_PID" 5
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
    if ((rc != 0)) && [[ -n $TMP ]]; then
        local f
        for f in server.log nginx/logs/error.log nginx/logs/stdout.log haproxy/haproxy.log; do
            [[ -s $TMP/$f ]] || continue
            log "last lines of $f:"
            tail -n 20 "$TMP/$f" >&2
        done
    fi
    [[ -n $TMP ]] && rm -rf "$TMP"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

install_missing
for tool in wrk haproxy nginx curl jq ss; do
    command -v "$tool" >/dev/null || die "$tool is missing after apt-get install"
done

TMP=$(mktemp -d /tmp/switchyard-bench.XXXXXX)
chmod 755 "$TMP" # nginx workers (user nobody) must reach the served file
DATA=$TMP/data
RAW=$TMP/raw
mkdir -p "$DATA" "$RAW" "$TMP/haproxy" "$TMP/nginx/www" "$TMP/nginx/logs"

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
# Ports below the ephemeral range (where connect() picks source ports) that no socket uses.
read -r EPHEMERAL_LOW _ </proc/sys/net/ipv4/ip_local_port_range
PORT_LOW=10000
((EPHEMERAL_LOW - PORT_LOW >= 1000)) || PORT_LOW=$((EPHEMERAL_LOW / 2))
free_port() { # VAR
    local port i
    for ((i = 0; i < 200; i++)); do
        port=$((PORT_LOW + (RANDOM * 32768 + RANDOM) % (EPHEMERAL_LOW - PORT_LOW)))
        [[ -z ${TAKEN[$port]:-} ]] || continue
        if [[ -z $(ss -Htan "sport = :$port") ]]; then
            TAKEN[$port]=1
            printf -v "$1" '%s' "$port"
            return 0
        fi
    done
    die "no free port found"
}

# --- nginx: the bulk-transfer upstream ----------------------------------------------------

free_port NGINX_PORT
log "generating a ${BULK_MIB} MiB file for nginx"
head -c "$((BULK_MIB * 1024 * 1024))" /dev/urandom >"$TMP/nginx/www/bulk.bin"
chmod -R a+rX "$TMP/nginx/www"
cat >"$TMP/nginx/nginx.conf" <<EOF
daemon off;
worker_processes 1;
pid $TMP/nginx/nginx.pid;
error_log $TMP/nginx/logs/error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    sendfile on;
    tcp_nopush on;
    default_type application/octet-stream;
    client_body_temp_path $TMP/nginx/client_body;
    proxy_temp_path $TMP/nginx/proxy;
    fastcgi_temp_path $TMP/nginx/fastcgi;
    uwsgi_temp_path $TMP/nginx/uwsgi;
    scgi_temp_path $TMP/nginx/scgi;
    server {
        listen 127.0.0.1:$NGINX_PORT;
        root $TMP/nginx/www;
    }
}
EOF
nginx -p "$TMP/nginx" -e "$TMP/nginx/logs/error.log" -c "$TMP/nginx/nginx.conf" -t >/dev/null 2>&1 ||
    die "nginx config invalid: $(nginx -p "$TMP/nginx" -e "$TMP/nginx/logs/error.log" -c "$TMP/nginx/nginx.conf" -t 2>&1)"
nginx -p "$TMP/nginx" -e "$TMP/nginx/logs/error.log" -c "$TMP/nginx/nginx.conf" >"$TMP/nginx/logs/stdout.log" 2>&1 &
NGINX_PID=$!
started "$NGINX_PID"
wait_for 10 "nginx on 127.0.0.1:$NGINX_PORT" curl -sf -o /dev/null -r 0-0 "http://127.0.0.1:$NGINX_PORT/bulk.bin"

# --- switchyard server, the demo pod, the Services ---------------------------------------

log "starting switchyard server ($BIN)"
SERVER_ARGS=(--data-dir "$DATA" --listen 127.0.0.1:0 --dns-listen 127.0.0.1:0 --node-address 127.0.0.1)
# Builds with an ingress serve it on a fixed port by default; this benchmark needs none.
if "$BIN" server --help 2>/dev/null | grep -q -- --no-ingress; then SERVER_ARGS+=(--no-ingress); fi
"$BIN" server "${SERVER_ARGS[@]}" >"$TMP/server.log" 2>&1 &
SERVER_PID=$!
started "$SERVER_PID"
server_up() {
    ours "$SERVER_PID" || die "the switchyard server exited at start"
    sy get ns
}
wait_for 20 "the server's API" server_up

sy apply -f - >/dev/null <<EOF
apiVersion: apps/v1
kind: Deployment
metadata:
  name: bench-web
  labels: {app: bench-web}
spec:
  replicas: 1
  selector:
    matchLabels: {app: bench-web}
  template:
    metadata:
      labels: {app: bench-web}
    spec:
      containers:
        - name: demo
          image: switchyard/demo:blue
          ports:
            - {name: http, containerPort: 8080}
          readinessProbe:
            httpGet: {path: /healthz, port: http}
            periodSeconds: 1
---
apiVersion: v1
kind: Service
metadata:
  name: bench-web
spec:
  type: ClusterIP
  selector: {app: bench-web}
  ports:
    - {name: http, port: 80, targetPort: http}
---
apiVersion: v1
kind: Service
metadata:
  name: bench-bulk
spec:
  type: ClusterIP
  ports:
    - {port: 9000}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: bench-bulk-nginx
  labels:
    kubernetes.io/service-name: bench-bulk
addressType: IPv4
endpoints:
  - addresses: ["127.0.0.1"]
    conditions: {ready: true}
ports:
  - {port: $NGINX_PORT}
EOF

pod_ready() {
    sy get pods -l app=bench-web -o json | jq -e \
        '[.items[] | select(.status.podIP != null and any(.status.conditions[]?; .type == "Ready" and .status == "True"))] | length == 1'
}
wait_for 60 "the demo pod to be Ready" pod_ready
POD_IP=$(sy get pods -l app=bench-web -o json | jq -r '.items[0].status.podIP')
WEB_IP=$(sy get svc bench-web -o json | jq -r '.spec.clusterIP')
BULK_IP=$(sy get svc bench-bulk -o json | jq -r '.spec.clusterIP')
[[ $POD_IP =~ ^127\. && $WEB_IP =~ ^127\. && $BULK_IP =~ ^127\. ]] ||
    die "unexpected addresses: pod $POD_IP, services $WEB_IP $BULK_IP (want 127.0.0.0/8)"
DIRECT_URL=http://$POD_IP:8080/
SWITCHYARD_URL=http://$WEB_IP:80/
clusterip_answers() { curl -sf --max-time 2 -o /dev/null "$SWITCHYARD_URL"; }
deadline=$((SECONDS + 30))
until clusterip_answers 2>/dev/null; do
    if ((SECONDS >= deadline)); then
        # Something on *:80 (a system nginx, say) makes the proxy's listener fail: say what.
        log "listeners on port 80: $(ss -Hltnp 'sport = :80' | head -n 3 | tr '\n' ' ')"
        log "ListenFailed events: $(sy get events -o json 2>/dev/null |
            jq -r '[.items[] | select(.reason == "ListenFailed") | .message] | join("; ")' 2>/dev/null || true)"
        die "timed out after 30s waiting for the ClusterIP $WEB_IP:80"
    fi
    sleep 0.2
done
wait_for 30 "the ClusterIP $BULK_IP:9000" curl -sf --max-time 5 -o /dev/null -r 0-0 "http://$BULK_IP:9000/bulk.bin"

# --- HAProxy 2.6, TCP mode ----------------------------------------------------------------

free_port HAPROXY_WEB_PORT
free_port HAPROXY_BULK_PORT
# nbthread 2: HAProxy's own default on a 2-core machine (one thread per CPU), and the
# same number of worker threads as Switchyard's tokio runtime. maxconn 4096 is 64 times the
# load and needs about 8,200 descriptors (HAProxy refuses to start when it cannot raise
# its descriptor limit to 2 x maxconn, and some machines cap it at 20,000).
cat >"$TMP/haproxy/haproxy.cfg" <<EOF
global
    nbthread $HAPROXY_THREADS
    maxconn 4096

defaults
    mode tcp
    maxconn 4096
    timeout connect 5s
    timeout client 60s
    timeout server 60s

frontend web
    bind 127.0.0.1:$HAPROXY_WEB_PORT
    default_backend web

backend web
    server pod $POD_IP:8080

frontend bulk
    bind 127.0.0.1:$HAPROXY_BULK_PORT
    default_backend bulk

backend bulk
    server nginx 127.0.0.1:$NGINX_PORT
EOF
haproxy -c -q -f "$TMP/haproxy/haproxy.cfg" || die "haproxy config invalid"
haproxy -db -f "$TMP/haproxy/haproxy.cfg" >"$TMP/haproxy/haproxy.log" 2>&1 &
HAPROXY_PID=$!
started "$HAPROXY_PID"
HAPROXY_URL=http://127.0.0.1:$HAPROXY_WEB_PORT/
wait_for 10 "HAProxy on 127.0.0.1:$HAPROXY_WEB_PORT" curl -sf --max-time 2 -o /dev/null "$HAPROXY_URL"

BULK_DIRECT_URL=http://127.0.0.1:$NGINX_PORT/bulk.bin
BULK_SWITCHYARD_URL=http://$BULK_IP:9000/bulk.bin
BULK_HAPROXY_URL=http://127.0.0.1:$HAPROXY_BULK_PORT/bulk.bin

log "pod $POD_IP:8080, ClusterIP $WEB_IP:80, bulk ClusterIP $BULK_IP:9000 -> nginx 127.0.0.1:$NGINX_PORT, HAProxy 127.0.0.1:$HAPROXY_WEB_PORT / :$HAPROXY_BULK_PORT"

# --- measuring ----------------------------------------------------------------------------

CLK_TCK=$(getconf CLK_TCK)
NCPU=$(nproc)

# utime + stime of processes (all their threads), in clock ticks; a process that is gone
# counts 0 (the server is checked separately).
cpu_ticks() {
    local pid
    for pid in "$@"; do
        sed 's/^.*) //' "/proc/$pid/stat" 2>/dev/null || true
    done | awk '{ s += $12 + $13 } END { print s + 0 }'
}
# Busy ticks of the machine: user, nice, system, irq, softirq. Without IRQ time accounting
# (the usual kernel config), a tick in softirq context is charged to the interrupted process
# as system time too, so the machine must count softirq for the two to compare.
machine_ticks() { awk '$1 == "cpu" { print $2 + $3 + $4 + $7 + $8; exit }' /proc/stat; }
children_ticks() { # VAR: CPU of this shell's finished children (wrk), from `times`
    # Not in a command substitution: a subshell's children times start at 0.
    times >"$TMP/times"
    printf -v "$1" '%s' "$(awk -v hz="$CLK_TCK" 'NR == 2 {
        s = 0
        for (i = 1; i <= 2; i++) { split($i, t, /[ms]/); s += t[1] * 60 + t[2] }
        printf "%.0f", s * hz
    }' "$TMP/times")"
}
# Every process of this benchmark but wrk: server, pods, HAProxy, nginx master and worker.
our_pids() {
    local file
    echo "$SERVER_PID" "$HAPROXY_PID" "$NGINX_PID"
    cat "/proc/$NGINX_PID/task/"*/children 2>/dev/null || true
    while IFS= read -r file; do
        awk '{ print $1 }' "$file"
    done < <(find "$DATA/pods" -name '*.pid' 2>/dev/null)
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

# Other engineers' builds and tests may share the machine. Before each run, wait (at most
# QUIET_WAIT seconds) until the CPUs are at most QUIET_BUSY percent busy; during each run,
# measure the CPU that processes other than this benchmark's used (busy time of the machine
# minus that of wrk, server, pods, HAProxy and nginx), in percent of all CPUs: the results
# show it per run.
QUIET_BUSY=${QUIET_BUSY:-10}
QUIET_WAIT=${QUIET_WAIT:-60}
NOISY=${NOISY:-10}
wait_quiet() {
    local deadline=$((SECONDS + QUIET_WAIT)) busy
    while :; do
        busy=$(busy_pct)
        ((busy <= QUIET_BUSY)) && return 0
        if ((SECONDS >= deadline)); then
            log "warning: the machine is still ${busy}% busy (other processes); running anyway"
            return 0
        fi
    done
}

# wrk output -> "rps p50_ms p99_ms mib_per_s errors"
parse_wrk() {
    awk '
        function ms(v) {
            if (v ~ /us$/) return substr(v, 1, length(v) - 2) / 1000
            if (v ~ /ms$/) return substr(v, 1, length(v) - 2) + 0
            if (v ~ /m$/) return substr(v, 1, length(v) - 1) * 60000
            if (v ~ /s$/) return substr(v, 1, length(v) - 1) * 1000
            return v + 0
        }
        function mib(v) {
            if (v ~ /KB$/) return substr(v, 1, length(v) - 2) / 1024
            if (v ~ /MB$/) return substr(v, 1, length(v) - 2) + 0
            if (v ~ /GB$/) return substr(v, 1, length(v) - 2) * 1024
            if (v ~ /TB$/) return substr(v, 1, length(v) - 2) * 1048576
            if (v ~ /B$/) return substr(v, 1, length(v) - 1) / 1048576
            return v + 0
        }
        /^Requests\/sec:/ { rps = $2 }
        /^Transfer\/sec:/ { mibs = mib($2) }
        $1 == "50%" { p50 = ms($2) }
        $1 == "99%" { p99 = ms($2) }
        /Socket errors:/ { gsub(/,/, ""); errors += $4 + $6 + $8 + $10 }
        /Non-2xx or 3xx responses:/ { errors += $NF }
        END {
            # "-" for what this run does not measure (no --latency: no percentiles)
            printf "%s %s %s %s %d\n", rps == "" ? "-" : rps, p50 == "" ? "-" : p50,
                p99 == "" ? "-" : p99, mibs == "" ? "-" : mibs, errors
        }
    ' "$1"
}

# run_wrk NAME ROUND PID(or -) URL WRK-ARGS...: one run; appends a line to $RAW/results:
# name round req/s p50_ms p99_ms MiB/s errors proxy_cpu_s other_processes_cpu_%
# A run during which other processes used more than NOISY % of the CPUs is repeated, at
# most RETRIES times; the attempt with the least foreign load is kept.
RETRIES=${RETRIES:-2}
run_wrk() {
    local name=$1 round=$2 pid=$3 url=$4 out cpu foreign rps p50 p99 mibs errors attempt
    local -a pids
    local m0 o0 w0 p0 m1 o1 w1 p1 start best= best_foreign=
    shift 4
    for ((attempt = 0; attempt <= RETRIES; attempt++)); do
        out=$RAW/$name-round$round-attempt$attempt.txt
        wait_quiet
        read -r -d '' -a pids < <(our_pids) || true
        m0=$(machine_ticks) o0=$(cpu_ticks "${pids[@]}") p0=$(cpu_ticks "${pid/-/}")
        children_ticks w0
        start=$(date +%s.%N)
        wrk "$@" "$url" >"$out" 2>&1 || die "wrk failed for $name: $(cat "$out")"
        children_ticks w1
        p1=$(cpu_ticks "${pid/-/}") o1=$(cpu_ticks "${pids[@]}") m1=$(machine_ticks)
        ours "$SERVER_PID" ||
            die "the switchyard server (pid $SERVER_PID) exited during the $name run: it was signalled or crashed (log: $(tail -n 3 "$TMP/server.log" | tr '\n' ' '))"
        cpu=-
        [[ $pid == - ]] || cpu=$(awk -v t=$((p1 - p0)) -v hz="$CLK_TCK" 'BEGIN { printf "%.2f", t / hz }')
        foreign=$(awk -v t=$(((m1 - m0) - (o1 - o0) - (w1 - w0))) -v hz="$CLK_TCK" -v n="$NCPU" \
            -v start="$start" -v end="$(date +%s.%N)" \
            'BEGIN { f = 100 * t / hz / n / (end - start); printf "%.0f", f < 0 ? 0 : f }')
        read -r rps p50 p99 mibs errors < <(parse_wrk "$out")
        [[ $rps != - && $mibs != - ]] || die "could not parse wrk output for $name: $(cat "$out")"
        ((errors == 0)) || log "warning: $name round $round: $errors socket errors or non-2xx responses"
        log "$(printf '%-16s round %d: %10.0f req/s  p50 %7s ms  p99 %7s ms  %8.1f MiB/s  proxy CPU %5s s  other processes %s%% CPU' \
            "$name" "$round" "$rps" "$p50" "$p99" "$mibs" "$cpu" "$foreign")"
        if [[ -z $best_foreign ]] || ((foreign < best_foreign)); then
            best="$name $round $rps $p50 $p99 $mibs $errors $cpu $foreign"
            best_foreign=$foreign
        fi
        ((foreign <= NOISY)) && break
        ((attempt < RETRIES)) && log "  other processes used ${foreign}% of the CPUs: running it again"
    done
    echo "$best" >>"$RAW/results"
}

: >"$RAW/results"
WRK_HTTP=(-t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency)
WRK_CLOSE=(-t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency -H "Connection: close")
WRK_BULK=(-t1 -c"$BULK_CONNECTIONS" -d"$DURATION" --timeout 30s)

log "warm-up (2 s per target, not counted)"
for url in "$DIRECT_URL" "$SWITCHYARD_URL" "$HAPROXY_URL"; do
    wrk -t"$THREADS" -c"$CONNECTIONS" -d2s "$url" >/dev/null
done

target_url() {
    case $1 in
    direct | close-direct) echo "$DIRECT_URL" ;;
    switchyard | close-switchyard) echo "$SWITCHYARD_URL" ;;
    haproxy | close-haproxy) echo "$HAPROXY_URL" ;;
    bulk-direct) echo "$BULK_DIRECT_URL" ;;
    bulk-switchyard) echo "$BULK_SWITCHYARD_URL" ;;
    bulk-haproxy) echo "$BULK_HAPROXY_URL" ;;
    esac
}
target_pid() {
    case $1 in
    *switchyard) echo "$SERVER_PID" ;;
    *haproxy) echo "$HAPROXY_PID" ;;
    *) echo - ;;
    esac
}

# measure PREFIX WRK-ARGS...: ROUNDS rounds over the three targets, the order rotated so
# that in 3 rounds each target runs first, second and third once.
TARGETS=(direct switchyard haproxy)
measure() {
    local prefix=$1 round k t
    shift
    for ((round = 1; round <= ROUNDS; round++)); do
        for ((k = 0; k < 3; k++)); do
            t=$prefix${TARGETS[$(((round - 1 + k) % 3))]}
            run_wrk "$t" "$round" "$(target_pid "$t")" "$(target_url "$t")" "$@"
        done
    done
}

log "HTTP keep-alive: wrk ${WRK_HTTP[*]} URL, $ROUNDS rounds"
measure "" "${WRK_HTTP[@]}"
log "HTTP, a new connection per request: wrk ${WRK_CLOSE[*]} URL, $ROUNDS rounds"
measure close- "${WRK_CLOSE[@]}"
log "bulk transfer of a ${BULK_MIB} MiB file: wrk ${WRK_BULK[*]} URL, $ROUNDS rounds"
measure bulk- "${WRK_BULK[@]}"

ours "$SERVER_PID" || die "the switchyard server died during the runs"
ours "$HAPROXY_PID" || die "haproxy died during the runs"

# --- summary ------------------------------------------------------------------------------

# median NAME COLUMN (columns: 3 req/s, 4 p50, 5 p99, 6 MiB/s, 7 errors, 8 CPU s, 9 other %)
median_of() { sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
median() { awk -v n="$1" -v c="$2" '$1 == n { print $c }' "$RAW/results" | median_of; }
fmt() { awk -v v="$1" -v f="$2" 'BEGIN { printf f, v }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b == 0) print "n/a"; else printf "%.2f", a / b }'; }
# Proxy CPU per unit of work, the median over the rounds of each run's figure:
# microseconds per request, and CPU seconds per GiB moved.
secs=${DURATION%s}
cpu_us_per_request() {
    awk -v n="$1" -v s="$secs" '$1 == n { print $8 * 1e6 / ($3 * s) }' "$RAW/results" |
        median_of | awk '{ printf "%.1f", $1 }'
}
cpu_s_per_gib() {
    awk -v n="$1" -v s="$secs" '$1 == n { print $8 / ($6 * s / 1024) }' "$RAW/results" |
        median_of | awk '{ printf "%.2f", $1 }'
}
row() { # LABEL PREFIX COLUMN FORMAT
    local a b c
    a=$(median "$2direct" "$3")
    b=$(median "$2switchyard" "$3")
    c=$(median "$2haproxy" "$3")
    echo "| $1 | $(fmt "$a" "$4") | $(fmt "$b" "$4") | $(fmt "$c" "$4") | $(ratio "$b" "$c") |"
}
cpu_row() { # LABEL PREFIX FUNCTION UNIT
    local b c
    b=$($3 "$2switchyard")
    c=$($3 "$2haproxy")
    echo "| $1 | | $b $4 | $c $4 | $(ratio "$b" "$c") |"
}
errors() { awk -v t="$1" '$1 ~ ("^(close-|bulk-)?" t "$") { s += $7 } END { print s + 0 }' "$RAW/results"; }
RUNS=$(wc -l <"$RAW/results")
NOISY_RUNS=$(awk -v q="$NOISY" '$9 > q' "$RAW/results" | wc -l)
MAX_FOREIGN=$(awk '$9 > m { m = $9 } END { print m + 0 }' "$RAW/results")

echo
echo "Per-run results (name round req/s p50_ms p99_ms MiB/s errors proxy_cpu_s other_processes_cpu_%):"
sort -k1,1 -k2,2n "$RAW/results"
echo
echo "Service proxy vs HAProxy: $(date -u +%Y-%m-%d), $(nproc) cores, switchyard $("$BIN" --version 2>/dev/null | awk '{print $NF}'), $(haproxy -v | head -n1 | awk '{print $1, $3}') nbthread $HAPROXY_THREADS, $(nginx -v 2>&1 | sed 's/.*: //'), wrk $(wrk -v 2>&1 | head -n1 | awk '{print $2}')"
echo "Medians of $ROUNDS rounds, target order rotated per round. Keep-alive: wrk ${WRK_HTTP[*]} URL;"
echo "new connection per request: the same plus -H 'Connection: close'; bulk: wrk ${WRK_BULK[*]} URL (${BULK_MIB} MiB file from nginx)."
echo "Runs during which other processes used over ${NOISY}% of the CPUs: $NOISY_RUNS of $RUNS (at most ${MAX_FOREIGN}%)."
echo
echo "| measure | direct (no proxy) | Switchyard ClusterIP | HAProxy 2.6 tcp | switchyard / haproxy |"
echo "| --- | --- | --- | --- | --- |"
row "keep-alive req/s" "" 3 %.0f
row "keep-alive p50 latency" "" 4 '%.2f ms'
row "keep-alive p99 latency" "" 5 '%.2f ms'
cpu_row "proxy CPU per keep-alive request" "" cpu_us_per_request µs
row "new connection per request: req/s" close- 3 %.0f
row "new connection per request: p50" close- 4 '%.2f ms'
row "new connection per request: p99" close- 5 '%.2f ms'
cpu_row "proxy CPU per connection+request" close- cpu_us_per_request µs
row "bulk download MiB/s" bulk- 6 %.0f
cpu_row "proxy CPU per GiB moved" bulk- cpu_s_per_gib s
echo "| errors (socket + non-2xx, all runs) | $(errors direct) | $(errors switchyard) | $(errors haproxy) | |"

if [[ -n ${RESULTS_DIR:-} ]]; then
    mkdir -p "$RESULTS_DIR"
    cp "$RAW"/* "$RESULTS_DIR"/
    cp "$TMP/haproxy/haproxy.cfg" "$TMP/nginx/nginx.conf" "$RESULTS_DIR"/
    log "raw wrk outputs and configs copied to $RESULTS_DIR"
fi
