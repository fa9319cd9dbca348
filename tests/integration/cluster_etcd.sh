#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Two overpassd on a real etcd (started by the test in a management namespace, on
# 198.19.0.254; each host reaches it over its own management veth 198.19.0.N, while
# overpassd's uplink stays on the underlay veth):
#   (a) a network created on host1 is usable on host2: attach there, ping across;
#   (b) containers ping each other by name across hosts;
#   (c) 5 + 5 concurrent attaches on the two hosts into one /24 never share an address
#       (attach outputs, endpoint ls on both hosts, every container's eth0);
#   (e) etcd stopped for 30 s: traffic between existing containers goes on (loss <= 1
#       echo each way); etcd restarted on the same data dir and ports: a container
#       attached and a network created on host1 then converge on host2, and nobody's
#       endpoints expire afterwards;
#   (d) kill -9 of host2's overpassd: within the lease bound (TTL 10 s + margin) host1
#       forgets host2 and its endpoints, and their addresses return to the pool (new
#       attaches on host1 get exactly host2's former addresses).
# (e) runs before (d) so that the outage happens with both hosts alive.
# Usage: cluster_etcd.sh BUILD_DIR   Exit: 0 pass, 1 fail, 77 skip (not root / no etcd).
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../../tools/lib/netns.sh
source "$here/../../tools/lib/netns.sh"
# shellcheck source=../../tools/lib/store.sh
source "$here/../../tools/lib/store.sh"
BUILD_DIR=${1:-$here/../../build}

ovp_init cluster_etcd
ovp_etcd_need
ovp_find_bins "$BUILD_DIR"
id=$OVP_ID
net=overlay-net
gw=10.0.2.1
LEASE_BOUND=25          # seconds: TTL 10 s + keep-alive period + watch delivery + margin
OUTAGE=30               # seconds etcd stays down

t_start=${EPOCHREALTIME/[.,]/}
now_ms() { local t=${EPOCHREALTIME/[.,]/}; echo $(((t - t_start) / 1000)); }
since_ms() { local t=${EPOCHREALTIME/[.,]/}; echo $(((t - $1) / 1000)); }
declare -A phase_ms=()

# Failure: also show what the store holds and both daemons' view.
fail() {
    {
        echo "----- etcd keys under $OVP_ETCD_PREFIX/ -----"
        ovp_etcd_dump 2>&1 || echo "(etcd not answering)"
        for d in host1 host2; do
            ovp_alive "$d" || { echo "----- $d: overpassd not running -----"; continue; }
            echo "----- $d: host ls / endpoint ls -----"
            timeout 5 "$OVP" -H "unix://${OVP_SOCK[$d]}" host ls 2>&1
            timeout 5 "$OVP" -H "unix://${OVP_SOCK[$d]}" endpoint ls 2>&1
        done
    } >&2
    ovp_fail "$@"
}

# endpoint ls of DAEMON as "NAME ADDRESS HOST" lines (header dropped).
eps_of() {
    local out
    out=$(ovp_cli "$1" endpoint ls) || return 2
    awk 'NR > 1 && NF >= 5 {print $1, $3, $5}' <<<"$out"
}

# ---------------------------------------------------------------------------------
ovp_step "management network mgmt-$id (br0 $OVP_MGMT_IP/24) and etcd on it"
ovp_mgmt_add
ovp_info "$(ovp_etcd_cmdline)"
t=${EPOCHREALTIME/[.,]/}
ovp_etcd_start
ovp_etcd_wait 20 || fail "etcd did not become ready"
ovp_pass "etcd ready in $(since_ms "$t") ms at $OVP_ETCD_CLIENT_URL (store URL $OVP_STORE_URL)"

ovp_step "two hosts: underlay ul0 (VTEPs 198.18.0.1/.2, no kernel IP), management mg0 198.19.0.1/.2"
ovp_etcd_hosts 2
for i in 1 2; do
    ip netns exec "h$i-$id" ping -n -q -c 1 -W 2 "$OVP_MGMT_IP" >/dev/null \
        || fail "host$i cannot reach the store at $OVP_MGMT_IP over mg0"
    [[ -z "$(ip -n "h$i-$id" -4 -o addr show dev ul0)" ]] || fail "ul0 of host$i has a kernel address"
done
has_host() { ovp_cli_has "$1" "$2" host ls; }
ovp_eventually 10 has_host host1 "host2-$id" || fail "host1 does not list host2-$id"
ovp_eventually 10 has_host host2 "host1-$id" || fail "host2 does not list host1-$id"
ovp_cli host1 host ls
ovp_pass "both daemons registered in etcd"

