#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Interop with a Linux kernel VXLAN host built the way Docker's overlay driver builds
# it: host3 (kernel underlay IP 198.18.0.3) has vx0 (VNI of the overpass network, port
# 4789, nolearning, proxy) in bridge br0 with a veth to its container kapp
# (10.0.2.100/24, 02:42:0a:00:02:64, MTU 1450), and static fdb/neigh entries pointing at
# overpass host1. host3 and kapp are registered in the store (persistent records,
# tests/integration/store_put.py) so that overpassd on host1 learns them like a peer.
# Checks: ping both ways (static neigh, then proxy ARP on vx0, then ARP carried over the
# flood entry), full-MTU packets with DF, and that VXLAN from a VTEP that is not in
# the store is dropped.
# Usage: kernel_interop.sh BUILD_DIR    Exit: 0 pass, 1 fail, 77 skip (not root).
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../../tools/lib/netns.sh
source "$here/../../tools/lib/netns.sh"
BUILD_DIR=${1:-$here/../../build}
STORE_PUT=$here/store_put.py

ovp_init kernel_interop
ovp_find_bins "$BUILD_DIR"
id=$OVP_ID
net=overlay-net
h3=h3-$id
kapp=kapp-$id
kip=10.0.2.100
kmac=02:42:0a:00:02:64
store() { python3 "$STORE_PUT" "$OVP_STORE_FILE" "$@"; }

ovp_step "overpass host1 (VTEP 198.18.0.1) and kernel host3 (198.18.0.3 on its ul0)"
ovp_switch_add
ovp_host_add "$h3" 198.18.0.3/24
ovp_overpass_hosts 1
ovp_cli host1 network create --subnet 10.0.2.0/24 "$net" || ovp_fail "network create"
vni=$(ovp_cli host1 network inspect "$net" | ovp_json_get vni) || ovp_fail "network inspect"
[[ "$vni" =~ ^[0-9]+$ ]] || ovp_fail "vni '$vni'"
ovp_info "network $net has VNI $vni"

ovp_step "app1 on host1"
ovp_container_add "app1-$id"
ovp_attach host1 "$net" app1 "app1-$id" || ovp_fail "attach app1"
a1ip=${EP_IP[app1]}
a1mac=${EP_MAC[app1]}

ovp_step "host3: vx0 (id $vni dstport 4789 local 198.18.0.3 nolearning proxy) in br0, container kapp"
ip -n "$h3" link add vx0 type vxlan id "$vni" dstport 4789 local 198.18.0.3 dev ul0 \
    nolearning proxy || ovp_fail "vxlan device"
ip -n "$h3" link add br0 type bridge stp_state 0 forward_delay 0 mcast_snooping 0 || ovp_fail "bridge"
ip -n "$h3" link set vx0 master br0
ip -n "$h3" link set vx0 up
ip -n "$h3" link set br0 up
ovp_kernel_container_add "$h3" "$kapp" "$kip/24" "$kmac" 1450
ovp_kernel_fdb "$h3" 00:00:00:00:00:00 198.18.0.1 || ovp_fail "flood fdb entry"
ovp_kernel_fdb "$h3" "$a1mac" 198.18.0.1 || ovp_fail "fdb entry for app1"
ip -n "$kapp" neigh add "$a1ip" lladdr "$a1mac" nud permanent dev eth0 || ovp_fail "neigh in kapp"
ip -d -n "$h3" link show vx0
ip netns exec "$h3" bridge fdb show dev vx0

ovp_step "register host3 and kapp in the store ($OVP_STORE_FILE)"
store host "host3-$id" 198.18.0.3 4789 || ovp_fail "store_put host"
store endpoint "$net" "$kip" kapp "host3-$id" 198.18.0.3 "$kmac" tap || ovp_fail "store_put endpoint"
store list | sed 's/^/    /'
knows_kapp() { ovp_cli_has host1 kapp endpoint ls; }
ovp_eventually 10 knows_kapp || ovp_fail "host1 does not list kapp: $(ovp_cli host1 endpoint ls 2>&1)"
knows_h3() { ovp_cli_has host1 "host3-$id" host ls; }
ovp_eventually 10 knows_h3 || ovp_fail "host1 does not list host3: $(ovp_cli host1 host ls 2>&1)"
ovp_cli host1 endpoint ls

ovp_step "ping kapp (kernel) -> app1 (overpass) and app1 -> kapp"
ovp_ping_ok "$kapp" "$a1ip" 3 15 || ovp_fail "ping kapp -> app1 ($a1ip); host1 drops: $(ovp_drops host1)"
ovp_ping_ok "app1-$id" "$kip" 3 15 || ovp_fail "ping app1 -> kapp ($kip); host1 drops: $(ovp_drops host1)"
ovp_pass "kernel VXLAN <-> overpass both ways"

ovp_step "full-size packets with DF (1450 bytes inner IP): 1422-byte pings both ways"
ip netns exec "$kapp" ping -n -q -c 2 -W 2 -Mdo -s 1422 "$a1ip" || ovp_fail "1450-byte ping kapp -> app1"
ip netns exec "app1-$id" ping -n -q -c 2 -W 2 -Mdo -s 1422 "$kip" || ovp_fail "1450-byte ping app1 -> kapp"
ovp_pass "MTU 1450 across kernel VXLAN and overpass"

