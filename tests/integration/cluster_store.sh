#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Two overpassd on a network store, started by the test in a management namespace on
# 198.19.0.254 (each host reaches it over its own management veth 198.19.0.N, while
# overpassd's uplink stays on the underlay veth). KIND is
#   etcd    a real etcd (/usr/bin/etcd), 2379;
#   consul  the in-tree fake Consul (tests/ctl/fake_consul), 8500, with a per-run ACL
#           token: the daemons get it by --store-token-file, and the test checks that
#           anonymous reads see nothing and no daemon request was refused or anonymous.
# The checks:
#   (a) a network created on host1 is usable on host2: attach there, ping across;
#   (b) containers ping each other by name across hosts;
#   (c) 5 + 5 concurrent attaches on the two hosts into one /24 never share an address
#       (attach outputs, endpoint ls on both hosts, every container's eth0);
#   (e) store unavailable for 30 s (see store_outage_begin for what that means per
#       KIND): traffic between existing containers goes on (loss <= 1 echo each way),
#       the daemons stay up and a write through the API ('network create') answers
#       with an error instead of hanging; when the store is back, a container attached
#       and a network created on host1 converge on host2, and nobody's endpoints
#       expire afterwards;
#   (d) kill -9 of host2's overpassd: within the liveness bound (etcd: lease TTL 10 s
#       + margin; Consul: session TTL 10 s x 2 + renew period TTL/3 + margin) host1
#       forgets host2 and its endpoints, and their addresses return to the pool, last:
#       new attaches on host1 get the addresses after the last one handed out, none of
#       host2's; in a full /29 (pool-net) they get exactly host2's former ones, read
#       from the store as it is now (on Consul, right after the session's end, while
#       the lock-delay still holds the keys). Real time: the fake Consul's clock is not
#       advanced.
# (e) runs before (d) so that the outage happens with both hosts alive.
# Usage: cluster_store.sh KIND BUILD_DIR (normally through cluster_etcd.sh /
# cluster_consul.sh)   Exit: 0 pass, 1 fail, 77 skip (not root / no store binary).
# Environment: OVP_CONSUL_OUTAGE=no_leader (default) | no_leader_all | stop: how the
# Consul outage is made (see store_outage_begin).
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../../tools/lib/netns.sh
source "$here/../../tools/lib/netns.sh"
# shellcheck source=../../tools/lib/store.sh
source "$here/../../tools/lib/store.sh"
KIND=${1:-}
BUILD_DIR=${2:-$here/../../build}

case "$KIND" in
etcd)
    ovp_init cluster_etcd
    ovp_etcd_need
    STORE=etcd
    LEASE_BOUND=25      # seconds: TTL 10 s + keep-alive period + watch delivery + margin
    RENEWED_AFTER=12    # seconds after the outage when every lease must have been renewed (> TTL)
    ;;
consul)
    ovp_init cluster_consul
    ovp_consul_need
    STORE="fake Consul"
    LEASE_BOUND=40      # seconds: session invalidated 2 x TTL (20 s) after the last renewal,
                        # which came at most TTL/3 (3.3 s) before the kill; + watch + margin
    RENEWED_AFTER=24    # > 2 x TTL + TTL/3: a session not renewed after the outage would be gone
    CONSUL_OUTAGE=${OVP_CONSUL_OUTAGE:-no_leader}
    [[ "$CONSUL_OUTAGE" =~ ^(no_leader|no_leader_all|stop)$ ]] \
        || { echo "OVP_CONSUL_OUTAGE must be no_leader, no_leader_all or stop" >&2; exit 2; }
    ;;
*)
    echo "usage: $0 etcd|consul BUILD_DIR" >&2
    exit 2
    ;;
esac
ovp_find_bins "$BUILD_DIR"
id=$OVP_ID
net=overlay-net
gw=10.0.2.1
OUTAGE=30               # seconds the store stays unavailable

t_start=${EPOCHREALTIME/[.,]/}
now_ms() { local t=${EPOCHREALTIME/[.,]/}; echo $(((t - t_start) / 1000)); }
since_ms() { local t=${EPOCHREALTIME/[.,]/}; echo $(((t - $1) / 1000)); }
declare -A phase_ms=()