# ---------------------------------------------------------------------------------
ovp_step "(a) network create --subnet 10.0.2.0/24 $net on host1, attach app1 on host1 and app2 on host2"
t=${EPOCHREALTIME/[.,]/}
ovp_cli host1 network create --subnet 10.0.2.0/24 "$net" || fail "network create on host1"
has_net() { ovp_cli_has host2 "$net" network ls; }
ovp_eventually 10 has_net || fail "host2 does not see $net: $(ovp_cli host2 network ls 2>&1)"
ovp_container_add "app1-$id"
ovp_container_add "app2-$id"
ovp_attach host1 "$net" app1 "app1-$id" || fail "attach app1 on host1"
ovp_attach host2 "$net" app2 "app2-$id" || fail "attach app2 on host2 (network created on host1)"
[[ "${EP_IP[app1]}" != "${EP_IP[app2]}" ]] || fail "app1 and app2 got the same address ${EP_IP[app1]}"
for a in app1 app2; do
    ovp_check_eth0 "$a-$id" "${EP_CIDR[$a]}" "${EP_MAC[$a]}" 1450 "$gw" || fail "$a eth0"
done
ovp_ping_ok "app2-$id" "${EP_IP[app1]}" 3 15 || fail "ping app2 (host2) -> app1 ${EP_IP[app1]} (host1)"
ovp_ping_ok "app1-$id" "${EP_IP[app2]}" 3 15 || fail "ping app1 (host1) -> app2 ${EP_IP[app2]} (host2)"
phase_ms[a]=$(since_ms "$t")
ovp_pass "(a) network from host1 used on host2, ping across both ways"

ovp_step "(b) by name: ip netns exec app2 ping app1, and back"
t=${EPOCHREALTIME/[.,]/}
ovp_ping_ok "app2-$id" app1 3 15 || fail "ping app1 by name from app2"
ovp_ping_ok "app1-$id" app2 3 15 || fail "ping app2 by name from app1"
got=$(ip netns exec "app2-$id" getent ahostsv4 app1 | awk 'NR == 1 {print $1}')
[[ "$got" == "${EP_IP[app1]}" ]] || fail "app1 resolves to '$got' in app2, expected ${EP_IP[app1]}"
phase_ms[b]=$(since_ms "$t")
ovp_pass "(b) names resolve across hosts"

# ---------------------------------------------------------------------------------
ovp_step "(c) 5 + 5 attaches at the same time on host1 (p1..p5) and host2 (q1..q5) into $net"
t=${EPOCHREALTIME/[.,]/}
declare -A host_of=([app1]=host1 [app2]=host2)
names=(app1 app2)
for i in 1 2 3 4 5; do
    ovp_container_add "p$i-$id"
    ovp_container_add "q$i-$id"
    host_of[p$i]=host1
    host_of[q$i]=host2
done
declare -A att_pid=()
for i in 1 2 3 4 5; do
    for c in "p$i" "q$i"; do
        ovp_cli "${host_of[$c]}" endpoint attach --network "$net" --name "$c" --netns "$c-$id" \
            >"$OVP_DIR/attach-$c.out" 2>&1 &
        att_pid[$c]=$!
        ovp_register_pid "${att_pid[$c]}" "attach-$c"
        names+=("$c")
    done
done
bad=0
for c in "${!att_pid[@]}"; do
    wait "${att_pid[$c]}"
    rc=$?
    if [[ $rc -ne 0 ]]; then
        ovp_warn "attach $c on ${host_of[$c]} failed ($rc): $(cat "$OVP_DIR/attach-$c.out")"
        bad=1
        continue
    fi
    _ovp_parse_attach "$c" "$(cat "$OVP_DIR/attach-$c.out")" || bad=1
done
[[ $bad -eq 0 ]] || fail "concurrent attaches failed"
ovp_info "concurrent attaches done in $(since_ms "$t") ms"
# addresses from the attach outputs
declare -A owner=()
for c in "${names[@]}"; do
    ip=${EP_IP[$c]}
    [[ -z "${owner[$ip]:-}" ]] || fail "$c and ${owner[$ip]} were both given $ip"
    [[ "$ip" == 10.0.2.* && "$ip" != "$gw" && "$ip" != 10.0.2.0 && "$ip" != 10.0.2.255 ]] \
        || fail "$c got $ip, not a host address of 10.0.2.0/24 other than the gateway"
    owner[$ip]=$c
