#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The two-host scenario: two overpassd sharing one file store, a global network
# created on host1 and seen on host2, a TAP container on each host, ping both ways,
# detach (ping fails), re-attach (ping works), graceful stop (peers forget the host).
# Usage: two_hosts.sh BUILD_DIR        Exit: 0 pass, 1 fail, 77 skip (not root).
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../../tools/lib/netns.sh
source "$here/../../tools/lib/netns.sh"
BUILD_DIR=${1:-$here/../../build}

ovp_init two_hosts
ovp_find_bins "$BUILD_DIR"
id=$OVP_ID
net=overlay-net

ovp_step "two hosts (VTEPs 198.18.0.1, 198.18.0.2) on one underlay, one overpassd each"
ovp_overpass_hosts 2
ovp_pass "both daemons answer"

ovp_step "host ls on host1 lists both hosts"
has_host() { ovp_cli_has "$1" "$2" host ls; }
ovp_eventually 10 has_host host1 "host2-$id" || ovp_fail "host1 does not list host2-$id: $(ovp_cli host1 host ls 2>&1)"
has_host host1 "host1-$id" || ovp_fail "host1 does not list itself"
ovp_cli host1 host ls

ovp_step "network create --subnet 10.0.2.0/24 $net on host1"
ovp_cli host1 network create --subnet 10.0.2.0/24 "$net" || ovp_fail "network create"

ovp_step "network ls on host2 shows $net with scope global"
net_global() {
    local out
    out=$(ovp_cli host2 network ls) || return 2
    awk -v n="$net" '{for (i = 1; i <= NF; i++) if ($i == n) row = $0} END {exit !(row ~ /(^|[[:space:]])global([[:space:]]|$)/)}' <<<"$out"
}
ovp_eventually 10 net_global || ovp_fail "host2 network ls: $(ovp_cli host2 network ls 2>&1)"
ovp_cli host2 network ls

ovp_step "network inspect $net on host2 is JSON with the subnet and a VNI"
inspect=$(ovp_cli host2 network inspect "$net") || ovp_fail "network inspect: $inspect"
subnet=$(ovp_json_get subnet <<<"$inspect") || ovp_fail "inspect output: $inspect"
vni=$(ovp_json_get vni <<<"$inspect") || ovp_fail "inspect output has no vni: $inspect"
[[ "$subnet" == 10.0.2.0/24 ]] || ovp_fail "inspect subnet '$subnet'"
[[ "$vni" =~ ^[0-9]+$ ]] || ovp_fail "inspect vni '$vni'"
ovp_info "vni $vni"

ovp_step "attach app1 on host1 and app2 on host2 (TAP into container namespaces)"
ovp_container_add "app1-$id"
ovp_container_add "app2-$id"
ovp_attach host1 "$net" app1 "app1-$id" || ovp_fail "attach app1"
ovp_attach host2 "$net" app2 "app2-$id" || ovp_fail "attach app2"
for a in app1 app2; do
    ip=${EP_IP[$a]}
    [[ "${EP_CIDR[$a]}" == 10.0.2.*/24 ]] || ovp_fail "$a got ${EP_CIDR[$a]}, not in 10.0.2.0/24"
    [[ "$ip" != 10.0.2.0 && "$ip" != 10.0.2.1 && "$ip" != 10.0.2.255 ]] || ovp_fail "$a got reserved $ip"
    [[ "${EP_MAC[$a]}" == "$(ovp_mac_of_ip "$ip")" ]] || ovp_fail "$a MAC ${EP_MAC[$a]} is not 02:42+IP"
done
[[ "${EP_IP[app1]}" != "${EP_IP[app2]}" ]] || ovp_fail "app1 and app2 got the same IP ${EP_IP[app1]}"

ovp_step "eth0 inside each container: address, MAC, MTU 1450, up, default route via 10.0.2.1"
for a in app1 app2; do
    ovp_check_eth0 "$a-$id" "${EP_CIDR[$a]}" "${EP_MAC[$a]}" 1450 10.0.2.1 || ovp_fail "$a eth0"
    ip -n "$a-$id" addr show dev eth0
done

ovp_step "ping app2 -> app1 and app1 -> app2"
ovp_ping_ok "app2-$id" "${EP_IP[app1]}" 3 15 || ovp_fail "ping app2 -> app1 (${EP_IP[app1]})"
ovp_ping_ok "app1-$id" "${EP_IP[app2]}" 3 15 || ovp_fail "ping app1 -> app2 (${EP_IP[app2]})"
ovp_pass "ping both ways"

ovp_step "names: ping app1 / app2 by name (resolver = gateway, answered by overpassd); other names NXDOMAIN"
ovp_ping_ok "app2-$id" app1 3 15 || ovp_fail "ping app2 -> app1 by name"
ovp_ping_ok "app1-$id" app2 3 15 || ovp_fail "ping app1 -> app2 by name"
got=$(ip netns exec "app2-$id" getent ahostsv4 app1 | awk 'NR==1 {print $1}')
[[ "$got" == "${EP_IP[app1]}" ]] || ovp_fail "app1 resolved to '$got', expected ${EP_IP[app1]}"
if ip netns exec "app2-$id" getent ahostsv4 no-such-container >/dev/null 2>&1; then
    ovp_fail "a name that no endpoint has resolved"