# ---------------------------------------------------------------------------------
# what differs between the stores

store_start() {  # starts the store and waits for it; sets OVP_STORE_URL
    if [[ $KIND == etcd ]]; then
        ovp_info "$(ovp_etcd_cmdline)"
        ovp_etcd_start
        ovp_etcd_wait 20
    else
        ovp_info "$(ovp_consul_cmdline)"
        ovp_consul_start
        ovp_consul_wait 20
    fi
}

store_dump() {
    if [[ $KIND == etcd ]]; then
        echo "----- etcd keys under $OVP_ETCD_PREFIX/ -----"
        ovp_etcd_dump 2>&1 || echo "(etcd not answering)"
    else
        ovp_consul_resume 2>/dev/null
        ovp_consul_fault_clear 2>/dev/null
        echo "----- fake Consul keys under $OVP_CONSUL_PREFIX/ -----"
        ovp_consul_dump 2>&1 || echo "(fake Consul not answering)"
        echo "----- fake Consul sessions -----"
        ovp_consul_sessions 2>&1
    fi
}

# The outage.
#   etcd: the process is stopped (SIGTERM) and started again on the same data dir and
#   ports after OUTAGE s: connections refused meanwhile; the leases survive the restart
#   (etcd renews every lease when a leader takes over).
#   consul: the fake keeps its data in memory, so a kill and restart would not be an
#   outage but a new, empty cluster; the outage is made with its fault injection.
#   Default (OVP_CONSUL_OUTAGE=no_leader): every KV and txn request (/v1/kv/, /v1/txn:
#   all reads, writes and watches) answers 500 "No cluster leader" until the fault is
#   cleared OUTAGE s later -- what a client sees from a Consul agent whose servers are
#   down or have lost quorum, the Consul counterpart of the etcd stop/restart (a prompt
#   error, nothing applied; count 10^6 means "until cleared"). Session renewals keep
#   working: in real Consul sessions survive a leaderless period, because the newly
#   elected leader resets every session timer to TTL x 2 (leader.go
#   initializeSessionTimers), whereas the fake's deadlines keep running, so after 20 s
#   of failed renewals it would delete every key of both hosts (Behavior=delete) --
#   and answer a blocking query that was already waiting when the fault was set.
#   OVP_CONSUL_OUTAGE=no_leader_all fails /v1/session/ too, OVP_CONSUL_OUTAGE=stop
#   SIGSTOPs the fake by its PID (a hung server: connections accepted by the kernel,
#   never answered): both then model a 30 s partition between the hosts and a healthy
#   Consul, in which both sessions expire (see the report for what that does).
store_outage_begin() {
    if [[ $KIND == etcd ]]; then
        ovp_etcd_stop 10
        ovp_info "etcd stopped (status $?)"
    elif [[ $CONSUL_OUTAGE == no_leader ]]; then
        ovp_consul_fault '{"preset": "no_leader", "count": 1000000, "path": "/v1/kv/"}' \
            && ovp_consul_fault '{"preset": "no_leader", "count": 1000000, "path": "/v1/txn"}' \
            || fail "cannot inject the no_leader fault"
        ovp_info "fake Consul answers every /v1/kv/ and /v1/txn request 500 'No cluster leader' from now on"
    elif [[ $CONSUL_OUTAGE == no_leader_all ]]; then
        ovp_consul_fault '{"preset": "no_leader", "count": 1000000, "path": "/v1/"}' \
            || fail "cannot inject the no_leader fault"
        ovp_info "fake Consul answers every /v1/ request 500 'No cluster leader' from now on"
    else
        ovp_consul_pause || fail "SIGSTOP of the fake Consul"
        ovp_info "fake Consul (pid ${OVP_PID[consul]}) stopped with SIGSTOP"
    fi
}
store_outage_end() {
    if [[ $KIND == etcd ]]; then
        ovp_etcd_start
        ovp_etcd_wait 20
    elif [[ $CONSUL_OUTAGE == no_leader* ]]; then
        ovp_consul_fault_clear
    else
        ovp_consul_resume
    fi
}

