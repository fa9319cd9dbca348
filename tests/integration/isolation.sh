#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Network isolation: two overlay networks (different VNIs, 10.0.2.0/24 and 10.0.3.0/24)
# spread over two hosts. Nothing from network A may reach network B: not routed
# traffic, not frames forced onto B's MACs with static routes and neighbours (local and
# remote destinations), not broadcast. A second network on the same (or an overlapping)
# subnet is rejected with a clear one-line error, unless created with --allow-overlap:
# then it works and is isolated as well, with the same addresses and MACs as netA.
# Usage: isolation.sh BUILD_DIR        Exit: 0 pass, 1 fail, 77 skip (not root).
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../../tools/lib/netns.sh
source "$here/../../tools/lib/netns.sh"
BUILD_DIR=${1:-$here/../../build}

ovp_init isolation
ovp_find_bins "$BUILD_DIR"
command -v tcpdump >/dev/null || ovp_fail "tcpdump not installed"
id=$OVP_ID

ovp_step "two overpass hosts; networks netA 10.0.2.0/24 and netB 10.0.3.0/24"
ovp_overpass_hosts 2
ovp_cli host1 network create --subnet 10.0.2.0/24 netA || ovp_fail "create netA"
ovp_cli host1 network create --subnet 10.0.3.0/24 netB || ovp_fail "create netB"
vniA=$(ovp_cli host1 network inspect netA | ovp_json_get vni) || ovp_fail "inspect netA"
vniB=$(ovp_cli host1 network inspect netB | ovp_json_get vni) || ovp_fail "inspect netB"
[[ "$vniA" != "$vniB" ]] || ovp_fail "netA and netB share VNI $vniA"
ovp_info "netA vni $vniA, netB vni $vniB"

ovp_step "a second network on the same subnet 10.0.2.0/24 (and on an overlapping 10.0.2.128/25)"
err=$(ovp_cli host1 network create --subnet 10.0.2.0/24 netC 2>&1 >/dev/null)
rc=$?
if [[ $rc -ne 0 ]]; then
    lines=$(grep -c . <<<"$err")
    [[ $lines -eq 1 ]] || ovp_fail "rejection is not one line ($lines lines): $err"
    grep -qiE 'subnet|overlap' <<<"$err" || ovp_fail "rejection does not name the subnet: $err"
    ovp_pass "rejected: $err"
    ovp_cli_lacks host1 netC network ls || ovp_fail "rejected netC appears in network ls (or ls failed)"
    err=$(ovp_cli host1 network create --subnet 10.0.2.128/25 netD 2>&1 >/dev/null) &&
        ovp_fail "overlapping 10.0.2.128/25 accepted while 10.0.2.0/24 exists"
    ovp_pass "overlap rejected: $err"
else
    ovp_fail "a second network on 10.0.2.0/24 was accepted without --allow-overlap"
fi
out=$(ovp_cli host1 network create --subnet 10.0.2.0/24 --allow-overlap netC 2>&1) ||
    ovp_fail "network create --allow-overlap netC: $out"
ovp_pass "with --allow-overlap, netC shares 10.0.2.0/24 with netA"

ovp_step "containers: a1@host1, a2@host2 in netA; b1@host1, b2@host2 in netB"
for c in a1 a2 b1 b2; do ovp_container_add "$c-$id"; done
ovp_attach host1 netA a1 "a1-$id" || ovp_fail "attach a1"
ovp_attach host2 netA a2 "a2-$id" || ovp_fail "attach a2"
ovp_attach host1 netB b1 "b1-$id" || ovp_fail "attach b1"
ovp_attach host2 netB b2 "b2-$id" || ovp_fail "attach b2"
[[ "${EP_CIDR[b1]}" == 10.0.3.*/24 ]] || ovp_fail "b1 got ${EP_CIDR[b1]}"

ovp_step "within each network, ping works (local and remote)"
ovp_ping_ok "a1-$id" "${EP_IP[a2]}" 2 15 || ovp_fail "a1 -> a2"
ovp_ping_ok "b1-$id" "${EP_IP[b2]}" 2 15 || ovp_fail "b1 -> b2"
ovp_ping_ok "b2-$id" "${EP_IP[b1]}" 2 15 || ovp_fail "b2 -> b1"
ovp_pass "intra-network traffic flows"

