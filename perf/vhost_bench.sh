#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# runs on: the benchmark operator's shell (root; a benchmark, not a test)
#
# vhost-user throughput (make bench-vhost; the last step of make bench): a DPDK container
# -> overpass encap -> uplink.
# build/perf/dp_bench runs the real worker with local endpoint 0's container port as a
# vhost-user server port (--vhost-container SOCK; the uplink is net_null); dpdk-testpmd
# (net_virtio_user, --forward-mode=txonly) is the container: it sends one UDP flow of
# 64-byte frames from endpoint 0's MAC/IP to remote endpoint 0 (10.0.0.16), as fast as it
# can. dp_bench's worker is on CPU 1, testpmd's forwarding lcore on CPU 0. --runs times
# (default 3) a fresh pair of processes, each giving --repeat floor/worker sample pairs
# (default 1) of --seconds (default 2): about 8 s per run. Prints a table with the median
# of the runs; writes perf/results/vhost_bench-<UTC time>.json (and vhost_bench-latest.json).
#
# Usage: perf/vhost_bench.sh [--build DIR] [--work DIR] [--seconds S] [--repeat R] [--runs N]
#                            [--endpoints N] [--out DIR] [--no-huge]
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
build=$root/build
work=/var/tmp/overpass-bench
out=$here/results
seconds=2
repeat=1
runs=3
endpoints=1000
vteps=64
huge=1
while [[ $# -gt 0 ]]; do
    case $1 in
        --build) build=$(cd "$2" && pwd); shift 2 ;;
        --work) work=$2; shift 2 ;;
        --seconds) seconds=$2; shift 2 ;;
        --repeat) repeat=$2; shift 2 ;;
        --runs) runs=$2; shift 2 ;;
        --endpoints) endpoints=$2; shift 2 ;;
        --out) out=$2; shift 2 ;;
        --no-huge) huge=0; shift ;;
        -h | --help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "vhost_bench.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
    esac
done
bench=$build/perf/dp_bench
testpmd=${TESTPMD:-$(command -v dpdk-testpmd || true)}
[[ -x $bench ]] || { echo "vhost_bench.sh: $bench not built (ninja -C $build)" >&2; exit 1; }
[[ -x $testpmd ]] || { echo "vhost_bench.sh: dpdk-testpmd not found (Debian package dpdk)" >&2; exit 1; }
[[ $(id -u) -eq 0 ]] || { echo "vhost_bench.sh: needs root (hugepages, vhost-user)" >&2; exit 1; }

# dp_bench (the vhost-user backend) on hugepages as dp_bench.sh sets them up (--in-memory:
# no files left behind). testpmd (the virtio-user driver) must share its memory with the
# backend: with DPDK 22.11 here that works with --no-huge (memfd), not with --in-memory or
# --huge-unlink hugepages (the backend never connects), and plain hugepage files would be
# left in /dev/hugepages whenever testpmd is killed. So the generator runs without hugepages.
if ((huge)); then
    if (($(cat /proc/sys/vm/nr_hugepages) < 1024)); then echo 1024 > /proc/sys/vm/nr_hugepages; fi
    mkdir -p /dev/hugepages
    mountpoint -q /dev/hugepages || mount -t hugetlbfs nodev /dev/hugepages
    dp_mem=()
else
    dp_mem=(--no-huge)
fi
tp_mem=(--no-huge -m 256)

