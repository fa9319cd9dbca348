#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# runs on: the test runner (suite 'perf'; not a timing test)
#
# Smoke test of the data-plane benchmark harness: a 1,000-endpoint store and small
# captures of every scenario (perf/gen_bench.py), then `dp_bench --quick` (no hugepages,
# sub-second samples, --check) with table updates under traffic. Fails when the harness
# exits non-zero, reports zero packets or a mis-forward (output count != input count x
# the scenario's fan-out, or any drop), or writes invalid JSON. No number is judged.
# Usage: bench_smoke.sh DP_BENCH GEN_BENCH_PY
set -euo pipefail
bench=$1
gen=$2
dir=$(mktemp -d "${TMPDIR:-/tmp}/bench_smoke.$$.XXXXXX")
trap 'rm -rf "$dir"' EXIT

python3 "$gen" store --endpoints 1000 --vteps 8 --out "$dir/store.json"
args=()
for s in encap decap local bum mixed; do
    python3 "$gen" traffic --scenario "$s" --endpoints 1000 --vteps 8 --flows 512 --out-dir "$dir/$s" >/dev/null
    args+=(--scenario "$dir/$s")
done
python3 "$gen" traffic --scenario encap --endpoints 1000 --vteps 8 --flows 64 --size 1450 --out-dir "$dir/big" >/dev/null
args+=(--scenario "$dir/big" --label encap-1450)

"$bench" --quick --store "$dir/store.json" "${args[@]}" --updates 0.3 \
    --file-prefix "bench_smoke-$$" --json "$dir/out.json"

python3 - "$dir/out.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
bad = []
want = {"encap", "decap", "local", "bum", "mixed", "encap-1450"}
got = {r["scenario"] for r in d["runs"]}
if got != want:
    bad.append("runs %s, expected %s" % (sorted(got), sorted(want)))
for r in d["runs"]:
    for s in r["overpass"]["samples"] + r["floor"]["samples"]:
        if s["rx"] == 0 or s["pps"] <= 0 or s["cycles_per_packet"] <= 0:
            bad.append("%s: no packets measured" % r["scenario"])
    for s in r["overpass"]["samples"]:
        if s["drops"] != 0 or s["tx"] != s["rx"] * r["outputs_per_input"]:
            bad.append("%s: rx %d x %d != tx %d, drops %s" % (r["scenario"], s["rx"], r["outputs_per_input"],
                                                              s["tx"], s["drops_by_reason"]))
    if not r["ok"]:
        bad.append("%s: %s" % (r["scenario"], r["problem"]))
fan = {r["scenario"]: r["outputs_per_input"] for r in d["runs"]}
if fan.get("bum") != 8 + 3:
    bad.append("bum fan-out %s, expected 8 VTEPs + 3 local ports" % fan.get("bum"))
u = d.get("updates")
if not u or u["updates"] == 0 or not u["zero_loss"]:
    bad.append("table updates under traffic: %s" % u)
if d["tables"]["endpoints"] != 1000:
    bad.append("endpoints %s" % d["tables"]["endpoints"])
for k in ("cpu_model", "tsc_hz", "dpdk_version", "load_average_before"):
    if k not in d["machine"]:
        bad.append("machine." + k + " missing")
if bad or not d["ok"]:
    print("bench_smoke: FAIL\n  " + "\n  ".join(bad or ["ok is false"]))
    sys.exit(1)
print("bench_smoke: ok (%d runs, %.0f table updates/s)" % (len(d["runs"]), u["updates_per_sec"]))
PY