ovp_step "Docker's way: no neigh in kapp, vx0 answers ARP from its own table (proxy)"
ip -n "$kapp" neigh flush dev eth0
ip -n "$kapp" neigh del "$a1ip" dev eth0 2>/dev/null
ip -n "$h3" neigh add "$a1ip" lladdr "$a1mac" dev vx0 nud permanent || ovp_fail "neigh on vx0"
ovp_ping_ok "$kapp" "$a1ip" 3 10 || ovp_fail "ping kapp -> app1 with proxy ARP on vx0"
ovp_pass "proxy ARP path"

ovp_step "host3 and kapp removed from the store: host1 drops host3's VXLAN (unknown VTEP)"
drops_before=$(ovp_cli host1 stats --json | ovp_json_get unknown_vtep 2>/dev/null || echo none)
sync_field() { ovp_cli host1 stats --json | ovp_json_get "$1"; }
[[ "$(sync_field remote_vteps)" == 1 && "$(sync_field remote_endpoints)" == 1 ]] ||
    ovp_fail "host1's sync engine should hold host3 and kapp: remote_vteps $(sync_field remote_vteps), remote_endpoints $(sync_field remote_endpoints)"
store delete "nets/$(store net-id "$net")/eps/$kip" || ovp_fail "store delete endpoint"
store delete "hosts/host3-$id" || ovp_fail "store delete host"
forgot() { ovp_cli_lacks host1 kapp endpoint ls && ovp_cli_lacks host1 "host3-$id" host ls; }
ovp_eventually 10 forgot || ovp_fail "host1 still lists host3/kapp after removal from the store"
# 'endpoint ls' and 'host ls' read the store, so they change at once; the data plane
# forgets host3 only when host1's watch (file store: a poll every 100 ms) has applied the
# removal. Wait for that (the sync engine's applied state in stats), not for a time.
dp_forgot() { [[ "$(sync_field remote_vteps)" == 0 && "$(sync_field remote_endpoints)" == 0 ]]; }
ovp_eventually 10 dp_forgot || ovp_fail "host1's sync engine still holds host3/kapp: remote_vteps $(sync_field remote_vteps), remote_endpoints $(sync_field remote_endpoints)"
ip -n "$kapp" neigh replace "$a1ip" lladdr "$a1mac" nud permanent dev eth0
ovp_ping_fails "$kapp" "$a1ip" 3 || ovp_fail "host1 still accepts VXLAN from host3 after it left the store"
drops_after=$(ovp_cli host1 stats --json | ovp_json_get unknown_vtep 2>/dev/null || echo none)
if [[ "$drops_before" == none || "$drops_after" == none ]]; then
    ovp_warn "stats has no unknown_vtep counter: $(ovp_cli host1 stats --json 2>&1 | head -c 600)"
elif ((drops_after - drops_before < 3)); then
    ovp_fail "unknown_vtep drops went from $drops_before to $drops_after for 3 pings from an unknown VTEP"
else
    ovp_pass "unknown_vtep drops $drops_before -> $drops_after"
fi

ovp_step "registered again: traffic flows again"
store host "host3-$id" 198.18.0.3 4789 || ovp_fail "store_put host"
store endpoint "$net" "$kip" kapp "host3-$id" 198.18.0.3 "$kmac" tap || ovp_fail "store_put endpoint"
ovp_eventually 10 knows_kapp || ovp_fail "host1 does not list kapp again"
ovp_ping_ok "$kapp" "$a1ip" 3 15 || ovp_fail "ping kapp -> app1 after re-registering"
ovp_ping_ok "app1-$id" "$kip" 3 15 || ovp_fail "ping app1 -> kapp after re-registering"
ovp_pass "re-registered"

ovp_step "no neigh anywhere and vx0 without proxy: kapp's ARP request crosses VXLAN (flood entry)"
# With proxy on, vx0 answers or swallows every ARP request itself (arp_reduce), so it
# never crosses: rebuild vx0 without it (the flag cannot be changed in place).
ip -n "$h3" link del vx0
ip -n "$h3" link add vx0 type vxlan id "$vni" dstport 4789 local 198.18.0.3 dev ul0 nolearning ||
    ovp_fail "vxlan device (no proxy)"
ip -n "$h3" link set vx0 master br0
ip -n "$h3" link set vx0 up
ovp_kernel_fdb "$h3" 00:00:00:00:00:00 198.18.0.1 || ovp_fail "flood fdb entry"
ovp_kernel_fdb "$h3" "$a1mac" 198.18.0.1 || ovp_fail "fdb entry for app1"
ip -n "$kapp" neigh flush dev eth0
ip -n "$kapp" neigh del "$a1ip" dev eth0 2>/dev/null
ovp_bg_in tcpdump-app1 "app1-$id" tcpdump -i eth0 -n -e -l -Z root arp
sleep 1
if ! ovp_ping_ok "$kapp" "$a1ip" 3 10; then
    ovp_info "kapp's neighbours: $(ip -n "$kapp" neigh show dev eth0)"
    ovp_info "host1 drops: $(ovp_drops host1)"
    ovp_stop tcpdump-app1 5
    ovp_fail "ping kapp -> app1 with ARP over VXLAN (flood entry); ARP seen in app1 in the tcpdump-app1 log"
fi
ovp_stop tcpdump-app1 5
ip -n "$kapp" neigh show dev eth0
ovp_pass "ARP across VXLAN"

ovp_step "stop host1"
ovp_daemon_stop host1 15 || ovp_fail "host1 exit status $?"
ovp_cleanup
ovp_leak_check || exit 1
ovp_pass "kernel_interop passed"
exit 0
