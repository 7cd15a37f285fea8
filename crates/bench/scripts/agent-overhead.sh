#!/usr/bin/env bash
# Host-agent overhead benchmark (issue 4): CPU seconds per hour and resident
# memory of `sonde agent`, `prometheus-node-exporter` scraped every second, and
# `netdata` (Debian packages), each collecting every second, one after the
# other on this machine. Prints a Markdown report (BENCHMARKS.md, "Host agent
# overhead").
#
#   crates/bench/scripts/agent-overhead.sh [--duration 180] [--warmup 20]
#       [--out FILE] [--sonde PATH] [--keep-tmp]
#
# What it does:
# - installs prometheus-node-exporter and netdata if missing (apt-get, with a
#   temporary /usr/sbin/policy-rc.d so the packages start no service; if a
#   service was started all the same, it is stopped and disabled);
# - builds `sonde` (cargo build --release -p sonde-cli, CARGO_TARGET_DIR
#   defaults to ~/.cache/sonde-target) unless --sonde PATH is given;
# - for each system: starts it as a child of this script, waits --warmup
#   seconds, then samples its whole process tree once a second for
#   --duration seconds: CPU = utime+stime+cutime+cstime summed over the tree
#   (/proc/PID/stat, so reaped plugins count too), RSS = VmRSS summed over the
#   tree (/proc/PID/status). Then stops it.
#   (a) `sonde agent --interval 1s` sending OTLP/HTTP to a `sonde serve` on
#       loopback ports (the server is not measured);
#   (b) `prometheus-node-exporter` (default collectors) on a loopback port,
#       scraped once a second by a curl loop asking for gzip like Prometheus
#       does (only node_exporter's process is measured);
#   (c) `netdata -D` with Debian's default netdata.conf plus temporary
#       config/cache/lib/log directories, in a private network namespace
#       (unshare -n, loopback only), DO_NOT_TRACK=1, opted out of statistics.
# Nothing under /etc or /var is changed beyond the package installation.
set -euo pipefail

DURATION=180
WARMUP=20
OUT=""
SONDE_BIN=""
KEEP_TMP=0
API_PORT=${API_PORT:-17170}
OTLP_HTTP_PORT=${OTLP_HTTP_PORT:-17318}
OTLP_GRPC_PORT=${OTLP_GRPC_PORT:-17317}
NODE_PORT=${NODE_PORT:-17100}
NETDATA_PORT=19999 # inside its own network namespace

COMMAND_LINE="crates/bench/scripts/agent-overhead.sh${*:+ $*}"
usage() { sed -n '2,30p' "$0" | sed 's/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
    case "$1" in
        --duration) DURATION=$2; shift 2 ;;
        --warmup) WARMUP=$2; shift 2 ;;
        --out) OUT=$2; shift 2 ;;
        --sonde) SONDE_BIN=$2; shift 2 ;;
        --keep-tmp) KEEP_TMP=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "unknown argument $1" >&2; usage >&2; exit 2 ;;
    esac
done
[ "$(id -u)" = 0 ] || { echo "run as root (apt-get, netdata's user switch, unshare)" >&2; exit 1; }

REPO=$(cd "$(dirname "$0")/../../.." && pwd)
TMP=$(mktemp -d /tmp/agent-overhead.XXXXXX)
chmod 755 "$TMP"
CLK_TCK=$(getconf CLK_TCK)
log() { echo "[agent-overhead] $*" >&2; }