mkdir -p "$work" "$out"
stamp=$(date -u +%Y%m%dT%H%M%SZ)
tmp=$(mktemp -d /tmp/vhost_bench.$$.XXXXXX)   # short: the socket path must stay under 108 bytes
sock=$tmp/vhost.sock
dp_pid=
tp_pid=
stop_pid() {  # PID SECONDS SIGNAL: SIGNAL, then SIGKILL; only a PID we started
    local pid=$1 i
    [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null || return 0
    kill "-$3" "$pid" 2>/dev/null || true
    for ((i = 0; i < $2 * 10; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}
cleanup() {
    stop_pid "$tp_pid" 5 INT
    stop_pid "$dp_pid" 5 TERM
    rm -f "$sock"
    rm -rf "$tmp" "/var/run/dpdk/vhost_bench-dp-$$" "/var/run/dpdk/vhost_bench-tp-$$"
}
trap cleanup EXIT
trap 'exit 143' TERM
trap 'exit 130' INT

store="$work/store-$endpoints-$vteps.json"
[[ -f $store ]] || python3 "$here/gen_bench.py" store --endpoints "$endpoints" --vteps $vteps --out "$store"
# Addresses of perf/gen_bench.py: local endpoint 0 is 10.0.0.2, remote endpoint 0 10.0.0.16,
# MAC 02:42 + the IPv4 address.
src_mac=02:42:0a:00:00:02 src_ip=10.0.0.2
dst_mac=02:42:0a:00:00:10 dst_ip=10.0.0.16

# One run: a fresh dp_bench and a fresh testpmd. RUN -> $tmp/dp-RUN.json, testpmd-RUN.log, load-RUN
one_run() {
    local run=$1 i rc=0
    rm -f "$sock"
    cut -d' ' -f1-3 /proc/loadavg > "$tmp/load-$run"
    # dp_bench: main lcore (control thread) on CPU 0, worker on CPU 1 (its default -l 0-1).
    "$bench" --store "$store" --vhost-container "$sock" --label vhost-encap --seconds "$seconds" \
        --repeat "$repeat" "${dp_mem[@]}" --file-prefix "vhost_bench-dp-$$" --json "$tmp/dp-$run.json" \
        > "$tmp/dp-$run.log" 2>&1 &
    dp_pid=$!
    for ((i = 0; i < 600; i++)); do
        [[ -S $sock ]] && grep -q "vhost: waiting" "$tmp/dp-$run.log" && break
        kill -0 "$dp_pid" 2>/dev/null || break
        sleep 0.1
    done
    if [[ ! -S $sock ]]; then
        stop_pid "$dp_pid" 5 TERM
        dp_pid=
        cat "$tmp/dp-$run.log" >&2
        echo "vhost_bench.sh: no vhost-user socket at $sock" >&2
        return 1
    fi
    # The generator: both testpmd lcores on CPU 0 (its main lcore only prints statistics).
    "$testpmd" --lcores=0@0,1@0 --no-pci "${tp_mem[@]}" --file-prefix "vhost_bench-tp-$$" --log-level='*:warning' \
        "--vdev=net_virtio_user0,path=$sock,queues=1,mac=$src_mac" -- \
        --forward-mode=txonly --auto-start --stats-period 3600 --no-mlockall --nb-cores=1 --rxq=1 --txq=1 \
        --total-num-mbufs=8192 --eth-peer=0,$dst_mac --tx-ip=$src_ip,$dst_ip --tx-udp=9,9 --txpkts=60 \
        < /dev/null > "$tmp/testpmd-$run.log" 2>&1 &
    tp_pid=$!
    wait "$dp_pid" || rc=$?
    dp_pid=
    stop_pid "$tp_pid" 10 INT   # testpmd prints its statistics on SIGINT
    tp_pid=
    rm -f "$sock"
    rm -rf "/var/run/dpdk/vhost_bench-dp-$$" "/var/run/dpdk/vhost_bench-tp-$$"
    cut -d' ' -f1-3 /proc/loadavg >> "$tmp/load-$run"
    grep -E '^(vhost-encap|dp_bench:)' "$tmp/dp-$run.log" || true
    if [[ $rc -ne 0 || ! -f $tmp/dp-$run.json ]]; then
        cat "$tmp/dp-$run.log" >&2
        echo "vhost_bench.sh: dp_bench failed (exit $rc); testpmd's log:" >&2
        tail -30 "$tmp/testpmd-$run.log" >&2
        return 1
    fi
}

echo "=== vhost-user: dpdk-testpmd txonly -> vhost-user -> overpass encap ($endpoints endpoints) -> uplink, $runs runs"
for ((r = 1; r <= runs; r++)); do
    echo "--- run $r"
    one_run "$r"
done

result=$out/vhost_bench-$stamp.json
python3 - "$result" "$tmp" "$runs" "$seconds" "$repeat" <<'EOF'
import json, re, statistics, sys
out, tmp, runs, seconds, repeat = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5])
med = statistics.median
rows = []
for k in range(1, runs + 1):
    d = json.load(open("%s/dp-%d.json" % (tmp, k)))
    log = open("%s/testpmd-%d.log" % (tmp, k), errors="replace").read()
    # testpmd's final "Accumulated forward statistics for all ports" block (printed on SIGINT).
    i = log.rfind("Accumulated forward statistics")
    acc = log[i:] if i >= 0 else ""
    def num(pat):
        m = re.search(pat, acc)
        return int(m.group(1)) if m else None
    load = [[float(x) for x in line.split()] for line in open("%s/load-%d" % (tmp, k))]
    r = d["runs"][0]
    rows.append({"run": k, "load_average_before": load[0], "load_average_after": load[-1],
                 "generator_tx_packets": num(r"TX-packets:\s*(\d+)"),
                 "generator_tx_dropped": num(r"TX-dropped:\s*(\d+)"),
                 "overpass_pps": r["overpass"]["pps"], "overpass_cycles_per_packet": r["overpass"]["cycles_per_packet"],
                 "overpass_on_cpu": med([x["on_cpu"] for x in r["overpass"]["samples"]]),
                 "floor_pps": r["floor"]["pps"], "floor_cycles_per_packet": r["floor"]["cycles_per_packet"],
                 "frame_size": r["frame_size"], "ok": r["ok"], "problem": r["problem"], "dp_bench": d})
first = rows[0]["dp_bench"]
m = dict(first["machine"])
m["load_average_before"] = rows[0]["load_average_before"]
m["load_average_after"] = rows[-1]["load_average_after"]
m["placement"] = ("2 CPUs shared: dp_bench's worker on CPU 1; testpmd's forwarding lcore (and both main "
                  "lcores, which sleep) on CPU 0; every other process on the machine (a concurrent CI job) on both")
summary = {k: med([x[k] for x in rows]) for k in ("overpass_pps", "overpass_cycles_per_packet", "overpass_on_cpu",
                                                   "floor_pps", "floor_cycles_per_packet")}
summary["frame_size"] = rows[0]["frame_size"]
summary["runs"] = runs
summary["ok"] = all(x["ok"] for x in rows)
res = {"bench": "vhost_bench",
       "description": "dpdk-testpmd txonly (net_virtio_user) -> vhost-user (net_vhost) -> overpass worker encap "
                      "-> uplink (net_null)",
       "machine": m,
       "settings": {"store": first["settings"]["store"], "endpoints": first["tables"]["endpoints"],
                    "seconds": seconds, "samples_per_run": repeat, "runs": runs,
                    "dp_bench_hugepages": first["settings"]["hugepages"], "worker_cpu": 1, "generator_cpu": 0,
                    "generator": "dpdk-testpmd --no-pci --no-huge (memfd) --file-prefix vhost_bench-tp-PID "
                                 "--forward-mode=txonly, one UDP flow 10.0.0.2:9 -> 10.0.0.16:9, 60 bytes + FCS"},
       "summary": summary, "runs": rows, "ok": summary["ok"]}
json.dump(res, open(out, "w"), indent=1)
print("\nvhost-user throughput: %d runs (each the median of %d floor/worker sample pairs of %g s)" % (runs, repeat, seconds))
print("Mpps: worker tx on the uplink per wall-clock second; cyc/pkt: busy TSC cycles on the worker's CPU\n")
print("| run | endpoints | frame | floor Mpps | floor cyc/pkt | overpass Mpps | overpass cyc/pkt | worker on CPU | load avg | check |")
print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |")
for x in rows:
    print("| %d | %d | %d | %.2f | %.1f | %.2f | %.1f | %.2f | %.2f -> %.2f | %s |" % (
        x["run"], x["dp_bench"]["tables"]["endpoints"], x["frame_size"], x["floor_pps"] / 1e6,
        x["floor_cycles_per_packet"], x["overpass_pps"] / 1e6, x["overpass_cycles_per_packet"], x["overpass_on_cpu"],
        x["load_average_before"][0], x["load_average_after"][0], "ok" if x["ok"] else x["problem"]))
s = summary
print("| median | | %d | %.2f | %.1f | %.2f | %.1f | %.2f | | %s |" % (
    s["frame_size"], s["floor_pps"] / 1e6, s["floor_cycles_per_packet"], s["overpass_pps"] / 1e6,
    s["overpass_cycles_per_packet"], s["overpass_on_cpu"], "ok" if s["ok"] else "FAILED"))
for x in rows:
    print("generator, run %d: testpmd sent %s packets; %s found the vhost-user ring full" % (
        x["run"], x["generator_tx_packets"], x["generator_tx_dropped"]))
print("machine: %s, %s CPUs, TSC %.3f GHz, %s" % (m["cpu_model"], m["cpus"], m["tsc_hz"] / 1e9, m["dpdk_version"]))
EOF
cp "$result" "$out/vhost_bench-latest.json"
echo "results: $result"