fi
ovp_pass "names resolve within the network"

ovp_step "TCP: 2 MB from app1 to app2 across VXLAN, byte for byte (checksums, MTU 1450, segmentation)"
blob="$OVP_DIR/blob"
head -c 2000000 /dev/urandom >"$blob"
# The server says "listening" once it listens; the client connects only then (a fixed
# pause is not enough for python3 to start on a loaded machine: connection refused).
ip netns exec "app1-$id" timeout 30 python3 -c '
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 8080)); s.listen(1); print("listening", flush=True)
c, _ = s.accept(); c.sendall(open(sys.argv[1], "rb").read()); c.close()' "$blob" >"$OVP_DIR/tcp_server.log" 2>&1 &
srv=$!
ovp_register_pid "$srv" tcp_server
srv_listening() { grep -qx listening "$OVP_DIR/tcp_server.log"; }
ovp_eventually 20 srv_listening || ovp_fail "TCP server in app1 did not listen: $(cat "$OVP_DIR/tcp_server.log")"
got=$(ip netns exec "app2-$id" timeout 30 python3 -c '
import hashlib, socket
s = socket.create_connection(("app1", 8080), timeout=10); h = hashlib.sha256(); n = 0
while True:
    b = s.recv(65536)
    if not b: break
    h.update(b); n += len(b)
print(n, h.hexdigest())') || ovp_fail "TCP transfer from app1 failed"
want="2000000 $(sha256sum "$blob" | cut -d" " -f1)"
[[ "$got" == "$want" ]] || ovp_fail "TCP transfer corrupted or short: got '$got', want '$want'"
wait "$srv" 2>/dev/null
ovp_pass "2 MB over TCP intact"

ovp_step "endpoint ls shows app1 and app2 (on both hosts)"
both_eps() { local o; o=$(ovp_cli "$1" endpoint ls) && grep -qw app1 <<<"$o" && grep -qw app2 <<<"$o"; }
ovp_eventually 5 both_eps host1 || ovp_fail "host1 endpoint ls: $(ovp_cli host1 endpoint ls 2>&1)"
ovp_eventually 5 both_eps host2 || ovp_fail "host2 endpoint ls: $(ovp_cli host2 endpoint ls 2>&1)"
ovp_cli host1 endpoint ls

ovp_step "stats is JSON with drop counters"
stats=$(ovp_cli host1 stats --json) || ovp_fail "stats: $stats"
drops=$(ovp_json_get drops <<<"$stats") || ovp_fail "stats has no 'drops': $stats"
ovp_info "host1 drops: $drops"

ovp_step "detach app1: its eth0 goes away, endpoint ls forgets it, ping app2 -> app1 fails"
old_ip1=${EP_IP[app1]}
ovp_cli host1 endpoint detach app1 || ovp_fail "endpoint detach app1"
no_eth0() { ! ip -n "$1" link show dev eth0 >/dev/null 2>&1; }
ovp_eventually 5 no_eth0 "app1-$id" || ovp_fail "eth0 still in app1-$id after detach"
no_app1() { ovp_cli_lacks host2 app1 endpoint ls; }
ovp_eventually 5 no_app1 || ovp_fail "host2 still lists app1: $(ovp_cli host2 endpoint ls 2>&1)"
ovp_ping_fails "app2-$id" "$old_ip1" 3 || ovp_fail "ping app2 -> $old_ip1 still answered after detach"
ovp_pass "detached"

ovp_step "re-attach app1 on host1: ping works again both ways"
ovp_attach host1 "$net" app1 "app1-$id" || ovp_fail "re-attach app1"
ovp_check_eth0 "app1-$id" "${EP_CIDR[app1]}" "${EP_MAC[app1]}" 1450 10.0.2.1 || ovp_fail "app1 eth0 after re-attach"
ovp_ping_ok "app2-$id" "${EP_IP[app1]}" 3 15 || ovp_fail "ping app2 -> app1 after re-attach"
ovp_ping_ok "app1-$id" "${EP_IP[app2]}" 3 15 || ovp_fail "ping app1 -> app2 after re-attach"
ovp_pass "re-attached"

ovp_step "graceful stop of host2 (SIGTERM): exit 0, its TAP goes, host1 forgets host2 and app2"
ovp_daemon_stop host2 15
rc=$?
[[ $rc -eq 0 ]] || ovp_fail "overpassd host2 exited with status $rc on SIGTERM"
ovp_eventually 5 no_eth0 "app2-$id" || ovp_fail "eth0 still in app2-$id after host2 stopped"
gone_host2() { ovp_cli_lacks host1 "host2-$id" host ls && ovp_cli_lacks host1 app2 endpoint ls; }
ovp_eventually 10 gone_host2 || ovp_fail "host1 still lists host2/app2: $(ovp_cli host1 host ls 2>&1) $(ovp_cli host1 endpoint ls 2>&1)"
ovp_daemon_stop host1 15
rc=$?
[[ $rc -eq 0 ]] || ovp_fail "overpassd host1 exited with status $rc on SIGTERM"
ovp_pass "both daemons stopped cleanly"

ovp_step "cleanup leaves nothing"
ovp_cleanup
ovp_leak_check || exit 1
ovp_pass "two_hosts passed"
exit 0