ovp_step "names resolve only within their own network"
for pair in "a1-$id a2" "b1-$id b2"; do
    set -- $pair
    ip netns exec "$1" getent ahostsv4 "$2" >/dev/null || ovp_fail "$2 does not resolve from $1"
done
for pair in "a1-$id b1" "a1-$id b2" "b2-$id a1"; do
    set -- $pair
    if ip netns exec "$1" getent ahostsv4 "$2" >/dev/null 2>&1; then
        ovp_fail "$2 (another network) resolves from $1"
    fi
done
ovp_pass "a-names in netA, b-names in netB, nothing across"

# Watching containers: tcpdump on their eth0 records every frame; interface counters
# are reported beside it. Frames from the other network (its MACs or addresses) fail.
watch_gen=0
watch_start() {  # CONTAINER...
    local c i
    watch_gen=$((watch_gen + 1))
    for c in "$@"; do
        ovp_bg_in "tcpdump-$c-$watch_gen" "$c-$id" tcpdump -i eth0 -n -e -l -Z root
    done
    for c in "$@"; do
        local log=${OVP_LOG[tcpdump-$c-$watch_gen]}
        for ((i = 0; i < 50; i++)); do
            grep -q "listening on" "$log" && break
            sleep 0.1
        done
        grep -q "listening on" "$log" || ovp_fail "tcpdump in $c did not start: $(cat "$log")"
        rx0[$c]=$(ovp_ifstat "$c-$id" eth0 rx_packets)
    done
}
# Stops the watch and fails if any CONTAINER saw a frame matching one of PATTERNS.
watch_check() {  # "CONTAINER..." PATTERN...
    local cs=$1 c log seen hits leak=0
    shift
    local pats=()
    for p in "$@"; do pats+=(-e "$p"); done
    sleep 0.5
    for c in $cs; do ovp_kill_pid "${OVP_PID[tcpdump-$c-$watch_gen]}" 5; done
    for c in $cs; do
        log=${OVP_LOG[tcpdump-$c-$watch_gen]}
        seen=$(grep -v -e '^tcpdump:' -e 'listening on' -e 'packets captured' -e 'packets received' \
            -e 'packets dropped' "$log" | grep -c .)
        ovp_info "$c: rx_packets +$(($(ovp_ifstat "$c-$id" eth0 rx_packets) - rx0[$c])), $seen frame(s) captured"
        hits=$(grep -i "${pats[@]}" "$log")
        if [[ -n "$hits" ]]; then
            echo "$c received frames of the other network:" >&2
            head -20 <<<"$hits" >&2
            leak=1
        elif [[ $seen -gt 0 ]]; then
            ovp_warn "$c received frames, none of them from the other network:"
            grep -v -e '^tcpdump:' -e 'listening on' "$log" | head -10 >&2
        fi
    done
    return $leak
}
declare -A rx0

ovp_step "watching b1 and b2 (tcpdump on their eth0)"
watch_start b1 b2

ovp_step "a1 -> B addresses through its default route (gateway): no answer"
ovp_ping_fails "a1-$id" "${EP_IP[b1]}" 2 || ovp_fail "a1 reached b1 ${EP_IP[b1]} via the gateway"
ovp_ping_fails "a1-$id" "${EP_IP[b2]}" 2 || ovp_fail "a1 reached b2 ${EP_IP[b2]} via the gateway"

ovp_step "a1 forces frames onto B's MACs (static route + permanent neighbours): dropped"
ip -n "a1-$id" route add 10.0.3.0/24 dev eth0 || ovp_fail "route in a1"
for c in b1 b2; do
    ip -n "a1-$id" neigh replace "${EP_IP[$c]}" lladdr "${EP_MAC[$c]}" nud permanent dev eth0 ||
        ovp_fail "neigh in a1"
done
ovp_ping_fails "a1-$id" "${EP_IP[b1]}" 3 || ovp_fail "a1 reached b1 (same host) with b1's MAC"
ovp_ping_fails "a1-$id" "${EP_IP[b2]}" 3 || ovp_fail "a1 reached b2 (other host) with b2's MAC"

