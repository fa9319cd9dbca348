#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# runs on: the benchmark operator's shell (root; not a test, not registered in meson)
#
# Cluster benchmark on a real etcd (two overpassd, etcd in a management namespace, all
# built with tools/lib/netns.sh + tools/lib/store.sh, as tests/integration/cluster_etcd.sh):
#
# 1. Attach-to-first-packet latency (--attaches N rounds, default 30).
#    A prober container on host2 (perf/lib/prober.py) sends, every 1 ms, as raw frames:
#    an ARP request for TARGET and a UDP datagram to TARGET / 02:42:<TARGET> (overpass
#    derives the MAC from the address). TARGET is known in advance: addresses are
#    handed out lowest-free-first, the prober holds .2, so host1's next attach gets .3
#    (checked against the attach output every round). host1 has no other endpoint in
#    the network, so host2 cannot flood the datagram to host1 as unknown unicast: it
#    only goes out once host2 has learned the endpoint from the store.
#    Per round: a receiver (perf/lib/first_packet.py) is started in the still-empty
#    target namespace (unbound AF_PACKET socket: it sees eth0 as soon as overpassd
#    moves it in, so it is ready before any packet can arrive), then
#      t0 = CLOCK_REALTIME just before `overpass endpoint attach` is exec'd on host1,
#      t1 = when the CLI returns,
#      t_etcd = when a third watcher next to etcd (perf/lib/etcd_watch.py, management
#              namespace) reads the endpoint key's put event: the store write is done
#              and watchers are being told,
#      t_arp = kernel rx timestamp of the first ARP reply the prober gets (host2's
#              dataplane answers ARP from its `addresses` table, learned from the store),
#      t_rx  = kernel rx timestamp of the first prober datagram in the new container.
#    All clocks: CLOCK_REALTIME of the one kernel every namespace shares.
#    first packet = t_rx - t0 covers: the CLI, TAP creation and set-up in the container
#    namespace, the store txn (IP claim) on etcd, etcd's watch delivery to host2, host2's
#    table build + RCU publish, encapsulation, the underlay, host1's local table publish,
#    decap and TAP delivery. ARP is NOT on the datagram's path (static MAC); the ARP
#    column shows when host2 would answer a real container's ARP (same publish).
#    Error bars: the prober period (the packet arrives up to 1 ms after the path is
#    open, more when the prober is descheduled on these shared cores), plus the
#    one-way transit of that packet (reported: t_rx - its send time), plus ~1 ms of
#    fork/exec of the CLI included in t0.
#    Between rounds: detach, then wait until host2 no longer lists the endpoint and the
#    prober's ARP replies have stopped.
#
# 2. Convergence after restart with --endpoints N (default 10000) records in the store.
#    N endpoint records of a fake host (VTEP 198.18.0.200, no host record, persistent
#    keys) are written into one /16 network through etcd's v3 JSON gateway, 128 puts per
#    txn (first measuring how long the running host1 takes to ingest them live). Then,
#    --restarts times (default 3): SIGTERM host1's overpassd, start it again, and poll
#    GET /v1/stats on its API socket every 20 ms (new connection each time) from process
#    start (CLOCK_REALTIME just before the exec) to (i) the first answered request
#    (API ready) and (ii) the first answer with tables.endpoints >= the pre-restart
#    value (N fake + the prober). Error bars: +0..20 ms poll interval + one request.
#
# 3. Attach-to-first-packet again, --attaches-loaded rounds (default 10), with the N
#    endpoints still in the store (both daemons hold them in their tables).
#
# Usage: perf/cluster_bench.sh [--build DIR] [--attaches N] [--endpoints N]
#                              [--restarts N] [--attaches-loaded N] [--json FILE]
# Output: a human table on stdout; with --json FILE also a JSON document.
# shellcheck source-path=SCRIPTDIR disable=SC2317  # helpers are called through ovp_eventually
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
# shellcheck source=../tools/lib/netns.sh
source "$root/tools/lib/netns.sh"
# shellcheck source=../tools/lib/store.sh
source "$root/tools/lib/store.sh"