done
ovp_info "$(for c in "${names[@]}"; do printf '%s=%s(%s) ' "$c" "${EP_IP[$c]}" "${host_of[$c]}"; done)"
# every container's eth0
declare -A eth0_owner=()
for c in "${names[@]}"; do
    ovp_check_eth0 "$c-$id" "${EP_CIDR[$c]}" "${EP_MAC[$c]}" 1450 "$gw" || fail "$c eth0"
    a=$(ip -n "$c-$id" -4 -o addr show dev eth0 | awk '{print $4}')
    [[ -z "${eth0_owner[$a]:-}" ]] || fail "eth0 of $c and of ${eth0_owner[$a]} both carry $a"
    eth0_owner[$a]=$c
done
# endpoint ls on both hosts: all 12, the addresses of the attach outputs, none twice
all_listed() {  # DAEMON
    local lines n
    lines=$(eps_of "$1") || return 2
    n=$(awk '{print $2}' <<<"$lines" | sort | uniq -d | wc -l)
    [[ $n -eq 0 ]] || { echo "duplicate addresses in $1 endpoint ls" >&2; return 1; }
    for c in "${names[@]}"; do
        grep -qx "$c ${EP_CIDR[$c]} ${host_of[$c]}-$id" <<<"$lines" || return 1
    done
    [[ $(wc -l <<<"$lines") -eq ${#names[@]} ]]
}
ovp_eventually 10 all_listed host1 || fail "host1 endpoint ls does not match the attaches: $(ovp_cli host1 endpoint ls 2>&1)"
ovp_eventually 10 all_listed host2 || fail "host2 endpoint ls does not match the attaches: $(ovp_cli host2 endpoint ls 2>&1)"
ovp_cli host1 endpoint ls
ovp_ping_ok "p1-$id" "${EP_IP[q5]}" 2 15 || fail "ping p1 (host1) -> q5 ${EP_IP[q5]} (host2)"
ovp_ping_ok "q1-$id" p5 2 15 || fail "ping q1 (host2) -> p5 by name (host1)"
phase_ms[c]=$(since_ms "$t")
ovp_pass "(c) 12 endpoints, 12 distinct addresses (attach output, endpoint ls on both hosts, eth0)"

# ---------------------------------------------------------------------------------
ovp_step "(e) store outage: etcd stopped for ${OUTAGE} s while app2 <-> app1 ping (-i 0.5 -c 70)"
t=${EPOCHREALTIME/[.,]/}
ip netns exec "app2-$id" ping -n -i 0.5 -c 70 -W 1 "${EP_IP[app1]}" >"$OVP_DIR/outage-ping-21.log" 2>&1 &
ping21=$!
ovp_register_pid "$ping21" ping-app2-app1     # stopped by the cleanup if the test is interrupted
ip netns exec "app1-$id" ping -n -i 0.5 -c 70 -W 1 "${EP_IP[app2]}" >"$OVP_DIR/outage-ping-12.log" 2>&1 &
ping12=$!
ovp_register_pid "$ping12" ping-app1-app2
ovp_info "pings running (pids $ping21, $ping12)"
sleep 2
t_stop=${EPOCHREALTIME/[.,]/}
ovp_etcd_stop 10
rc=$?
ovp_info "etcd stopped (status $rc, $(since_ms "$t_stop") ms)"
t_down=${EPOCHREALTIME/[.,]/}
probed=0
while (($(since_ms "$t_down") < OUTAGE * 1000)); do
    for d in host1 host2; do
        ovp_alive "$d" || fail "overpassd $d died while etcd was down ($(since_ms "$t_down") ms into the outage)"
    done
    if [[ $probed -eq 0 ]] && (($(since_ms "$t_down") > 12000)); then
        # past the lease TTL: the daemons still answer, reads report the store as down
        probed=1
        tp=${EPOCHREALTIME/[.,]/}
        out=$(timeout 15 "$OVP" -H "unix://${OVP_SOCK[host1]}" endpoint ls 2>&1)
        ovp_info "host1 'endpoint ls' during the outage (status $?, $(since_ms "$tp") ms): $(head -n 2 <<<"$out" | tr '\n' ' ')"
        ovp_alive host1 || fail "overpassd host1 died answering 'endpoint ls' while etcd was down"
    fi
    sleep 1
done
ovp_info "restarting etcd on the same data dir and ports after $(since_ms "$t_down") ms"
t_up=${EPOCHREALTIME/[.,]/}
ovp_etcd_start
ovp_etcd_wait 20 || fail "etcd did not come back"
ovp_info "etcd back in $(since_ms "$t_up") ms"
wait "$ping21"
wait "$ping12"
loss_ok=1
for f in 21 12; do
    sum=$(grep -E 'packets transmitted' "$OVP_DIR/outage-ping-$f.log")
    tx=$(awk '{print $1}' <<<"$sum")
    rx=$(awk '{print $4}' <<<"$sum")
    ovp_info "ping ${f:0:1}->${f:1:1} across the outage: $sum"
    [[ "$tx" =~ ^[0-9]+$ && "$rx" =~ ^[0-9]+$ ]] || { loss_ok=0; continue; }
    ((tx - rx <= 1)) || loss_ok=0
done
[[ $loss_ok -eq 1 ]] || fail "traffic between existing containers was interrupted by the store outage (logs: $OVP_DIR/outage-ping-*.log)"
ovp_pass "(e) no traffic lost during the ${OUTAGE} s outage (<= 1 echo each way)"
for d in host1 host2; do
    ovp_alive "$d" || fail "overpassd $d died after etcd came back"
done

ovp_step "(e) after etcd returns: attach 'late' on host1 and create network 'after-net' on host1; host2 converges"
ovp_container_add "late-$id"
host_of[late]=host1
t_att=${EPOCHREALTIME/[.,]/}
tries=0
while :; do
    tries=$((tries + 1))
    out=$(ovp_cli host1 endpoint attach --network "$net" --name late --netns "late-$id" 2>&1) && break
    ovp_warn "attach late on host1, try $tries, $(since_ms "$t_up") ms after etcd restart: $out"
    (($(since_ms "$t_att") < 15000)) || fail "host1 cannot attach after etcd came back: $out"
    sleep 1
done
_ovp_parse_attach late "$out" || fail "attach output: $out"
names+=(late)
ovp_info "late = ${EP_CIDR[late]} (attach try $tries, $(since_ms "$t_up") ms after etcd restart)"
[[ -z "${owner[${EP_IP[late]}]:-}" ]] || fail "late got ${EP_IP[late]}, already used by ${owner[${EP_IP[late]}]}"
owner[${EP_IP[late]}]=late
late_on_host2() { eps_of host2 | grep -qx "late ${EP_CIDR[late]} host1-$id"; }
ovp_eventually 15 late_on_host2 || fail "host2 does not list 'late' 15 s after its attach (watch not re-established after the outage?)"
ovp_info "host2 lists late $(since_ms "$t_att") ms after the attach began"
ovp_cli host1 network create --subnet 10.0.3.0/24 after-net || fail "network create after-net on host1 after the outage"
after_net_on_host2() { ovp_cli_has host2 after-net network ls; }
ovp_eventually 15 after_net_on_host2 || fail "host2 does not list after-net 15 s after its creation"
ovp_ping_ok "app2-$id" "${EP_IP[late]}" 3 15 || fail "ping app2 (host2) -> late ${EP_IP[late]} (host1)"
ovp_ping_ok "app2-$id" late 3 15 || fail "ping app2 (host2) -> late by name"
ovp_ping_ok "late-$id" app2 3 15 || fail "ping late (host1) -> app2 by name"
for d in host1 host2; do
    st=$(ovp_cli "$d" stats 2>/dev/null | ovp_json_get liveness_losses 2>/dev/null || echo '?')
    ovp_info "$d liveness_losses after the outage: $st"
done
# The leases outlive the outage: a TTL later, everything is still listed on both hosts.
left=$((12000 - $(since_ms "$t_up")))
((left > 0)) && sleep "$((left / 1000)).$(printf '%03d' $((left % 1000)))"
for d in host1 host2; do
    all_listed "$d" || fail "$d lost endpoints $(since_ms "$t_up") ms after etcd came back: $(ovp_cli "$d" endpoint ls 2>&1)"
    if ! has_host "$d" "host1-$id" || ! has_host "$d" "host2-$id"; then
        fail "$d host ls after the outage: $(ovp_cli "$d" host ls 2>&1)"
    fi
done
phase_ms[e]=$(since_ms "$t")
ovp_pass "(e) changes after the outage converge on host2; all ${#names[@]} endpoints still listed $(since_ms "$t_up") ms after etcd's restart"

# ---------------------------------------------------------------------------------
ovp_step "(d) kill -9 overpassd on host2: host1 forgets it within the lease bound (${LEASE_BOUND} s)"
t=${EPOCHREALTIME/[.,]/}
h2_names=()
h2_ips=()
for c in "${names[@]}"; do
    [[ "${host_of[$c]}" == host2 ]] || continue
    h2_names+=("$c")
    h2_ips+=("${EP_IP[$c]}")
done
ovp_info "host2 owns ${#h2_names[@]} endpoints: ${h2_names[*]} (${h2_ips[*]})"
pid2=${OVP_PID[host2]}
t_kill=${EPOCHREALTIME/[.,]/}
kill -KILL "$pid2"
wait "$pid2" 2>/dev/null
ovp_info "overpassd host2 (pid $pid2) killed, status $?"
host2_gone() {
    local lines
    ovp_cli_lacks host1 "host2-$id" host ls || return 1
    lines=$(eps_of host1) || return 1
    ! grep -q " host2-$id\$" <<<"$lines"
}
gone_ms=""
while (($(since_ms "$t_kill") < LEASE_BOUND * 1000)); do
    if host2_gone; then
        gone_ms=$(since_ms "$t_kill")
        break
    fi
    sleep 0.5
done
[[ -n "$gone_ms" ]] || fail "host1 still lists host2 or its endpoints ${LEASE_BOUND} s after kill -9"
ovp_cli host1 host ls
ovp_pass "(d) host2 and its ${#h2_names[@]} endpoints gone from host1 $gone_ms ms after kill -9"

ovp_step "(d) host2's leftovers: TAPs gone with the process; DPDK runtime dir and socket removed"
no_eth0() { ! ip -n "$1" link show dev eth0 >/dev/null 2>&1; }
for c in "${h2_names[@]}"; do
    ovp_eventually 5 no_eth0 "$c-$id" || fail "eth0 still in $c-$id after host2's overpassd died"
done
rm -rf -- "/var/run/dpdk/overpass-host2-$id" "${OVP_SOCK[host2]}"
ovp_pass "no TAP of host2 left"

ovp_step "(d) the addresses return to the pool: ${#h2_names[@]} new attaches on host1 get exactly host2's former ones"
new_ips=()
for ((i = 1; i <= ${#h2_names[@]}; i++)); do
    ovp_container_add "r$i-$id"
    host_of[r$i]=host1
    out=$(ovp_cli host1 endpoint attach --network "$net" --name "r$i" --netns "r$i-$id" 2>&1) \
        || fail "attach r$i on host1 after host2 died: $out"
    _ovp_parse_attach "r$i" "$out" || fail "attach output: $out"
    ovp_check_eth0 "r$i-$id" "${EP_CIDR[r$i]}" "${EP_MAC[r$i]}" 1450 "$gw" || fail "r$i eth0"
    new_ips+=("${EP_IP[r$i]}")
done
want=$(printf '%s\n' "${h2_ips[@]}" | sort -V | tr '\n' ' ')
got=$(printf '%s\n' "${new_ips[@]}" | sort -V | tr '\n' ' ')
ovp_info "host2 had: $want; new attaches on host1 got: $got"
[[ "$want" == "$got" ]] || fail "new attaches got '$got', expected host2's freed addresses '$want' (lowest free first)"
ovp_ping_ok "r1-$id" app1 2 15 || fail "ping r1 -> app1 by name"
phase_ms[d]=$(since_ms "$t")
ovp_pass "(d) host2's addresses reused"

# ---------------------------------------------------------------------------------
ovp_step "stop host1 (SIGTERM) and etcd; cleanup leaves nothing"
ovp_daemon_stop host1 15
rc=$?
[[ $rc -eq 0 ]] || fail "overpassd host1 exited with status $rc on SIGTERM"
ovp_etcd_stop 10
grep -iE ' (E|C|F) \||"level":"(error|fatal|panic)"|panic' "$OVP_DIR/etcd.log" | head -n 5 | while read -r l; do ovp_info "etcd log: $l"; done
ovp_cleanup
ovp_leak_check || exit 1
ovp_info "phases (ms): a=${phase_ms[a]} b=${phase_ms[b]} c=${phase_ms[c]} e=${phase_ms[e]} d=${phase_ms[d]}; total $(now_ms) ms"
ovp_pass "cluster_etcd passed"
exit 0
