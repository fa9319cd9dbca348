#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Runs the meson test suites of a build directory, one test at a time, and closes with
# one line "N passed, N failed" (", N skipped" when some were skipped), summed from
# meson's summaries: Ok + Expected Fail count as passed; Fail + Unexpected Pass +
# Timeout as failed; Skipped as skipped. Exits non-zero when anything failed.
#
# When a test fails, its name and the lines of its output that say why are printed again
# just before the closing line, so that the tail of a CI log names what failed.
#
# Usage: tests/run-all.sh --build DIR [--suites 'unit dp integration']
#                         [--also DIR:'unit dp' ...] [-- MESON_TEST_ARGS...]
#   without --suites, every suite runs in one meson invocation; each --also adds the
#   given suites of another build directory (the sanitizer build) to the same count.
set -uo pipefail

build=""
suites=""
also=()
extra=()
usage() { sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; }
while [[ $# -gt 0 ]]; do
    case $1 in
        --build) build=${2:-}; shift 2 ;;
        --build=*) build=${1#--build=}; shift ;;
        --suites) suites=${2:-}; shift 2 ;;
        --suites=*) suites=${1#--suites=}; shift ;;
        --also) also+=("${2:-}"); shift 2 ;;
        -h | --help) usage; exit 0 ;;
        --) shift; extra=("$@"); break ;;
        *) echo "run-all.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
    esac
done
[[ -n "$build" ]] || { echo "run-all.sh: --build DIR is required" >&2; exit 2; }

passed=0 failed=0 skipped=0
log=$(mktemp "${TMPDIR:-/tmp}/run-all.$$.XXXXXX")
recap=$(mktemp "${TMPDIR:-/tmp}/run-all-recap.$$.XXXXXX")
failed_names=()
trap 'rm -f "$log" "$recap"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

summary_value() {  # LABEL -> number after "LABEL:" in meson's summary, 0 if absent
    local v
    v=$(grep -E "^$1:[[:space:]]+[0-9]+" "$log" | tail -n 1 | awk -F: '{gsub(/[[:space:]]/, "", $2); print $2}')
    echo "${v:-0}"
}

run_meson() {  # DESCRIPTION [meson test args...]
    local what=$1 rc
    shift
    echo "=== meson test: $what"
    meson test -C "$dir" --print-errorlogs --num-processes 1 "$@" "${extra[@]}" 2>&1 | tee "$log"
    rc=${PIPESTATUS[0]}
    if ! grep -qE '^Ok:[[:space:]]+[0-9]+' "$log"; then
        if [[ $rc -ne 0 ]]; then
            echo "run-all.sh: $what: meson test failed (exit $rc) before running tests" >&2
            failed=$((failed + 1))
        else
            echo "run-all.sh: $what: no tests"
        fi
        return
    fi
    note_failures "$what"
    passed=$((passed + $(summary_value Ok) + $(summary_value 'Expected Fail')))
    failed=$((failed + $(summary_value Fail) + $(summary_value 'Unexpected Pass') + $(summary_value Timeout)))
    skipped=$((skipped + $(summary_value Skipped)))
}

# Appends to $recap, for each failed test of the last meson run (meson-logs/testlog.json):
# a header line, its failure lines (gtest's "Failure" and "[  FAILED  ]", a script's
# "FAIL"/"error") and its last lines; adds its name to failed_names.
note_failures() {  # DESCRIPTION
    local json="$dir/meson-logs/testlog.json" names
    [[ -f "$json" ]] || return 0
    names=$(python3 - "$json" "$1" "$recap" <<'PY'
import json, re, sys
path, what, recap = sys.argv[1:4]
why = re.compile(r"Failure|\[  FAILED  \]|\bFAIL\b|[Ee]rror|Assertion|Sanitizer|timed out")
with open(path) as f, open(recap, "a") as out:
    for line in f:
        try:
            t = json.loads(line)
        except ValueError:
            continue
        if t.get("result") in ("OK", "EXPECTEDFAIL", "SKIP"):
            continue
        lines = (t.get("stdout") or "").splitlines()
        tail = lines[-10:]
        reasons = [l for l in lines[:-10] if why.search(l)][:8]
        out.write("--- failed: %s: %s (%s, exit %s, %.0f s)\n" % (
            what, t.get("name"), t.get("result"), t.get("returncode"), t.get("duration", 0)))
        for l in reasons + (["..."] if reasons else []) + tail:
            out.write("    " + l[:200] + "\n")
        print(t.get("name"))
PY
) || return 0
    while IFS= read -r n; do
        [[ -n "$n" ]] && failed_names+=("${dir}: ${n#*:}")
    done <<<"$names"
}

run_dir() {  # DIR SUITES
    dir=$1
    if [[ ! -f "$dir/build.ninja" ]]; then
        echo "run-all.sh: $dir is not a configured build directory (meson setup $dir)" >&2
        failed=$((failed + 1))
    elif [[ -z "$2" ]]; then
        run_meson "$dir: all suites"
    else
        for s in $2; do
            run_meson "$dir: suite $s" --suite "$s"
        done
    fi
}
run_dir "$build" "$suites"
# An --also build directory holds only what its suites need (e.g. the sanitizer build's
# sanitized-tests target): meson must not try to build the rest.
extra+=(--no-rebuild)
for a in "${also[@]}"; do
    run_dir "${a%%:*}" "${a#*:}"
done

if [[ -s "$recap" ]]; then
    echo "=== failed tests, again (full output above and in each build's meson-logs/)"
    cat "$recap"
    printf 'failed: %s\n' "${failed_names[@]}"
fi
line="$passed passed, $failed failed"
[[ $skipped -gt 0 ]] && line+=", $skipped skipped"
echo "$line"
[[ $failed -eq 0 ]]