BUILD_DIR=$root/build
ATTACHES=30
ATTACHES_LOADED=10
ENDPOINTS=10000
RESTARTS=3
JSON_OUT=""
PERIOD_MS=1
usage() { sed -n '/^# Usage:/,/^# Output:/p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }
while [[ $# -gt 0 ]]; do
    case $1 in
        --build) BUILD_DIR=$2; shift 2 ;;
        --attaches) ATTACHES=$2; shift 2 ;;
        --attaches-loaded) ATTACHES_LOADED=$2; shift 2 ;;
        --endpoints) ENDPOINTS=$2; shift 2 ;;
        --restarts) RESTARTS=$2; shift 2 ;;
        --json) JSON_OUT=$2; shift 2 ;;
        -h|--help) usage 0 ;;
        *) echo "unknown option $1" >&2; usage 2 >&2 ;;
    esac
done
for v in ATTACHES ATTACHES_LOADED ENDPOINTS RESTARTS; do
    [[ "${!v}" =~ ^[0-9]+$ ]] || { echo "--${v,,} wants a number" >&2; exit 2; }
done
((ENDPOINTS <= 60000)) || { echo "--endpoints: at most 60000 (one /16 network; table capacity 65536)" >&2; exit 2; }
[[ -z "$JSON_OUT" ]] || JSON_OUT=$(readlink -f "$JSON_OUT")

ovp_init cluster_bench
ovp_etcd_need
ovp_find_bins "$BUILD_DIR"
id=$OVP_ID
R=$OVP_DIR/results
mkdir -p "$R"
# The interpreter itself: a pyenv shim costs ~1.5 s per start on this machine.
PY=$(python3 -c 'import sys; print(sys.executable)') || { echo "no python3" >&2; exit 1; }
U=("$PY" "$here/lib/bench_util.py")
net=bench-net
big="big-net"

# --- the machine --------------------------------------------------------------------
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
cpu_model=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)
ncpu=$(nproc)
dpdk_ver=$(pkg-config --modversion libdpdk 2>/dev/null || echo unknown)
etcd_ver=$("$OVP_ETCD_BIN" --version 2>/dev/null | awk '/etcd Version/ {print $3}')
git_commit=$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)
git_dirty=$(git -C "$root" status --porcelain --untracked-files=no 2>/dev/null | awk '{print $2}' | tr '\n' ' ')
ovpd_mtime=$(date -u -r "$OVPD" +%FT%TZ)
ovp_step "machine: $cpu_model, $ncpu CPUs, load $load_before; DPDK $dpdk_ver, etcd $etcd_ver, commit $git_commit"
[[ -z "$git_dirty" ]] || ovp_warn "working tree has uncommitted changes in: $git_dirty(overpassd built $ovpd_mtime)"

# --- cluster --------------------------------------------------------------------------
ovp_step "etcd in mgmt-$id, host1 + host2 (overpassd ${OVP_DAEMON_ARGS})"
ovp_mgmt_add
ovp_etcd_start
ovp_etcd_wait 20 || ovp_fail "etcd did not become ready"
ovp_etcd_hosts 2
ovp_cli host1 network create --subnet 10.0.9.0/24 "$net" >/dev/null || ovp_fail "network create $net"
ovp_eventually 10 ovp_cli_has host2 "$net" network ls || ovp_fail "host2 does not see $net"

ovp_container_add "prb-$id"
ovp_attach host2 "$net" prober "prb-$id" >/dev/null || ovp_fail "attach prober on host2"
P=${EP_IP[prober]}
# lowest free address after the gateway (.1) and the prober
TARGET=$(python3 -c 'import ipaddress,sys; print(ipaddress.ip_address(sys.argv[1]) + 1)' "$P")
ovp_info "prober on host2: $P (${EP_MAC[prober]}); host1's attaches will get $TARGET"
ovp_eventually 10 ovp_cli_has host1 prober endpoint ls || ovp_fail "host1 does not list the prober"
ovp_bg_in prober "prb-$id" "$PY" "$here/lib/prober.py" eth0 "$P" "${EP_MAC[prober]}" "$TARGET" \
    "$R/prober.events" "$PERIOD_MS" 100
