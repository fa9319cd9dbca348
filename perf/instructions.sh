#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Instructions per packet of the data plane, counted by valgrind (callgrind): unlike
# cycles on a shared VM, the count is the same from run to run for the same binary and
# input, so it can compare two builds on a busy machine. It is not a cycle count: a
# removed instruction that waited on nothing saves little time.
#
# Usage: perf/instructions.sh [--bench BIN] --store STORE.json --scenario DIR [-- DP_BENCH_ARGS...]
#   BIN defaults to build/perf/dp_bench. STORE and DIR are what dp_bench takes (make
#   bench caches them in /var/tmp/overpass-bench). Runs one 1 s sample under callgrind
#   (--no-huge; about a minute) and prints the bursts the worker handled and the
#   instructions per packet of process_burst() (the stages, TX buffering included) and
#   of worker_main() (also the PMDs' receive and transmit).
# Needs valgrind (Debian package valgrind).
set -euo pipefail

bench=build/perf/dp_bench
store="" scenario=""
extra=()
while [[ $# -gt 0 ]]; do
    case $1 in
        --bench) bench=$2; shift 2 ;;
        --store) store=$2; shift 2 ;;
        --scenario) scenario=$2; shift 2 ;;
        -h | --help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        --) shift; extra=("$@"); break ;;
        *) echo "instructions.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
    esac
done
[[ -n "$store" && -n "$scenario" ]] || { echo "instructions.sh: --store and --scenario are required" >&2; exit 2; }
command -v valgrind >/dev/null || { echo "instructions.sh: valgrind is not installed (apt-get install valgrind)" >&2; exit 2; }

out=$(mktemp -d "${TMPDIR:-/tmp}/instructions.XXXXXX")
trap 'rm -rf "$out"' EXIT
valgrind --tool=callgrind --callgrind-out-file="$out/cg" "$bench" --store "$store" --scenario "$scenario" \
    --seconds 1 --repeat 1 --no-huge --file-prefix "instr$$" "${extra[@]}" >"$out/log" 2>&1 ||
    { tail -20 "$out/log" >&2; exit 1; }
callgrind_annotate --tree=caller --inclusive=yes "$out/cg" >"$out/tree" 2>/dev/null

# "<Ir> (<%>)  * <file>:<function>" lines carry a function's inclusive count; the
# caller lines "<Ir>  > <file>:process_burst(...) (<calls>x)" its number of calls.
inclusive() { grep -E "^ *[0-9,]+ .*\* .*$1" "$out/tree" | head -1 | awk '{gsub(",", "", $1); print $1}'; }
bursts=$(grep -E "> .*dp::process_burst.*\(([0-9,]+)x\)" "$out/tree" | head -1 | sed -E 's/.*\(([0-9,]+)x\).*/\1/; s/,//g')
stages=$(inclusive 'dp::process_burst')
worker=$(inclusive 'dp::worker_main')
[[ -n "$bursts" && -n "$stages" && -n "$worker" ]] || { echo "instructions.sh: no worker bursts in the profile" >&2; exit 1; }
# The captures hold thousands of frames and the pcap PMD returns full bursts of 32.
awk -v b="$bursts" -v s="$stages" -v w="$worker" -v name="$(basename "$scenario")" 'BEGIN {
    printf "%s: %d bursts of 32; instructions per packet: process_burst %.1f, worker_main %.1f\n", name, b, s / (b * 32), w / (b * 32) }'
