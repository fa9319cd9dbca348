#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# runs on: the benchmark operator's shell (root; a benchmark, not a test)
#
# The standard data-plane benchmark set (make bench): generates stores and captures with
# perf/gen_bench.py (cached under --work, default /var/tmp/overpass-bench), runs
# build/perf/dp_bench for each endpoint count with hugepages, prints one table, writes
# perf/results/dp_bench-<UTC time>.json (and dp_bench-latest.json), and plots cycles per
# packet against endpoint count (gnuplot) to perf/results/dp_bench-cycles.png.
#
# Usage: perf/dp_bench.sh [--build DIR] [--work DIR] [--seconds S] [--repeat R]
#                         [--sizes '1000 100000 1000000'] [--out DIR]
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
build=$root/build
work=/var/tmp/overpass-bench
out=$here/results
seconds=2
repeat=3
sizes="1000 100000 1000000"
vteps=64
while [[ $# -gt 0 ]]; do
    case $1 in
        --build) build=$(cd "$2" && pwd); shift 2 ;;
        --work) work=$2; shift 2 ;;
        --seconds) seconds=$2; shift 2 ;;
        --repeat) repeat=$2; shift 2 ;;
        --sizes) sizes=$2; shift 2 ;;
        --out) out=$2; shift 2 ;;
        -h | --help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "dp_bench.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
    esac
done
bench=$build/perf/dp_bench
gen="python3 $here/gen_bench.py"
[[ -x $bench ]] || { echo "dp_bench.sh: $bench not built (ninja -C $build)" >&2; exit 1; }
[[ $(id -u) -eq 0 ]] || { echo "dp_bench.sh: needs root (hugepages)" >&2; exit 1; }

# Hugepages: 2 GB of 2 MB pages (1M endpoints need about 0.5 GB of tables).
if (($(cat /proc/sys/vm/nr_hugepages) < 1024)); then echo 1024 > /proc/sys/vm/nr_hugepages; fi
mkdir -p /dev/hugepages
mountpoint -q /dev/hugepages || mount -t hugetlbfs nodev /dev/hugepages

mkdir -p "$work" "$out"
stamp=$(date -u +%Y%m%dT%H%M%SZ)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/dp_bench.$$.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

# gen KIND N ARGS... -> cached output directory / file
traffic() {  # N SCENARIO SIZE [FLOWS] -> directory
    local d="$work/t-$1-$vteps-$2-$3" flows=()
    if [[ -n ${4:-} ]]; then d+="-f$4"; flows=(--flows "$4"); fi
    [[ -f $d/traffic.json ]] ||
        $gen traffic --endpoints "$1" --vteps $vteps --scenario "$2" --size "$3" "${flows[@]}" --out-dir "$d" >/dev/null
    echo "$d"
}
store() {  # N -> file
    local f="$work/store-$1-$vteps.json"
    [[ -f $f ]] || $gen store --endpoints "$1" --vteps $vteps --out "$f"
    echo "$f"
}

jsons=()
for n in $sizes; do
    args=()
    if [[ $n == "${sizes%% *}" ]]; then
        # The smallest table gets every scenario, the frame sizes and table updates.
        for s in encap decap local bum mixed; do args+=(--scenario "$(traffic "$n" $s 64)"); done
        for b in 512 1450; do
            args+=(--scenario "$(traffic "$n" encap $b)" --label "encap-$b")
            args+=(--scenario "$(traffic "$n" decap $b)" --label "decap-$b")
        done
        args+=(--updates "$seconds")
        # encap-98k's control: the same number of replayed frames (the same floor) to
        # this table's endpoints, so that the largest table's encap-98k can be put
        # against it (the scaling lines of the summary).
        if [[ $sizes == *" "* ]]; then
            args+=(--scenario "$(traffic "$n" encap 64 98304)" --label "encap-98k")
        fi
    else
        for s in encap decap; do args+=(--scenario "$(traffic "$n" $s 64)"); done
        # The largest table once more with 98,304 active destinations (one frame each)
        # instead of 16,384: more than the workers' 65,536-entry endpoint cache holds, so
        # encap pays the endpoints table's lookup. Its floor is higher too: the replayed
        # capture (98,304 mbufs) no longer fits any cache.
        if [[ $n == "${sizes##* }" ]]; then
            args+=(--scenario "$(traffic "$n" encap 64 98304)" --label "encap-98k")
        fi
    fi
    echo "=== $n endpoints"
    "$bench" --store "$(store "$n")" "${args[@]}" --seconds "$seconds" --repeat "$repeat" \
        --file-prefix "dp_bench-$$-$n" --json "$tmp/n$n.json"
    jsons+=("$tmp/n$n.json")
done
# Two workers (as far as 2 cores allow: the main lcore shares CPU 0 with worker 1).
n0=${sizes%% *}
echo "=== 2 workers, $n0 endpoints"
for w in 1 2; do
    "$bench" --store "$(store "$n0")" --scenario "$(traffic "$n0" encap2 64)" --label "encap2-${w}w" --workers $w \
        --seconds "$seconds" --repeat "$repeat" --file-prefix "dp_bench-$$-w$w" --json "$tmp/w$w.json" || true
    [[ -f $tmp/w$w.json ]] && jsons+=("$tmp/w$w.json")
done