# ---------------------------------------------------------------- cleanup
declare -A CHILDREN=() # pids started by this script and not yet stopped
CREATED_POLICY_RC=0
cleanup() {
    local pid
    for pid in "${!CHILDREN[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${!CHILDREN[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    [ "$CREATED_POLICY_RC" = 1 ] && rm -f /usr/sbin/policy-rc.d
    if [ "$KEEP_TMP" = 1 ]; then log "kept $TMP"; else rm -rf "$TMP"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Stops one started child and whatever of its tree is left.
stop_tree() {
    local root=$1 pids p
    pids=$(tree_pids "$root")
    kill -TERM "$root" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$root" 2>/dev/null || break; sleep 0.2; done
    kill -KILL "$root" 2>/dev/null || true
    wait "$root" 2>/dev/null || true
    unset "CHILDREN[$root]"
    for p in $pids; do
        [ "$p" = "$root" ] && continue
        kill -TERM "$p" 2>/dev/null || true
    done
}

# ---------------------------------------------------------------- install
running_pids() { # pids whose executable is one of the packages' daemons
    local p exe
    for p in /proc/[0-9]*; do
        exe=$(readlink "$p/exe" 2>/dev/null) || continue
        case "$exe" in
            /usr/sbin/netdata|/usr/bin/prometheus-node-exporter|/usr/lib/netdata/plugins.d/*)
                echo "${p#/proc/}" ;;
        esac
    done
}

install_packages() {
    local missing=() pkg before after p
    for pkg in prometheus-node-exporter netdata curl jq; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
    done
    [ ${#missing[@]} = 0 ] && return 0
    log "installing ${missing[*]}"
    before=$(running_pids)
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        CREATED_POLICY_RC=1
    fi
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y --no-install-recommends "${missing[@]}" > "$TMP/apt.log" 2>&1; then
        apt-get update > "$TMP/apt-update.log" 2>&1
        apt-get install -y --no-install-recommends "${missing[@]}" > "$TMP/apt.log" 2>&1 \
            || { cat "$TMP/apt.log" >&2; exit 1; }
    fi
    if [ "$CREATED_POLICY_RC" = 1 ]; then rm -f /usr/sbin/policy-rc.d; CREATED_POLICY_RC=0; fi
    # Services the packages started anyway: stop and disable them.
    if [ -d /run/systemd/system ]; then
        systemctl disable --now netdata.service prometheus-node-exporter.service \
            > /dev/null 2>&1 || true
    fi
    after=$(running_pids)
    for p in $after; do
        if ! grep -qx "$p" <<< "$before"; then
            log "stopping $(tr '\0' ' ' < "/proc/$p/cmdline" 2>/dev/null) (pid $p), started by the package"
            kill -TERM "$p" 2>/dev/null || true
        fi
    done
}

install_packages
if [ -n "$(running_pids)" ]; then
    log "a netdata or node_exporter not started by this script is running (pids: $(running_pids | tr '\n' ' ')): stop it first, it would distort the measurements"
    exit 1
fi

# ---------------------------------------------------------------- sonde
if [ -z "$SONDE_BIN" ]; then
    export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/sonde-target}
    log "building sonde (release) in $CARGO_TARGET_DIR"
    (cd "$REPO" && cargo build --release -p sonde-cli >&2)
    SONDE_BIN=$CARGO_TARGET_DIR/release/sonde
fi
[ -x "$SONDE_BIN" ] || { echo "no sonde binary at $SONDE_BIN" >&2; exit 1; }

# ---------------------------------------------------------------- sampling
# Prints one line per process of the tree rooted at $1:
#   pid ppid own_ticks reaped_children_ticks vmrss_kib comm
tree_snapshot() {
    { cat /proc/[0-9]*/stat 2>/dev/null || true; } | awk -v root="$1" '
    {
        line = $0
        open_p = index(line, "(")
        close_p = length(line)
        while (close_p > 0 && substr(line, close_p, 1) != ")") close_p--
        pid = substr(line, 1, open_p - 2) + 0
        name = substr(line, open_p + 1, close_p - open_p - 1)
        gsub(/ /, "_", name)
        n = split(substr(line, close_p + 2), f, " ")
        # f[1] is field 3 (state): field k is f[k-2]
        ppid[pid] = f[2]; comm[pid] = name
        own[pid] = f[12] + f[13]; reaped[pid] = f[14] + f[15]
        kids[f[2]] = kids[f[2]] " " pid
    }
    END {
        if (!(root in comm)) exit
        queue[1] = root; head = 1; tail = 1
        while (head <= tail) {
            p = queue[head++]
            rss = 0
            file = "/proc/" p "/status"
            while ((getline l < file) > 0) if (l ~ /^VmRSS:/) { split(l, r, " "); rss = r[2] }
            close(file)
            print p, ppid[p], own[p], reaped[p], rss, comm[p]
            m = split(kids[p], c, " ")
            for (i = 1; i <= m; i++) queue[++tail] = c[i]
        }
    }'
}

tree_pids() { tree_snapshot "$1" | awk '{print $1}'; }

now_us() { local t=$EPOCHREALTIME; echo "${t/./}"; }