sleep 0.3
ovp_alive prober || ovp_fail "prober died: $(cat "${OVP_LOG[prober]}")"

# --- 1. attach-to-first-packet -------------------------------------------------------
ovp_step "1. attach-to-first-packet: $ATTACHES rounds (prober period ${PERIOD_MS} ms)"
ovp_bg_in etcd-watch "$OVP_MGMT_NS" "$PY" "$here/lib/etcd_watch.py" "$OVP_ETCD_CLIENT_URL" \
    "$OVP_ETCD_PREFIX/overpass/v1/nets/" "/eps/$TARGET" "$R/etcd.events" "$R/watch.ready"
for ((i = 0; i < 500; i++)); do [[ -e "$R/watch.ready" ]] && break; sleep 0.01; done
[[ -e "$R/watch.ready" ]] || ovp_fail "etcd watcher not ready: $(cat "${OVP_LOG[etcd-watch]}")"
ovp_container_add "tgt-$id"
# The first arp_up event at or after T0_NS in the prober's log (empty if none).
arp_up_after() { awk -v t="$1" '$1 == "arp_up" && $2 >= t {print $2; exit}' "$R/prober.events"; }
etcd_put_after() { awk -v t="$1" '$1 == "put" && $2 >= t {print $2; exit}' "$R/etcd.events"; }
arp_is_down() { [[ "$(awk '$1 ~ /^arp_/ {l = $1} END {print l}' "$R/prober.events")" != arp_up ]]; }
host2_lacks_tgt() { ovp_cli_lacks host2 tgt endpoint ls; }
# attach_rounds TAG N: N attach/detach rounds of the target container on host1, results
# (one file per metric, one value per line, rounds.tsv, discarded) in $R/TAG/.
attach_rounds() {
    local tag=$1 n=$2 d=$R/$1 r i t0 t1 rc out rxpid rx arp put
    mkdir -p "$d"
    : >"$d/rounds.tsv"; : >"$d/discarded"
    for ((r = 1; r <= n; r++)); do
        rm -f "$R/ready"
        ovp_bg_in "rx$tag$r" "tgt-$id" "$PY" "$here/lib/first_packet.py" "$R/ready" 10
        rxpid=$OVP_LAST_PID
        for ((i = 0; i < 500; i++)); do [[ -e "$R/ready" ]] && break; sleep 0.01; done
        [[ -e "$R/ready" ]] || ovp_fail "receiver of $tag round $r not ready: $(cat "${OVP_LOG[rx$tag$r]}")"
        t0=${EPOCHREALTIME/[.,]/}
        out=$(ovp_cli host1 endpoint attach --network "$net" --name tgt --netns "tgt-$id" 2>&1)
        rc=$?
        t1=${EPOCHREALTIME/[.,]/}
        [[ $rc -eq 0 ]] || ovp_fail "$tag round $r: attach failed: $out"
        _ovp_parse_attach tgt "$out" || ovp_fail "$tag round $r: attach output: $out"
        wait "$rxpid"
        rx=$(tail -n 1 "${OVP_LOG[rx$tag$r]}")
        arp=$(arp_up_after "${t0}000")
        put=$(etcd_put_after "${t0}000")
        if [[ "${EP_IP[tgt]}" != "$TARGET" ]]; then
            ovp_warn "$tag round $r: attach got ${EP_IP[tgt]}, not $TARGET: round discarded"
            echo "$r" >>"$d/discarded"
        elif [[ "$rx" != *rx_ns* ]]; then
            ovp_warn "$tag round $r: no prober packet in the container within 10 s ($rx): round discarded"
            echo "$r" >>"$d/discarded"
        else
            "$PY" - "$rx" "$t0" "$t1" "${arp:-0}" "$r" "$d" "${put:-0}" <<'EOF'
import json, sys
rx = json.loads(sys.argv[1]); t0 = int(sys.argv[2]) * 1000; t1 = int(sys.argv[3]) * 1000
arp = int(sys.argv[4]); r = sys.argv[5]; R = sys.argv[6]; put = int(sys.argv[7])
ms = lambda ns: "%.3f" % (ns / 1e6)
vals = {"first_packet_ms": ms(rx["rx_ns"] - t0), "attach_cli_ms": ms(t1 - t0),
        "after_cli_ms": ms(rx["rx_ns"] - t1), "transit_ms": ms(rx["rx_ns"] - rx["tx_ns"])}
if arp:
    vals["arp_ms"] = ms(arp - t0)
if put:
    vals["etcd_ms"] = ms(put - t0)
for k, v in vals.items():
    with open("%s/%s" % (R, k), "a") as f:
        f.write(v + "\n")
with open(R + "/rounds.tsv", "a") as f:
    f.write("\t".join([r] + [vals.get(k, "-") for k in
            ("attach_cli_ms", "arp_ms", "first_packet_ms", "after_cli_ms", "transit_ms", "etcd_ms")]) + "\n")
EOF
        fi
        ovp_cli host1 endpoint detach --network "$net" tgt >/dev/null || ovp_fail "$tag round $r: detach failed"
        ovp_eventually 5 host2_lacks_tgt || ovp_fail "$tag round $r: host2 still lists tgt 5 s after the detach"
        ovp_eventually 5 arp_is_down || ovp_fail "$tag round $r: host2 still answers ARP for $TARGET after the detach"
        if ((r % 10 == 0 || r == n)); then
            ovp_info "$tag round $r/$n: $(tail -n 1 "$d/rounds.tsv" | awk '{printf "cli %s ms, arp %s ms, first packet %s ms", $2, $3, $4}')"
        fi
    done
}
attach_rounds empty "$ATTACHES"
ovp_alive prober || ovp_fail "prober died"

