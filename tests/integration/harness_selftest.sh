#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Checks the test harness itself, without overpass binaries: the shared underlay
# (switch namespace + bridge), two Linux kernel VXLAN hosts built as Docker's overlay
# driver builds them (the interop peer of kernel_interop.sh), traffic between their
# containers over VXLAN, and that cleanup leaves nothing behind.
# Usage: harness_selftest.sh [BUILD_DIR]   (BUILD_DIR unused)
# Exit: 0 pass, 1 fail, 77 skip (not root).
# OVP_SELFTEST_HOLD=N: sleep N s before the traffic checks (to test Ctrl-C cleanup).
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../../tools/lib/netns.sh
source "$here/../../tools/lib/netns.sh"

ovp_init harness_selftest
for tool in ip bridge ping; do
    command -v "$tool" >/dev/null || ovp_fail "missing tool: $tool"
done

vni=4242
ovp_step "underlay: switch ul-$OVP_ID, kernel hosts kh1 (198.18.0.11) and kh2 (198.18.0.12)"
ovp_switch_add
ovp_host_add "kh1-$OVP_ID" 198.18.0.11/24
ovp_host_add "kh2-$OVP_ID" 198.18.0.12/24
ovp_ping_ok "kh1-$OVP_ID" 198.18.0.12 2 5 >/dev/null || ovp_fail "underlay ping kh1 -> kh2"
ovp_pass "underlay L2 works"

ovp_step "an overpass-style host: ul0 up, no kernel IPv4, IPv6 off"
ovp_host_add "oh-$OVP_ID"
addrs=$(ip -n "oh-$OVP_ID" -o addr show dev ul0)
[[ -z "$addrs" ]] || ovp_fail "ul0 of an overpass host has addresses: $addrs"
state=$(ip -n "oh-$OVP_ID" -o link show dev ul0)
[[ "$state" == *",UP"* || "$state" == *"<UP"* ]] || ovp_fail "ul0 not up: $state"
ovp_pass "overpass host uplink is bare"

ovp_step "kernel VXLAN VNI $vni on both, containers 10.0.2.100 and 10.0.2.101, MTU 1450"
ovp_kernel_vtep_add "kh1-$OVP_ID" $vni 198.18.0.11
ovp_kernel_vtep_add "kh2-$OVP_ID" $vni 198.18.0.12
m1=$(ovp_mac_of_ip 10.0.2.100)
m2=$(ovp_mac_of_ip 10.0.2.101)
[[ "$m1" == 02:42:0a:00:02:64 ]] || ovp_fail "ovp_mac_of_ip 10.0.2.100 = $m1"
ovp_kernel_container_add "kh1-$OVP_ID" "kc1-$OVP_ID" 10.0.2.100/24 "$m1"
ovp_kernel_container_add "kh2-$OVP_ID" "kc2-$OVP_ID" 10.0.2.101/24 "$m2"
# static entries only, as the overlay driver programs them (nolearning)
ovp_kernel_fdb "kh1-$OVP_ID" 00:00:00:00:00:00 198.18.0.12
ovp_kernel_fdb "kh1-$OVP_ID" "$m2" 198.18.0.12
ovp_kernel_fdb "kh2-$OVP_ID" 00:00:00:00:00:00 198.18.0.11
ovp_kernel_fdb "kh2-$OVP_ID" "$m1" 198.18.0.11
ip -n "kc1-$OVP_ID" neigh add 10.0.2.101 lladdr "$m2" nud permanent dev eth0
ip -n "kc2-$OVP_ID" neigh add 10.0.2.100 lladdr "$m1" nud permanent dev eth0
mtu=$(ip netns exec "kh1-$OVP_ID" cat /sys/class/net/vx0/mtu)
ovp_info "vx0 mtu: $mtu"

if [[ -n "${OVP_SELFTEST_HOLD:-}" ]]; then
    ovp_info "holding ${OVP_SELFTEST_HOLD}s"
    sleep "$OVP_SELFTEST_HOLD" &
    ovp_register_pid $! hold
    wait $!
fi

ovp_step "ping over kernel VXLAN both ways (static fdb + neigh)"
ovp_ping_ok "kc1-$OVP_ID" 10.0.2.101 3 5 || ovp_fail "kc1 -> kc2 over VXLAN"
ovp_ping_ok "kc2-$OVP_ID" 10.0.2.100 3 5 || ovp_fail "kc2 -> kc1 over VXLAN"
ovp_pass "kernel VXLAN peers talk"

ovp_step "broadcast reaches the other side through the flood entry (ARP without neigh)"
ip -n "kc1-$OVP_ID" neigh flush dev eth0
ip -n "kc2-$OVP_ID" neigh flush dev eth0
ovp_ping_ok "kc1-$OVP_ID" 10.0.2.101 2 5 || ovp_fail "kc1 -> kc2 with ARP over the flood entry"
ovp_pass "flood entry works"

ovp_step "a 1422-byte ping (1450-byte packet, DF) fits; 1423 does not leave the container"
ip netns exec "kc1-$OVP_ID" ping -n -q -c 1 -W 2 -Mdo -s 1422 10.0.2.101 >/dev/null ||
    ovp_fail "1450-byte packet over VXLAN"
ip netns exec "kc1-$OVP_ID" ping -n -q -c 1 -W 1 -Mdo -s 1423 10.0.2.101 >/dev/null 2>&1 &&
    ovp_fail "1451-byte packet with DF passed an MTU 1450 interface"
ovp_pass "MTU 1450 end to end"

ovp_step "cleanup leaves nothing"
ovp_cleanup
ovp_leak_check || { echo "leaks after cleanup" >&2; exit 1; }
ovp_pass "no leaks"
exit 0