# Failure: also show what the store holds and both daemons' view.
fail() {
    {
        store_dump
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
ovp_step "management network mgmt-$id (br0 $OVP_MGMT_IP/24) and $STORE on it"
ovp_mgmt_add
t=${EPOCHREALTIME/[.,]/}
store_start || fail "$STORE did not become ready"
ovp_pass "$STORE ready in $(since_ms "$t") ms (store URL $OVP_STORE_URL${OVP_STORE_DAEMON_ARGS[*]:+, daemons get ${OVP_STORE_DAEMON_ARGS[*]}})"

ovp_step "two hosts: underlay ul0 (VTEPs 198.18.0.1/.2, no kernel IP), management mg0 198.19.0.1/.2"
ovp_store_hosts 2
for i in 1 2; do
    ip netns exec "h$i-$id" ping -n -q -c 1 -W 2 "$OVP_MGMT_IP" >/dev/null \
        || fail "host$i cannot reach the store at $OVP_MGMT_IP over mg0"
    [[ -z "$(ip -n "h$i-$id" -4 -o addr show dev ul0)" ]] || fail "ul0 of host$i has a kernel address"
done
has_host() { ovp_cli_has "$1" "$2" host ls; }
ovp_eventually 10 has_host host1 "host2-$id" || fail "host1 does not list host2-$id"
ovp_eventually 10 has_host host2 "host1-$id" || fail "host2 does not list host1-$id"
ovp_cli host1 host ls
if [[ $KIND == consul ]]; then
    # ACL: no daemon request so far was anonymous or refused (checked before the
    # test's own anonymous probe), the data is invisible without the token (list
    # reads are filtered: 404) and visible with it.
    acl=$(ovp_consul_api GET /_fake/requests | python3 -c '
import json, sys
bad = [r for r in json.load(sys.stdin) if r["path"].startswith("/v1/")
       and (r["token_source"] is None or r["status"] in (401, 403))]
print(len(bad), " ".join("%s %s -> %s (%s)" % (r["method"], r["path"], r["status"], r["token_source"]) for r in bad[:5]))
') || fail "cannot read the fake's request log"
    [[ "${acl%% *}" == 0 ]] || fail "daemon requests without the token or refused by the ACL: $acl"
    code=$(ip netns exec "$OVP_MGMT_NS" curl -s -o /dev/null -w '%{http_code}' --max-time 5 \
        "$OVP_CONSUL_URL/v1/kv/$OVP_CONSUL_PREFIX/?recurse")
    [[ "$code" == 404 ]] || fail "anonymous recursive read of $OVP_CONSUL_PREFIX/ answered $code, expected 404 (ACL filtered)"
    [[ -n "$(ovp_consul_dump)" ]] || fail "no keys under $OVP_CONSUL_PREFIX/ with the token"
    ovp_info "sessions: $(ovp_consul_sessions | tr '\n' ';')"
    ovp_pass "ACL: anonymous list read filtered (404); every /v1/ request carried the token (X-Consul-Token)"
fi
ovp_pass "both daemons registered in $STORE"

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
ovp_step "(e) store outage: $STORE unavailable for ${OUTAGE} s while app2 <-> app1 ping (-i 0.5 -c 70)"
t=${EPOCHREALTIME/[.,]/}
ip netns exec "app2-$id" ping -n -i 0.5 -c 70 -W 1 "${EP_IP[app1]}" >"$OVP_DIR/outage-ping-21.log" 2>&1 &
ping21=$!
ovp_register_pid "$ping21" ping-app2-app1     # stopped by the cleanup if the test is interrupted
ip netns exec "app1-$id" ping -n -i 0.5 -c 70 -W 1 "${EP_IP[app2]}" >"$OVP_DIR/outage-ping-12.log" 2>&1 &
ping12=$!
ovp_register_pid "$ping12" ping-app1-app2
ovp_info "pings running (pids $ping21, $ping12)"
sleep 2
[[ $KIND == consul ]] && ovp_info "sessions before the outage: $(ovp_consul_sessions | tr '\n' ';')"
t_stop=${EPOCHREALTIME/[.,]/}
store_outage_begin
ovp_info "outage began ($(since_ms "$t_stop") ms)"
t_down=${EPOCHREALTIME/[.,]/}
probed=0
while (($(since_ms "$t_down") < OUTAGE * 1000)); do
    for d in host1 host2; do
        ovp_alive "$d" || fail "overpassd $d died while $STORE was unavailable ($(since_ms "$t_down") ms into the outage)"
    done
    if [[ $probed -eq 0 ]] && (($(since_ms "$t_down") > 12000)); then
        # past the lease TTL: the daemons still answer; a read may come from the cache,
        # a write must fail with an error, not hang
        probed=1
        tp=${EPOCHREALTIME/[.,]/}
        out=$(timeout 15 "$OVP" -H "unix://${OVP_SOCK[host1]}" endpoint ls 2>&1)
        ovp_info "host1 'endpoint ls' during the outage (status $?, $(since_ms "$tp") ms): $(head -n 2 <<<"$out" | tr '\n' ' ')"
        ovp_alive host1 || fail "overpassd host1 died answering 'endpoint ls' while $STORE was unavailable"
        tp=${EPOCHREALTIME/[.,]/}
        out=$(timeout 15 "$OVP" -H "unix://${OVP_SOCK[host1]}" network create --subnet 10.0.9.0/24 outage-net 2>&1)
        rc=$?
        ovp_info "host1 'network create outage-net' during the outage (status $rc, $(since_ms "$tp") ms): $(head -n 2 <<<"$out" | tr '\n' ' ')"
        [[ $rc -ne 124 ]] || fail "'network create' on host1 hung for 15 s while $STORE was unavailable"
        [[ $rc -ne 0 ]] || fail "'network create' on host1 reported success while $STORE was unavailable: $out"
        [[ -n "$out" ]] || fail "'network create' failed during the outage without an error message"
        ovp_alive host1 || fail "overpassd host1 died answering 'network create' while $STORE was unavailable"
    fi
    sleep 1
done
ovp_info "ending the outage after $(since_ms "$t_down") ms"
t_up=${EPOCHREALTIME/[.,]/}
store_outage_end || fail "$STORE did not come back"
ovp_info "$STORE back in $(since_ms "$t_up") ms"
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
    ovp_alive "$d" || fail "overpassd $d died after $STORE came back"
done

ovp_step "(e) after $STORE returns: attach 'late' on host1 and create network 'after-net' on host1; host2 converges"
ovp_container_add "late-$id"
host_of[late]=host1
t_att=${EPOCHREALTIME/[.,]/}
tries=0
while :; do
    tries=$((tries + 1))
    out=$(ovp_cli host1 endpoint attach --network "$net" --name late --netns "late-$id" 2>&1) && break
    ovp_warn "attach late on host1, try $tries, $(since_ms "$t_up") ms after $STORE came back: $out"
    (($(since_ms "$t_att") < 15000)) || fail "host1 cannot attach after $STORE came back: $out"
    sleep 1
done
_ovp_parse_attach late "$out" || fail "attach output: $out"
names+=(late)
ovp_info "late = ${EP_CIDR[late]} (attach try $tries, $(since_ms "$t_up") ms after $STORE came back)"
[[ -z "${owner[${EP_IP[late]}]:-}" ]] || fail "late got ${EP_IP[late]}, already used by ${owner[${EP_IP[late]}]}"
owner[${EP_IP[late]}]=late
late_on_host2() { eps_of host2 | grep -qx "late ${EP_CIDR[late]} host1-$id"; }
ovp_eventually 15 late_on_host2 || fail "host2 does not list 'late' 15 s after its attach (watch not re-established after the outage?)"
ovp_info "host2 lists late $(since_ms "$t_att") ms after the attach began"
ovp_cli host1 network create --subnet 10.0.3.0/24 after-net || fail "network create after-net on host1 after the outage"
after_net_on_host2() { ovp_cli_has host2 after-net network ls; }
ovp_cli_lacks host2 outage-net network ls || fail "host2 lists outage-net, whose creation failed during the outage"

ovp_eventually 15 after_net_on_host2 || fail "host2 does not list after-net 15 s after its creation"
ovp_ping_ok "app2-$id" "${EP_IP[late]}" 3 15 || fail "ping app2 (host2) -> late ${EP_IP[late]} (host1)"
ovp_ping_ok "app2-$id" late 3 15 || fail "ping app2 (host2) -> late by name"
ovp_ping_ok "late-$id" app2 3 15 || fail "ping late (host1) -> app2 by name"
for d in host1 host2; do
    st=$(ovp_cli "$d" stats --json 2>/dev/null | ovp_json_get liveness_losses 2>/dev/null || echo '?')
    ovp_info "$d liveness_losses after the outage: $st"
done
[[ $KIND == consul ]] && ovp_info "sessions after the outage: $(ovp_consul_sessions | tr '\n' ';')"
# The leases outlive the outage (or are replaced): RENEWED_AFTER s later (more than a
# lease / session lifetime), everything is still listed on both hosts.
left=$((RENEWED_AFTER * 1000 - $(since_ms "$t_up")))
((left > 0)) && sleep "$((left / 1000)).$(printf '%03d' $((left % 1000)))"
for d in host1 host2; do
    all_listed "$d" || fail "$d lost endpoints $(since_ms "$t_up") ms after $STORE came back: $(ovp_cli "$d" endpoint ls 2>&1)"
    if ! has_host "$d" "host1-$id" || ! has_host "$d" "host2-$id"; then
        fail "$d host ls after the outage: $(ovp_cli "$d" host ls 2>&1)"
    fi
done
phase_ms[e]=$(since_ms "$t")
ovp_pass "(e) changes after the outage converge on host2; all ${#names[@]} endpoints still listed $(since_ms "$t_up") ms after $STORE came back"

# ---------------------------------------------------------------------------------
ovp_step "(d) pool-net 10.0.4.0/29 filled: s1 s2 on host2, s3 s4 s5 on host1; a sixth is refused"
t=${EPOCHREALTIME/[.,]/}
ovp_cli host1 network create --subnet 10.0.4.0/29 pool-net || fail "network create pool-net on host1"
pool_net_on_host2() { ovp_cli_has host2 pool-net network ls; }
ovp_eventually 15 pool_net_on_host2 || fail "host2 does not list pool-net"
declare -A pool_ip=()
pool_attach() {  # DAEMON NAME: attaches NAME into pool-net, sets pool_ip[NAME]
    local out
    ovp_container_add "$2-$id"
    out=$(ovp_cli "$1" endpoint attach --network pool-net --name "$2" --netns "$2-$id" 2>&1) \
        || fail "attach $2 on $1 into pool-net: $out"
    pool_ip[$2]=$(awk '{sub("/.*", "", $2); print $2}' <<<"$out")
}
pool_attach host2 s1
pool_attach host2 s2
pool_attach host1 s3
pool_attach host1 s4
pool_attach host1 s5
got="${pool_ip[s1]} ${pool_ip[s2]} ${pool_ip[s3]} ${pool_ip[s4]} ${pool_ip[s5]}"
[[ "$got" == "10.0.4.2 10.0.4.3 10.0.4.4 10.0.4.5 10.0.4.6" ]] \
    || fail "s1..s5 got '$got', expected 10.0.4.2 to 10.0.4.6 in turn"
ovp_container_add "s6-$id"
out=$(ovp_cli host1 endpoint attach --network pool-net --name s6 --netns "s6-$id" 2>&1) \
    && fail "attach s6 into a full pool-net succeeded: $out"
grep -q exhausted <<<"$out" || fail "attach s6 into a full pool-net: '$out', expected 'exhausted'"
ovp_pass "pool-net full: $got handed out in turn, the sixth attach refused"

ovp_step "(d) kill -9 overpassd on host2: host1 forgets it within the liveness bound (${LEASE_BOUND} s, real time)"

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
if [[ $KIND == consul ]]; then
    sess=$(ovp_consul_sessions) || fail "cannot list the fake's sessions"
    ovp_info "sessions: $(tr '\n' ';' <<<"$sess")"
    ! grep -q " overpass-host2-$id " <<<"$sess" || fail "host2's session is still listed after host1 forgot host2"
fi
ovp_pass "(d) host2 and its ${#h2_names[@]} endpoints gone from host1 $gone_ms ms after kill -9"

ovp_step "(d) host2's leftovers: TAPs gone with the process; DPDK runtime dir and socket removed"
no_eth0() { ! ip -n "$1" link show dev eth0 >/dev/null 2>&1; }
for c in "${h2_names[@]}"; do
    ovp_eventually 5 no_eth0 "$c-$id" || fail "eth0 still in $c-$id after host2's overpassd died"
done
rm -rf -- "/var/run/dpdk/overpass-host2-$id" "${OVP_SOCK[host2]}"
ovp_pass "no TAP of host2 left"

ovp_step "(d) a full pool gets host2's addresses back: attach t1 t2 on host1 into pool-net at once"
# Right after host1 stopped listing host2's endpoints: on Consul the lock-delay of
# host2's ended session may still hold the keys for a moment; the allocator waits it out.
pool_attach host1 t1
pool_attach host1 t2
got="${pool_ip[t1]} ${pool_ip[t2]}"
[[ "$got" == "10.0.4.2 10.0.4.3" ]] || fail "t1 t2 got '$got', expected host2's former '10.0.4.2 10.0.4.3', the only free ones"
ovp_pass "(d) t1 t2 got host2's former $got in pool-net"

ovp_step "(d) freed addresses come back last: ${#h2_names[@]} new attaches on host1 go on after the last one handed out"
top=0
for c in "${names[@]}"; do
    o=${EP_IP[$c]##*.}
    ((o > top)) && top=$o
done
want=""
for ((i = 1; i <= ${#h2_names[@]}; i++)); do want+="10.0.2.$((top + i)) "; done
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
got=$(printf '%s\n' "${new_ips[@]}" | sort -V | tr '\n' ' ')
ovp_info "host2 had: ${h2_ips[*]}; the highest address handed out was 10.0.2.$top; new attaches on host1 got: $got"
[[ "$want" == "$got" ]] || fail "new attaches got '$got', expected '$want' (after the last address handed out; host2's wait)"

ovp_ping_ok "r1-$id" app1 2 15 || fail "ping r1 -> app1 by name"
phase_ms[d]=$(since_ms "$t")
ovp_pass "(d) new attaches got $got, after the last address handed out"

# ---------------------------------------------------------------------------------
ovp_step "stop host1 (SIGTERM) and $STORE; cleanup leaves nothing"
ovp_daemon_stop host1 15
rc=$?
[[ $rc -eq 0 ]] || fail "overpassd host1 exited with status $rc on SIGTERM"
if [[ $KIND == etcd ]]; then
    ovp_etcd_stop 10
    grep -iE ' (E|C|F) \||"level":"(error|fatal|panic)"|panic' "$OVP_DIR/etcd.log" | head -n 5 | while read -r l; do ovp_info "etcd log: $l"; done
else
    # host1 detached its endpoints and destroyed its session on SIGTERM
    left_keys=$(ovp_consul_dump 2>&1)
    [[ -z "$left_keys" ]] || ovp_info "keys left under $OVP_CONSUL_PREFIX/ after host1's SIGTERM: $(tr '\n' ';' <<<"$left_keys")"
    ovp_consul_stop 10
    rc=$?
    [[ $rc -eq 0 ]] || fail "fake Consul exited with status $rc on SIGTERM"
    grep -q 'internal error' "$OVP_DIR/consul.log" && fail "the fake Consul logged internal errors: $(grep -A3 'internal error' "$OVP_DIR/consul.log" | head -n 8)"
fi
ovp_cleanup
ovp_leak_check || exit 1
ovp_info "phases (ms): a=${phase_ms[a]} b=${phase_ms[b]} c=${phase_ms[c]} e=${phase_ms[e]} d=${phase_ms[d]}; total $(now_ms) ms"
ovp_pass "cluster_$KIND passed"
exit 0