# --- 2. convergence after restart with N endpoints ----------------------------------
ovp_step "2. convergence: $ENDPOINTS endpoints of a fake host in $big (10.128.0.0/16), $RESTARTS restarts of host1"
ovp_cli host1 network create --subnet 10.128.0.0/16 "$big" >/dev/null || ovp_fail "network create $big"
names_key=$(printf '%s/overpass/v1/names/%s' "$OVP_ETCD_PREFIX" "$big" | base64 -w0)
big_id=$(ovp_etcd_api /v3/kv/range "{\"key\":\"$names_key\"}" | python3 -c '
import base64, json, sys
v = base64.b64decode(json.load(sys.stdin)["kvs"][0]["value"]).decode()
try:
    v = json.loads(v)
except ValueError:
    pass
print(v if isinstance(v, str) else v.get("id", ""))')
[[ -n "$big_id" ]] || ovp_fail "cannot read the id of $big from etcd"
ovp_eventually 10 ovp_cli_has host2 "$big" network ls || ovp_fail "host2 does not see $big"
base=$("${U[@]}" stats-get "${OVP_SOCK[host1]}" | ovp_json_get endpoints) || ovp_fail "stats of host1"
target=$((base + ENDPOINTS))
ovp_info "$big id $big_id; host1 tables.endpoints $base before, target $target"

# live ingest: poll host1 while the records are written
"${U[@]}" poll "${OVP_SOCK[host1]}" "$target" 20 120 >"$R/ingest.poll" 2>&1 &
ingest_poll=$!
ovp_register_pid "$ingest_poll" ingest-poll
sleep 0.5                                     # the poller is running (python start-up)
t_w=$(date +%s%N)
ip netns exec "$OVP_MGMT_NS" "${U[@]}" put-endpoints "$OVP_ETCD_CLIENT_URL" "$OVP_ETCD_PREFIX" "$big_id" \
    "$ENDPOINTS" 10.128.0.16 "fake-$id" 198.18.0.200 128 >"$R/put.json" 2>&1 \
    || ovp_fail "writing $ENDPOINTS endpoints: $(cat "$R/put.json")"
t_we=$(date +%s%N)
wait "$ingest_poll"
echo "$t_w $t_we" >"$R/ingest.times"
ovp_info "written: $(cat "$R/put.json"); host1 live ingest: $(cat "$R/ingest.poll")"
grep -q '"conv_ns": [0-9]' "$R/ingest.poll" || ovp_fail "host1 did not reach $target endpoints within 120 s of the writes"
ovp_eventually 60 ovp_cli_has host2 "fake$((ENDPOINTS - 1))" endpoint ls || ovp_warn "host2 does not list fake$((ENDPOINTS - 1))"

: >"$R/sock_ms"; : >"$R/api_ms"; : >"$R/conv_ms"; : >"$R/stop_ms"; : >"$R/restarts.tsv"
for ((k = 1; k <= RESTARTS; k++)); do
    ts=$(date +%s%N)
    ovp_daemon_stop host1 30
    rc=$?
    te=$(date +%s%N)
    [[ $rc -eq 0 ]] || ovp_fail "restart $k: overpassd host1 exited with status $rc on SIGTERM"
    echo "$(((te - ts) / 1000))" | awk '{printf "%.3f\n", $1 / 1000}' >>"$R/stop_ms"
    rm -f "${OVP_SOCK[host1]}"
    # the poller runs (and fails to connect) before overpassd starts
    rm -f "$R/poll.ready"
    "${U[@]}" poll "${OVP_SOCK[host1]}" "$target" 20 120 "$R/poll.ready" >"$R/restart$k.poll" 2>&1 &
    poller=$!
    ovp_register_pid "$poller" "poll$k"
    for ((i = 0; i < 500; i++)); do [[ -e "$R/poll.ready" ]] && break; sleep 0.01; done
    t0=$(date +%s%N)
    ovp_store_daemon_start host1 "h1-$id" "host1-$id" 198.18.0.1
    wait "$poller"
    prc=$?
    line=$(cat "$R/restart$k.poll")
    ovp_alive host1 || ovp_fail "restart $k: overpassd host1 died: $line"
    [[ $prc -eq 0 ]] || ovp_fail "restart $k: tables.endpoints did not reach $target within 120 s: $line"
    "$PY" - "$line" "$t0" "$k" "$R" <<'EOF'
import json, sys
d = json.loads(sys.argv[1]); t0 = int(sys.argv[2]); k = sys.argv[3]; R = sys.argv[4]
api = (d["api_ns"] - t0) / 1e6; conv = (d["conv_ns"] - t0) / 1e6
sock = (d["sock_ns"] - t0) / 1e6 if d.get("sock_ns") else -1
open(R + "/sock_ms", "a").write("%.1f\n" % sock)
open(R + "/api_ms", "a").write("%.1f\n" % api)
open(R + "/conv_ms", "a").write("%.1f\n" % conv)
open(R + "/restarts.tsv", "a").write("%s\t%.1f\t%.1f\t%s\t%s\t%s\t%.1f\n" % (
    k, api, conv, d["polls"], d["slowest_answer_ms"], json.dumps(d.get("sync"), separators=(",", ":")), sock))
EOF
    ovp_info "restart $k: $(tail -n 1 "$R/restarts.tsv" | awk '{printf "API ready %s ms, %s endpoints at %s ms (%s polls, slowest answer %s ms)", $2, t, $3, $4, $5}' t="$target")"
done
warn_lines=$(grep -c 'warning' "${OVP_LOG[host1]}" || true)
ovp_info "host1 log: $warn_lines warning lines$( ((warn_lines > 0)) && printf ': %s' "$(grep 'warning' "${OVP_LOG[host1]}" | sort | uniq -c | sort -rn | head -n 3 | tr '\n' ';')")"
cp "${OVP_LOG[host1]}" "$R/host1.log"

# --- 3. attach-to-first-packet again, with the N endpoints in the store ---------------
# Every watch event makes both daemons rebuild their desired state from the whole view.
ovp_step "3. attach-to-first-packet with $ENDPOINTS endpoints in the store: $ATTACHES_LOADED rounds"
attach_rounds loaded "$ATTACHES_LOADED"
ovp_alive prober || ovp_fail "prober died"
ovp_stop prober 5
ovp_stop etcd-watch 5
ovp_info "prober $(tail -n 1 "$R/prober.events") datagrams; host2 drops: $(ovp_drops host2)"

# --- teardown and report --------------------------------------------------------------
for d in host1 host2; do
    ovp_daemon_stop "$d" 30 || ovp_warn "overpassd $d: non-zero exit status on SIGTERM"
done
ovp_etcd_stop 10
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

export cpu_model ncpu dpdk_ver etcd_ver git_commit git_dirty ovpd_mtime load_before load_after
export ATTACHES ATTACHES_LOADED ENDPOINTS RESTARTS PERIOD_MS bad_rounds TARGET OVP_DAEMON_ARGS target
"$PY" - "$R" "$here/lib/bench_util.py" "$JSON_OUT" <<'EOF'
import json, os, subprocess, sys
R, util, out = sys.argv[1], sys.argv[2], sys.argv[3]
E = os.environ
def summ(name):
    r = subprocess.run([sys.executable, util, "summary", os.path.join(R, name)], capture_output=True, text=True)
    return json.loads(r.stdout)
def load(s):
    return [float(x) for x in s.split()]
def attach(tag, n, others):
    d = os.path.join(R, tag)
    m = lambda f: summ(os.path.join(tag, f))
    return {
        "rounds": n, "discarded_rounds": len(open(os.path.join(d, "discarded")).read().split()),
        "other_endpoints_in_store": others,
        "prober_period_ms": float(E["PERIOD_MS"]), "target_ip": E["TARGET"],
        "attach_cli_ms": m("attach_cli_ms"), "endpoint_key_in_etcd_watch_ms": m("etcd_ms"),
        "arp_answered_on_host2_ms": m("arp_ms"), "first_packet_ms": m("first_packet_ms"),
        "first_packet_after_cli_return_ms": m("after_cli_ms"), "first_packet_transit_ms": m("transit_ms"),
        "includes": "CLI exec, TAP creation + container netns set-up, etcd txn (IP claim), etcd watch delivery to "
                    "host2, host2 table build + publish, encap, underlay, host1 local publish, decap, TAP delivery; "
                    "not ARP (static MAC; arp_answered_on_host2_ms shows when host2 answers ARP)",
        "error_bars": "+0..prober period (more if the prober is descheduled) + first_packet_transit_ms; "
                      "t0 includes the CLI's fork/exec; the etcd watch time is read in userspace (upper bound)",
    }
put = json.load(open(os.path.join(R, "put.json")))
ingest = json.loads(open(os.path.join(R, "ingest.poll")).read())
t_w = int(open(os.path.join(R, "ingest.times")).read().split()[0])
restarts = []
for line in open(os.path.join(R, "restarts.tsv")):
    k, api, conv, polls, slow, sync, sock = line.rstrip("\n").split("\t")
    restarts.append({"run": int(k), "socket_file_ms": float(sock), "api_ready_ms": float(api), "endpoints_ready_ms": float(conv),
                     "polls": int(polls), "slowest_answer_ms": float(slow), "sync": json.loads(sync)})
doc = {
    "benchmark": "overpass cluster_bench",
    "machine": {"cpu_model": E["cpu_model"], "nproc": int(E["ncpu"]), "loadavg_before": load(E["load_before"]),
                "loadavg_after": load(E["load_after"]), "kernel": os.uname().release},
    "versions": {"dpdk": E["dpdk_ver"], "etcd": E["etcd_ver"], "git_commit": E["git_commit"],
                 "uncommitted_changes": E["git_dirty"].split(), "overpassd_built": E["ovpd_mtime"],
                 "overpassd_args": E["OVP_DAEMON_ARGS"]},
    "attach_to_first_packet": attach("empty", int(E["ATTACHES"]), 0),
    "attach_to_first_packet_loaded": attach("loaded", int(E["ATTACHES_LOADED"]), int(E["ENDPOINTS"])),
    "convergence": {
        "endpoints": int(E["ENDPOINTS"]), "target_tables_endpoints": int(E["target"]),
        "store_write": put,
        "live_ingest_ms": round((ingest["conv_ns"] - t_w) / 1e6, 1) if ingest.get("conv_ns") else None,
        "live_ingest_note": "running host1: from the start of the writes (wall time of the writes: "
                            "store_write.seconds) to the first stats answer with tables.endpoints >= target",
        "restarts": restarts,
        "socket_file_ms": summ("sock_ms"), "api_ready_ms": summ("api_ms"), "endpoints_ready_ms": summ("conv_ms"), "stop_ms": summ("stop_ms"),
        "poll_interval_ms": 20,
    },
}
c = doc["convergence"]
def row(label, s):
    if not s.get("n"):
        return "  %-44s (no data)" % label
    return "  %-44s %5d %9.2f %9.2f %9.2f %9.2f" % (label, s["n"], s["p50"], s["p90"], s["p99"], s["max"])
print()
print("overpass cluster_bench  commit %s  DPDK %s  etcd %s" % (E["git_commit"], E["dpdk_ver"], E["etcd_ver"]))
print("machine: %s, %s CPUs (shared), load %s -> %s" % (E["cpu_model"], E["ncpu"], E["load_before"], E["load_after"]))
def print_attach(key, title):
    a = doc[key]
    print()
    print("%s, %d rounds (%d discarded), prober every %s ms" % (title, a["rounds"], a["discarded_rounds"], E["PERIOD_MS"]))
    print("  %-44s %5s %9s %9s %9s %9s" % ("(ms from the attach command)", "n", "p50", "p90", "p99", "max"))
    print(row("attach CLI returns", a["attach_cli_ms"]))
    print(row("etcd watch delivers the endpoint key", a["endpoint_key_in_etcd_watch_ms"]))
    print(row("host2 answers ARP for the new address", a["arp_answered_on_host2_ms"]))
    print(row("first packet from host2 in the container", a["first_packet_ms"]))
    print(row("  of which after the CLI returned", a["first_packet_after_cli_return_ms"]))
    print(row("  transit of that packet (error bar)", a["first_packet_transit_ms"]))
print_attach("attach_to_first_packet", "1. attach-to-first-packet")
print()
print("2. convergence with %d endpoints in the store (%d restarts, poll every 20 ms)" % (c["endpoints"], len(restarts)))
print("  store write: %d keys in %d txns, %.2f s; live ingest on the running host1: %s ms" %
      (put["keys"], put["txns"], put["seconds"], c["live_ingest_ms"]))
print("  %-44s %5s %9s %9s %9s %9s" % ("(ms from process start)", "n", "p50", "p90", "p99", "max"))
print(row("API socket file exists", c["socket_file_ms"]))
print(row("API ready (first answered request)", c["api_ready_ms"]))
print(row("tables.endpoints >= %d" % c["target_tables_endpoints"], c["endpoints_ready_ms"]))
print(row("(graceful stop before each restart)", c["stop_ms"]))
for r in restarts:
    print("  run %d: socket %.1f ms, API %.1f ms, endpoints %.1f ms, %d polls, slowest stats answer %.1f ms" %
          (r["run"], r["socket_file_ms"], r["api_ready_ms"], r["endpoints_ready_ms"], r["polls"], r["slowest_answer_ms"]))
print_attach("attach_to_first_packet_loaded", "3. attach-to-first-packet, %s endpoints in the store" % E["ENDPOINTS"])
if out:
    with open(out, "w") as f:
        json.dump(doc, f, indent=2)
        f.write("\n")
    print("\nJSON: " + out)
EOF
rc=$?
ovp_cleanup
ovp_leak_check || exit 1
exit $rc
