#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# runs on: the test runner (suite 'ctl'; root)
#
# The store client's deadline against a DNS server that never answers: runs
# store_contract_test's slow_resolver test in private mount and network namespaces
# (unshare), where /etc/resolv.conf names 198.18.53.53 on a veth pair whose far end
# has no address: nobody answers the ARP for it, so the query goes nowhere (the
# resolver gives up after 3 s; the request must not wait that long). Both namespaces end with the test process; nothing else to clean up.
# Usage: slow_resolver.sh STORE_CONTRACT_TEST
set -euo pipefail
bin=$1
command -v unshare >/dev/null || { echo "slow_resolver.sh: unshare (util-linux) is missing" >&2; exit 1; }
[[ -e /etc/resolv.conf ]] || { echo "slow_resolver.sh: no /etc/resolv.conf to mount over" >&2; exit 1; }
dir=$(mktemp -d "${TMPDIR:-/tmp}/slow_resolver.$$.XXXXXX")
trap 'rm -rf "$dir"' EXIT
printf 'nameserver 198.18.53.53\noptions timeout:3 attempts:1\n' >"$dir/resolv.conf"
unshare --mount --net -- bash -euc '
    mount --make-rprivate /
    ip link set lo up
    ip link add ovpdns0 type veth peer name ovpdns1
    ip addr add 198.18.53.1/24 dev ovpdns0
    ip link set ovpdns0 up
    ip link set ovpdns1 up
    mount --bind "$1" /etc/resolv.conf
    out=$(OVP_SLOW_RESOLVER=1 "$2" --gtest_filter="slow_resolver.*" 2>&1) && rc=0 || rc=$?
    printf "%s\n" "$out"
    if [[ $rc -eq 0 ]] && grep -q "SKIPPED" <<<"$out"; then
        echo "slow_resolver.sh: the test was skipped" >&2
        exit 1
    fi
    exit $rc
' slow_resolver "$dir/resolv.conf" "$bin"