# Samples the tree of $2 once a second for DURATION seconds, after WARMUP.
# Writes $TMP/$1.samples (t_us total_ticks main_ticks tree_rss_kib
# main_rss_kib procs) and the first/last snapshots $TMP/$1.first/.last.
measure() {
    local name=$1 root=$2 start next i now snap
    log "$name: warming up ${WARMUP}s"
    sleep "$WARMUP"
    kill -0 "$root" 2>/dev/null || { log "$name exited during warm-up"; return 1; }
    log "$name: measuring ${DURATION}s (load average $(cut -d' ' -f1-3 /proc/loadavg))"
    cut -d' ' -f1-3 /proc/loadavg > "$TMP/$name.load0"
    : > "$TMP/$name.samples"
    start=$(now_us)
    for ((i = 0; i <= DURATION; i++)); do
        next=$((start + i * 1000000))
        now=$(now_us)
        if ((next > now)); then
            sleep "$(printf '%d.%06d' $(((next - now) / 1000000)) $(((next - now) % 1000000)))"
        fi
        now=$(now_us)
        snap=$(tree_snapshot "$root")
        [ -n "$snap" ] || { log "$name exited during the measurement"; return 1; }
        ((i == 0)) && echo "$snap" > "$TMP/$name.first"
        ((i == DURATION)) && echo "$snap" > "$TMP/$name.last"
        awk -v t="$now" -v root="$root" '
            { total += $3 + $4; rss += $5; n++ }
            $1 == root { main = $3; mrss = $5 }
            END { print t, total, main, rss, mrss, n }' <<< "$snap" >> "$TMP/$name.samples"
    done
    cut -d' ' -f1-3 /proc/loadavg > "$TMP/$name.load1"
}

# "cpu_s cpu_s_per_hour main_cpu_s_per_hour rss_mean_kib rss_max_kib
#  main_rss_mean main_rss_max procs_max window_s" from the samples.
summarize() {
    awk -v hz="$CLK_TCK" '
        NR == 1 { t0 = $1; c0 = $2; m0 = $3 }
        { t1 = $1; c1 = $2; m1 = $3; rs += $4; if ($4 > rmax) rmax = $4
          ms += $5; if ($5 > mmax) mmax = $5; if ($6 > pmax) pmax = $6; n++ }
        END {
            w = (t1 - t0) / 1e6
            cpu = (c1 - c0) / hz; main = (m1 - m0) / hz
            printf "%.2f %.2f %.2f %.0f %.0f %.0f %.0f %d %.1f\n",
                cpu, cpu / w * 3600, main / w * 3600, rs / n, rmax, ms / n, mmax, pmax, w
        }' "$TMP/$1.samples"
}

# Per process name, CPU seconds per hour over the window, from the first and
# last snapshots: processes in both count their difference, processes born in
# the window all of their time; time of children reaped in the window is
# under "(exited children of NAME)".
breakdown() {
    local window=$1 name=$2
    awk -v hz="$CLK_TCK" -v w="$window" '
        FNR == NR { own0[$1] = $3; reaped0[$1] = $4; next }
        {
            o = $3 - (($1 in own0) ? own0[$1] : 0)
            r = $4 - (($1 in reaped0) ? reaped0[$1] : 0)
            cpu[$6] += o; if (r > 0) cpu["(exited children of " $6 ")"] += r
            rss[$6] += $5; procs[$6]++
        }
        END {
            for (k in cpu) printf "%s\t%.2f\t%d\n", k, cpu[k] / hz / w * 3600, (k in procs) ? procs[k] : 0
        }' "$TMP/$name.first" "$TMP/$name.last" | sort -t$'\t' -k2,2 -g -r
}

wait_http() { # url [netns-pid]
    local url=$1 ns=${2:-}
    for _ in $(seq 100); do
        if [ -n "$ns" ]; then
            nsenter -t "$ns" -n curl -fsS -o /dev/null "$url" 2>/dev/null && return 0
        else
            curl -fsS -o /dev/null "$url" 2>/dev/null && return 0
        fi
        sleep 0.3
    done
    log "no answer from $url"
    return 1
}

# ---------------------------------------------------------------- (a) sonde
log "sonde: starting sonde serve on 127.0.0.1:$API_PORT (OTLP/HTTP :$OTLP_HTTP_PORT)"
mkdir -p "$TMP/sonde-data"
"$SONDE_BIN" serve --data-dir "$TMP/sonde-data" --api-addr "127.0.0.1:$API_PORT" \
    --otlp-http-addr "127.0.0.1:$OTLP_HTTP_PORT" --otlp-grpc-addr "127.0.0.1:$OTLP_GRPC_PORT" \
    > "$TMP/sonde-serve.log" 2>&1 &
SERVE_PID=$!
CHILDREN[$SERVE_PID]=1
wait_http "http://127.0.0.1:$API_PORT/api/v1/status/buildinfo"
AGENT_CMD=("$SONDE_BIN" agent --interval 1s --endpoint "http://127.0.0.1:$OTLP_HTTP_PORT"
    --api "http://127.0.0.1:$API_PORT")