result=$out/dp_bench-$stamp.json
python3 - "$result" "${jsons[@]}" <<'EOF'
import json, sys
out, files = sys.argv[1], sys.argv[2:]
docs = [json.load(open(f)) for f in files]
merged = {"machine": docs[0]["machine"], "benches": docs,
          "ok": all(d.get("ok") for d in docs)}
merged["machine"]["load_average_after"] = docs[-1]["machine"]["load_average_after"]
json.dump(merged, open(out, "w"), indent=1)
print("\nsummary (medians; cycles per packet on the worker's CPU)")
print("%-10s %9s %6s | %8s | %9s %8s | %6s %7s | %s" % ("run", "endpoints", "bytes", "floor", "overpass", "Mpps",
                                                          "ratio", "above", "check"))
for d in docs:
    w = d["settings"]["workers"]
    for r in d["runs"]:
        name = r["scenario"] + ("" if w == 1 else "")
        print("%-10s %9d %6d | %8.1f | %9.1f %8.2f | %6.2f %7.1f | %s" % (
            name, r["endpoints"], r["frame_size"], r["floor"]["cycles_per_packet"],
            r["overpass"]["cycles_per_packet"], r["overpass"]["pps"] / 1e6, r["ratio_to_floor"],
            r["cycles_above_floor"], "ok" if r["ok"] else r["problem"]))
# The largest table against the smallest, per packet, for the scenarios both ran.
by = {}
for d in docs:
    if d["settings"]["workers"] == 1:
        for r in d["runs"]:
            by.setdefault(r["scenario"], {})[r["endpoints"]] = r
for name, rs in by.items():
    if len(rs) > 1:
        lo, hi = rs[min(rs)], rs[max(rs)]
        print("scaling: %-9s %d vs %d endpoints: %.2fx the cycles per packet (%.2fx above the floor)" % (
            name, hi["endpoints"], lo["endpoints"],
            hi["overpass"]["cycles_per_packet"] / lo["overpass"]["cycles_per_packet"],
            hi["cycles_above_floor"] / lo["cycles_above_floor"]))
for d in docs:
    t = d["tables"]
    print("memory: %8d endpoints: %6.0f bytes/endpoint (hugepage %d, heap %d, table size %d)" % (
        t["endpoints"], t["bytes_per_endpoint"], t["hugepage_bytes"], t["heap_bytes"], t["table_size"]))
for d in docs:
    if "updates" in d:
        u = d["updates"]
        print("table updates under traffic: %.0f/s, zero loss: %s" % (u["updates_per_sec"], u["zero_loss"]))
m = merged["machine"]
print("machine: %s, TSC %.3f GHz, %s, load average %.2f -> %.2f" % (
    m["cpu_model"], m["tsc_hz"] / 1e9, m["dpdk_version"], m["load_average_before"][0], m["load_average_after"][0]))
EOF
cp "$result" "$out/dp_bench-latest.json"
echo "results: $result"

# cycles/packet vs endpoints (encap and decap, 64-byte frames), with the floor.
python3 - "$result" "$tmp/plot.dat" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
rows = {}
for b in d["benches"]:
    if b["settings"]["workers"] != 1:
        continue
    for r in b["runs"]:
        if r["scenario"] in ("encap", "decap", "encap-98k") and r["frame_size"] == 64:
            rows.setdefault(r["endpoints"], {})[r["scenario"]] = (r["overpass"]["cycles_per_packet"],
                                                                  r["floor"]["cycles_per_packet"])
with open(sys.argv[2], "w") as f:
    for n in sorted(rows):
        e = rows[n].get("encap", (0, 0))
        dd = rows[n].get("decap", (0, 0))
        f.write("%d %.1f %.1f %.1f %.1f\n" % (n, e[0], dd[0], e[1], dd[1]))
with open(sys.argv[2] + ".wide", "w") as f:
    for n in sorted(rows):
        if "encap-98k" in rows[n]:
            f.write("%d %.1f\n" % (n, rows[n]["encap-98k"][0]))
EOF
if command -v gnuplot >/dev/null; then
    gnuplot <<EOF
set terminal pngcairo size 800,560 noenhanced
set output "$out/dp_bench-cycles.png"
set title "overpass worker: TSC cycles per packet vs endpoints (64-byte frames, one worker)"
set xlabel "endpoints in the tables"
set ylabel "cycles per packet"
set logscale x
set xrange [500:2000000]
set yrange [0:*]
set key below
set grid
plot "$tmp/plot.dat" using 1:2 with linespoints lw 2 title "encap", \
     "$tmp/plot.dat" using 1:3 with linespoints lw 2 title "decap", \
     "$tmp/plot.dat" using 1:4 with lines dt 2 title "floor (encap ports)", \
     "$tmp/plot.dat" using 1:5 with lines dt 2 title "floor (decap ports)", \
     "$tmp/plot.dat.wide" using 1:2 with linespoints lw 2 lc rgb "#d55e00" title "encap to 98,304 destinations (replay floor about 2x)", \
     60 with lines lc rgb "#9400d3" dt 3 lw 1.5 title "encap target 60", \
     70 with lines lc rgb "#009e73" dt 3 lw 1.5 title "decap target 70"
EOF
    echo "plot: $out/dp_bench-cycles.png"
else
    echo "dp_bench.sh: gnuplot not installed (tools/install-deps.sh): no plot" >&2
fi