ovp_step "broadcast in netA (ping -b 10.0.2.255 and 255.255.255.255): reaches a2, never B"
rxa2=$(ovp_ifstat "a2-$id" eth0 rx_packets)
ip netns exec "a1-$id" ping -n -q -b -c 3 -i 0.2 -W 1 10.0.2.255 >/dev/null 2>&1
ip netns exec "a1-$id" ping -n -q -b -c 3 -i 0.2 -W 1 255.255.255.255 >/dev/null 2>&1
# The flooded copies reach a2 through both daemons: wait for them (bounded), not 0.5 s.
a2_got_broadcasts() { rxa2b=$(ovp_ifstat "a2-$id" eth0 rx_packets); ((rxa2b - rxa2 >= 3)); }
ovp_eventually 10 a2_got_broadcasts ||
    ovp_fail "broadcast from a1 did not reach a2 in the same network (a2 rx +$((rxa2b - rxa2)))"
ovp_pass "a2 received the broadcasts ($((rxa2b - rxa2)) frames)"

ovp_step "b1 and b2 saw nothing from netA"
watch_check "b1 b2" "${EP_MAC[a1]}" "${EP_MAC[a2]}" " 10\.0\.2\." || ovp_fail "netA traffic leaked into netB"
ovp_pass "netB untouched"

ovp_step "and the other way: b1 broadcasts and forces frames onto a1's and a2's MACs"
watch_start a1 a2
ip netns exec "b1-$id" ping -n -q -b -c 3 -i 0.2 -W 1 10.0.3.255 >/dev/null 2>&1
ip -n "b1-$id" route add 10.0.2.0/24 dev eth0 || ovp_fail "route in b1"
for c in a1 a2; do
    ip -n "b1-$id" neigh replace "${EP_IP[$c]}" lladdr "${EP_MAC[$c]}" nud permanent dev eth0 ||
        ovp_fail "neigh in b1"
    ovp_ping_fails "b1-$id" "${EP_IP[$c]}" 2 || ovp_fail "b1 reached $c with $c's MAC"
done
watch_check "a1 a2" "${EP_MAC[b1]}" "${EP_MAC[b2]}" " 10\.0\.3\." || ovp_fail "netB traffic leaked into netA"
ovp_pass "netA untouched"

ovp_step "same subnet in netC: c1@host1 and c2@host2 get netA's addresses (and MACs); each pair reaches only its own"
ovp_container_add "c1-$id"
ovp_container_add "c2-$id"
ovp_attach host1 netC c1 "c1-$id" || ovp_fail "attach c1"
ovp_attach host2 netC c2 "c2-$id" || ovp_fail "attach c2"
[[ "${EP_IP[c1]}" == "${EP_IP[a1]}" ]] || ovp_info "c1 got ${EP_IP[c1]} (a1 has ${EP_IP[a1]})"
watch_start c1
ovp_ping_ok "a2-$id" "${EP_IP[a1]}" 3 10 || ovp_fail "a2 -> a1 with netC present"
ovp_ping_ok "a1-$id" "${EP_IP[a2]}" 3 10 || ovp_fail "a1 -> a2 with netC present"
# c1 has a1's IP and so its MAC: only a2's MAC tells netA frames apart
watch_check c1 "${EP_MAC[a2]}" || ovp_fail "netA traffic reached c1 in netC"
ovp_ping_ok "c2-$id" "${EP_IP[c1]}" 3 10 || ovp_fail "c2 -> c1 inside netC"
ovp_ping_ok "c1-$id" "${EP_IP[c2]}" 3 10 || ovp_fail "c1 -> c2 inside netC"
got=$(ip netns exec "c2-$id" getent ahostsv4 c1 | awk 'NR==1 {print $1}')
[[ "$got" == "${EP_IP[c1]}" ]] || ovp_fail "c1 resolves to '$got' in netC"
if ip netns exec "c2-$id" getent ahostsv4 a1 >/dev/null 2>&1; then
    ovp_fail "a1 (netA) resolves from netC"
fi
ovp_pass "same-subnet networks are isolated, and each works"

ovp_step "drop counters (informational)"
ovp_cli host1 stats --json | ovp_json_get drops || ovp_warn "no drops in stats"

ovp_step "stop daemons"
ovp_daemon_stop host2 15 || ovp_fail "host2 exit status $?"
ovp_daemon_stop host1 15 || ovp_fail "host1 exit status $?"
ovp_cleanup
ovp_leak_check || exit 1
ovp_pass "isolation passed"
exit 0
