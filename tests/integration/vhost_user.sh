#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# A DPDK container attached by vhost-user: host1 attaches "vapp" on a vhost-user socket,
# dpdk-testpmd connects to it with net_virtio_user and answers ARP and ICMP echo
# (forward mode icmpecho); a TAP container app2 on host2 pings vapp across VXLAN.
# Usage: vhost_user.sh BUILD_DIR        Exit: 0 pass, 1 fail, 77 skip (not root).
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../../tools/lib/netns.sh
source "$here/../../tools/lib/netns.sh"
BUILD_DIR=${1:-$here/../../build}

ovp_init vhost_user
ovp_find_bins "$BUILD_DIR"
TESTPMD=${TESTPMD:-$(command -v dpdk-testpmd)}
[[ -x "$TESTPMD" ]] || ovp_fail "dpdk-testpmd not found (Debian package dpdk)"
id=$OVP_ID
net=vnet
sock=$OVP_DIR/vapp.sock

ovp_step "two overpass hosts, network $net 10.0.2.0/24"
ovp_overpass_hosts 2
ovp_cli host1 network create --subnet 10.0.2.0/24 "$net" || ovp_fail "network create"

ovp_step "attach vapp on host1 as vhost-user ($sock)"
out=$(ovp_cli host1 endpoint attach --network "$net" --name vapp --vhost-user "$sock" 2>&1) ||
    ovp_fail "attach vapp --vhost-user: $out"
echo "$out"
_ovp_parse_attach vapp "$out" || ovp_fail "attach output"
vip=${EP_IP[vapp]}
vmac=${EP_MAC[vapp]}
# overpassd listens on the socket (vhost server); if it were in client mode (net_vhost
# client=1), testpmd must be the server. Adapt, and say which one it is.
vu_mode=
for ((i = 0; i < 10; i++)); do
    [[ -S "$sock" ]] && { vu_mode=client; break; }
    sleep 0.1
done
if [[ -z "$vu_mode" ]]; then
    vu_mode=server
    ovp_warn "no socket at $sock after attach: overpassd is a vhost-user client; testpmd will be the server"
fi

ovp_step "start dpdk-testpmd (icmpecho) on virtio-user $sock ($vu_mode) with MAC $vmac"
# Its lcore 1 busy-polls: keep the test short. --stats-period keeps it running without
# a terminal (non-interactive testpmd otherwise exits when stdin reaches EOF).
ovp_register_path "/var/run/dpdk/vapp-$id"
ovp_bg testpmd "$TESTPMD" -l 0-1 --no-pci --no-huge -m 256 --file-prefix "vapp-$id" \
    "--vdev=net_virtio_user0,path=$sock,mac=$vmac$([[ $vu_mode == server ]] && echo ,server=1)" -- \
    --forward-mode=icmpecho --auto-start --stats-period 3600 --no-mlockall \
    --nb-cores=1 --rxq=1 --txq=1 --total-num-mbufs=2048
for ((i = 0; i < 150; i++)); do
    ovp_alive testpmd || { ovp_dump_logs 60; ovp_fail "dpdk-testpmd exited"; }
    grep -q "Start automatic packet forwarding\|icmpecho packet forwarding" "${OVP_LOG[testpmd]}" && break
    sleep 0.2
done
grep -q "icmpecho" "${OVP_LOG[testpmd]}" || ovp_fail "dpdk-testpmd did not start forwarding"
ovp_pass "testpmd forwarding"

ovp_step "TAP container app2 on host2 pings vapp ($vip)"
ovp_container_add "app2-$id"
ovp_attach host2 "$net" app2 "app2-$id" || ovp_fail "attach app2"
ovp_ping_ok "app2-$id" "$vip" 5 20 || ovp_fail "ping app2 -> vapp ($vip) over vhost-user"
ovp_pass "vapp answers over VXLAN + vhost-user"

ovp_step "endpoint ls shows vapp (vhost) and app2"
ovp_cli host1 endpoint ls || ovp_fail "endpoint ls"
ovp_cli_has host1 vapp endpoint ls || ovp_fail "endpoint ls lacks vapp"

ovp_step "detach vapp while testpmd is connected: ping stops, daemon stays up"
ovp_cli host1 endpoint detach vapp || ovp_fail "endpoint detach vapp"
ovp_ping_fails "app2-$id" "$vip" 3 || ovp_fail "vapp still answers after detach"
ovp_alive host1 || ovp_fail "overpassd host1 died after detaching a connected vhost-user port"
ovp_cli host1 host ls >/dev/null || ovp_fail "host1 API dead after vhost detach"
ovp_stop testpmd 10
ovp_pass "detached"

ovp_step "stop daemons"
ovp_daemon_stop host2 15 || ovp_fail "host2 exit status $?"
ovp_daemon_stop host1 15 || ovp_fail "host1 exit status $?"
ovp_cleanup
ovp_leak_check || exit 1
ovp_pass "vhost_user passed"
exit 0