"${AGENT_CMD[@]}" > "$TMP/sonde-agent.log" 2>&1 &
AGENT_PID=$!
CHILDREN[$AGENT_PID]=1
measure sonde "$AGENT_PID"
SONDE_SERIES_LINES=$("$SONDE_BIN" agent --once | wc -l)
SONDE_SERIES=$("$SONDE_BIN" agent --once | grep -vc '^#')
SONDE_STORED=$(curl -fsS "http://127.0.0.1:$API_PORT/api/v1/query" \
    --data-urlencode 'query=count({job="sonde-agent"})' | jq -r '.data.result[0].value[1] // "0"')
stop_tree "$AGENT_PID"
stop_tree "$SERVE_PID"

# ---------------------------------------------------------------- (b) node_exporter
log "node_exporter: starting on 127.0.0.1:$NODE_PORT"
prometheus-node-exporter --web.listen-address="127.0.0.1:$NODE_PORT" \
    > "$TMP/node-exporter.log" 2>&1 &
NODE_PID=$!
CHILDREN[$NODE_PID]=1
NODE_URL="http://127.0.0.1:$NODE_PORT/metrics"
wait_http "$NODE_URL"
(
    # One scrape a second, like Prometheus with scrape_interval: 1s (which
    # asks for gzip); each scrape is its own background curl so a slow one
    # does not shift the next.
    while :; do
        curl -fsS --compressed -o /dev/null --max-time 1 "$NODE_URL" \
            && echo ok >> "$TMP/scrapes" || echo fail >> "$TMP/scrapes" &
        sleep 1
    done
) &
SCRAPER_PID=$!
CHILDREN[$SCRAPER_PID]=1
measure node_exporter "$NODE_PID"
NODE_SERIES=$(curl -fsS "$NODE_URL" | grep -vc '^#')
NODE_SCRAPE_BYTES=$(curl -fsS "$NODE_URL" | wc -c)
NODE_SCRAPE_GZ=$(curl -fsS -H 'Accept-Encoding: gzip' "$NODE_URL" | wc -c)
kill "$SCRAPER_PID" 2>/dev/null || true
wait "$SCRAPER_PID" 2>/dev/null || true
unset "CHILDREN[$SCRAPER_PID]"
sleep 1.5
SCRAPES_OK=$(grep -c ok "$TMP/scrapes" || true)
SCRAPES_FAIL=$(grep -c fail "$TMP/scrapes" || true)
stop_tree "$NODE_PID"

# ---------------------------------------------------------------- (c) netdata
ND=$TMP/netdata
mkdir -p "$ND"/{etc,cache,lib,log,run}
# Debian's /etc/netdata/netdata.conf, plus directories of its own.
{
    if [ -f /etc/netdata/netdata.conf ]; then cat /etc/netdata/netdata.conf; fi
    cat <<EOF

[directories]
	config = $ND/etc
	cache = $ND/cache
	lib = $ND/lib
	log = $ND/log
	lock = $ND/lib/lock
	home = $ND/lib
	registry = $ND/lib/registry
EOF
} > "$ND/netdata.conf"
touch "$ND/etc/.opt-out-from-anonymous-statistics"
chown -R netdata:netdata "$ND"
log "netdata: starting in a private network namespace"
DO_NOT_TRACK=1 unshare -n bash -c \
    "ip link set lo up && exec netdata -D -c '$ND/netdata.conf' -P '$ND/run/netdata.pid'" \
    > "$ND/stdout.log" 2>&1 &
NETDATA_PID=$! # unshare and bash exec, so this is netdata's pid
CHILDREN[$NETDATA_PID]=1
wait_http "http://127.0.0.1:$NETDATA_PORT/api/v1/info" "$NETDATA_PID"
measure netdata "$NETDATA_PID"
nsenter -t "$NETDATA_PID" -n curl -fsS "http://127.0.0.1:$NETDATA_PORT/api/v1/charts" > "$ND/charts.json"
ND_CHARTS=$(jq -r '.charts_count' "$ND/charts.json")
ND_DIMS=$(jq -r '.dimensions_count' "$ND/charts.json")
ND_ALARMS=$(jq -r '.alarms_count' "$ND/charts.json")
ND_UPDATE=$(jq -r '.update_every' "$ND/charts.json")
ND_VERSION=$(netdata -v 2>&1 | head -1)
stop_tree "$NETDATA_PID"

# ---------------------------------------------------------------- report
read -r S_CPU S_CPUH S_MAINH S_RSS S_RSSMAX _ _ S_PROCS S_W <<< "$(summarize sonde)"
read -r N_CPU N_CPUH N_MAINH N_RSS N_RSSMAX _ _ N_PROCS N_W <<< "$(summarize node_exporter)"
read -r D_CPU D_CPUH D_MAINH D_RSS D_RSSMAX D_MRSS D_MRSSMAX D_PROCS D_W <<< "$(summarize netdata)"
mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.3f", a / b; else print "n/a" }'; }
met() { awk -v v="$1" -v t="$2" 'BEGIN { print (v <= t) ? "yes" : "**no**" }'; }
pct() { awk -v c="$1" 'BEGIN { printf "%.2f%%", c / 36 }'; }
NODE_VERSION=$(prometheus-node-exporter --version 2>&1 | head -1)

R_ND=$(ratio "$S_CPUH" "$D_CPUH")
R_NE=$(ratio "$S_CPUH" "$N_CPUH")
LIMIT_KIB=$(awk 'BEGIN { printf "%.0f", 15e6 / 1024 }')

report() {
    echo "Command: \`$COMMAND_LINE\` ($("$SONDE_BIN" --version 2>/dev/null || echo 'sonde ?'), commit $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$REPO" diff --quiet HEAD 2>/dev/null || echo ' with uncommitted changes'); $NODE_VERSION; $ND_VERSION)"
    echo
    echo "Machine: $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')), $(awk '/MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo) memory, kernel $(uname -r); warm-up ${WARMUP} s, window ${DURATION} s per system, one system at a time."
    echo "Load average (1/5/15 min) at the start/end of each window: sonde $(cat "$TMP/sonde.load0") / $(cat "$TMP/sonde.load1"); node_exporter $(cat "$TMP/node_exporter.load0") / $(cat "$TMP/node_exporter.load1"); netdata $(cat "$TMP/netdata.load0") / $(cat "$TMP/netdata.load1")."
    echo
    echo "| system | collects | series / dimensions | window s | CPU s in window | CPU s per hour | % of one core | RSS mean MiB | RSS max MiB | processes |"
    echo "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"
    echo "| sonde agent | every 1 s, OTLP/HTTP push to sonde serve | $SONDE_SERIES | $S_W | $S_CPU | $S_CPUH | $(pct "$S_CPUH") | $(mib "$S_RSS") | $(mib "$S_RSSMAX") | $S_PROCS |"
    echo "| prometheus-node-exporter | scraped every 1 s ($SCRAPES_OK ok, $SCRAPES_FAIL failed) | $NODE_SERIES | $N_W | $N_CPU | $N_CPUH | $(pct "$N_CPUH") | $(mib "$N_RSS") | $(mib "$N_RSSMAX") | $N_PROCS |"
    echo "| netdata, whole tree | every ${ND_UPDATE} s, stores and serves locally | $ND_CHARTS charts, $ND_DIMS dims | $D_W | $D_CPU | $D_CPUH | $(pct "$D_CPUH") | $(mib "$D_RSS") | $(mib "$D_RSSMAX") | $D_PROCS |"
    echo "| netdata, main process | | | | | $D_MAINH | $(pct "$D_MAINH") | $(mib "$D_MRSS") | $(mib "$D_MRSSMAX") | 1 |"
    echo
    echo "netdata's tree by process (CPU s per hour over the window; processes at the end):"
    echo
    echo "| process | CPU s per hour | processes |"
    echo "|---|---:|---:|"
    breakdown "$D_W" netdata | while IFS=$'\t' read -r name cpu n; do
        echo "| $name | $cpu | $n |"
    done
    echo
    echo "| sonde agent vs | target | value | met |"
    echo "|---|---|---:|---|"
    echo "| CPU / netdata's (whole tree) | <= 0.2 | $R_ND | $(met "$R_ND" 0.2) |"
    echo "| CPU / node_exporter's | <= 1 | $R_NE | $(met "$R_NE" 1) |"
    echo "| RSS max | < 15 MB (14.3 MiB) | $(mib "$S_RSSMAX") MiB | $(met "$S_RSSMAX" "$LIMIT_KIB") |"
    echo "| RSS mean | < 15 MB (14.3 MiB) | $(mib "$S_RSS") MiB | $(met "$S_RSS" "$LIMIT_KIB") |"
    echo
    echo "Series: sonde agent --once prints $SONDE_SERIES_LINES lines, $SONDE_SERIES series (the rest are resource lines); sonde serve held $SONDE_STORED series of job=\"sonde-agent\" after the run. node_exporter: $NODE_SERIES series in one scrape ($NODE_SCRAPE_BYTES bytes, $NODE_SCRAPE_GZ gzipped). netdata: $ND_CHARTS charts, $ND_DIMS dimensions, $ND_ALARMS alarms."
}
REPORT=$(report)
echo "$REPORT"
if [ -n "$OUT" ]; then echo "$REPORT" > "$OUT"; log "report written to $OUT"; fi
