#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Error paths of the overpass CLI and of overpassd's options: every user mistake gives
# one clear line on stderr and a non-zero exit, changes nothing, and leaves nothing
# running. The daemon survives every refused request.
# Usage: cli_errors.sh BUILD_DIR        Exit: 0 pass, 1 fail, 77 skip (not root).
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../../tools/lib/netns.sh
source "$here/../../tools/lib/netns.sh"
BUILD_DIR=${1:-$here/../../build}

ovp_init cli_errors
ovp_find_bins "$BUILD_DIR"
id=$OVP_ID
failures=0

# expect_err DESC PATTERN CMD...: CMD must exit non-zero with exactly one non-empty
# line on stderr matching PATTERN (extended regex, case-insensitive), nothing on stdout.
expect_err() {
    local desc=$1 pat=$2 rc lines
    shift 2
    "$@" >"$OVP_DIR/out" 2>"$OVP_DIR/err"
    rc=$?
    daemon_check "$desc"
    lines=$(grep -c . "$OVP_DIR/err")
    if [[ $rc -eq 0 ]]; then
        echo "FAIL $desc: exit 0 (stdout: $(head -c 300 "$OVP_DIR/out"))" >&2
    elif [[ $lines -ne 1 ]]; then
        echo "FAIL $desc: exit $rc but $lines lines on stderr:" >&2
        head -20 "$OVP_DIR/err" >&2
    elif ! grep -qiE -- "$pat" "$OVP_DIR/err"; then
        echo "FAIL $desc: exit $rc, message does not match /$pat/: $(cat "$OVP_DIR/err")" >&2
    elif [[ -s "$OVP_DIR/out" ]]; then
        echo "FAIL $desc: exit $rc with output on stdout: $(head -c 300 "$OVP_DIR/out")" >&2
    else
        ovp_pass "$desc (exit $rc): $(cat "$OVP_DIR/err")"
        return 0
    fi
    failures=$((failures + 1))
    return 1
}
expect_ok() {
    local desc=$1
    shift
    "$@" >"$OVP_DIR/out" 2>"$OVP_DIR/err"
    local rc=$?
    daemon_check "$desc"
    if [[ $rc -eq 0 ]]; then
        ovp_pass "$desc"
        return 0
    fi
    echo "FAIL $desc: exit $rc: $(cat "$OVP_DIR/err")" >&2
    failures=$((failures + 1))
    return 1
}
# Once the daemon runs, every request must leave it running: a crash ends the test
# with the request that caused it.
daemon_up=0
daemon_check() {
    [[ $daemon_up -eq 1 ]] || return 0
    ovp_alive host1 && return 0
    wait "${OVP_PID[host1]}" 2>/dev/null
    ovp_fail "overpassd died (exit status $?) on: $1"
}

ovp_step "CLI without a daemon"
expect_err "no daemon at -H socket" "$OVP_DIR/none.sock|connect|daemon|running" \
    "$OVP" -H "unix://$OVP_DIR/none.sock" host ls
expect_err "no daemon at \$OVERPASS_HOST" "$OVP_DIR/none.sock|connect|daemon|running" \
    env OVERPASS_HOST="unix://$OVP_DIR/none.sock" "$OVP" network ls
expect_err "bad -H URL" "tcp://|unix://|address" "$OVP" -H tcp://198.19.0.1:1 host ls
expect_err "unknown command" "frobnicate|unknown" "$OVP" -H "unix://$OVP_DIR/none.sock" frobnicate
expect_err "unknown flag" "--bogus|unknown|flag" "$OVP" -H "unix://$OVP_DIR/none.sock" network ls --bogus

ovp_step "an overpass host namespace (h1) for the daemons below"
ovp_switch_add
ovp_host_add "h1-$id"

ovp_step "bad overpassd options: one line, non-zero exit, nothing left running"
# Each case runs in the host namespace with its own host id (own DPDK prefix) and must
# exit by itself within 20 s.
case_n=0
bad_daemon() {  # DESC PATTERN MAX_LINES OPTIONS...
    local desc=$1 pat=$2 max=$3 i rc lines label hid
    shift 3
    case_n=$((case_n + 1))
    label=bad$case_n
    hid=bad$case_n-$id
    ovp_register_path "/var/run/dpdk/overpass-$hid"
    local args=()
    for a in "$@"; do args+=("${a//@HID@/$hid}"); done
    ovp_bg_in "$label" "h1-$id" "$OVPD" "${args[@]}"
    for ((i = 0; i < 200; i++)); do
        ovp_alive "$label" || break
        sleep 0.1
    done
    if ovp_alive "$label"; then
        ovp_stop "$label" 5
        echo "FAIL $desc: overpassd still running after 20 s (stopped it)" >&2
        failures=$((failures + 1))
        return 1
    fi
    wait "${OVP_PID[$label]}" 2>/dev/null
    rc=$?
    lines=$(grep -c . "${OVP_LOG[$label]}")
    if [[ $rc -eq 0 ]]; then
        echo "FAIL $desc: exit 0" >&2
    elif ! grep -qiE -- "$pat" "${OVP_LOG[$label]}"; then
        echo "FAIL $desc: exit $rc, no line matches /$pat/:" >&2
        head -20 "${OVP_LOG[$label]}" >&2
    elif [[ $lines -gt $max ]]; then
        echo "FAIL $desc: exit $rc, $lines lines of output (expected $max):" >&2
        head -20 "${OVP_LOG[$label]}" >&2
    elif [[ -e "$OVP_DIR/$label.sock" ]]; then
        echo "FAIL $desc: exit $rc but left its API socket $OVP_DIR/$label.sock" >&2
    else
        ovp_pass "$desc (exit $rc, $lines line(s)): $(grep -iE -m1 -- "$pat" "${OVP_LOG[$label]}")"
        [[ $lines -gt 1 ]] && { ovp_warn "$desc: $lines lines:"; cat "${OVP_LOG[$label]}" >&2; }
        unset "OVP_LOG[$label]"   # passed: keep it out of the failure log dump
        return 0
    fi
    failures=$((failures + 1))
    return 1
}
store="file://$OVP_DIR/bad-store.json"
common=(--store "$store" --no-huge --workers 1)
bad_daemon "unknown flag (last on the line)" "unknown.*bogus" 1 --host-id @HID@ --vtep-ip 198.18.0.1 \
    --uplink net_af_packet0,iface=ul0 --api "$OVP_DIR/bad1.sock" "${common[@]}" --bogus
bad_daemon "unknown flag (with a value)" "unknown.*bogus" 1 --host-id @HID@ --vtep-ip 198.18.0.1 \
    --bogus 1 --uplink net_af_packet0,iface=ul0 --api "$OVP_DIR/bad11.sock" "${common[@]}"
bad_daemon "bad --vtep-ip" "vtep|300\.1\.1\.1" 1 --host-id @HID@ --vtep-ip 300.1.1.1 \
    --uplink net_af_packet0,iface=ul0 --api "$OVP_DIR/bad2.sock" "${common[@]}"
bad_daemon "missing --vtep-ip" "vtep" 1 --host-id @HID@ \
    --uplink net_af_packet0,iface=ul0 --api "$OVP_DIR/bad3.sock" "${common[@]}"
bad_daemon "missing --host-id" "host-id|host id" 1 --vtep-ip 198.18.0.1 \
    --uplink net_af_packet0,iface=ul0 --api "$OVP_DIR/bad4.sock" "${common[@]}"
bad_daemon "malformed --uplink" "uplink|bogus0" 1 --host-id @HID@ --vtep-ip 198.18.0.1 \
    --uplink bogus0 --api "$OVP_DIR/bad5.sock" "${common[@]}"
printf '{"host-id": "x", "vtep-ip": \n' >"$OVP_DIR/bad.json"
bad_daemon "bad --config JSON" "config|json" 1 --config "$OVP_DIR/bad.json" \
    --uplink net_af_packet0,iface=ul0 --api "$OVP_DIR/bad6.sock" "${common[@]}"
echo '{"host-id": "x", "vtep-ip": "198.18.0.1", "no-such-key": 1}' >"$OVP_DIR/unknown.json"
bad_daemon "unknown key in --config" "no-such-key|unknown" 1 --config "$OVP_DIR/unknown.json" \
    --uplink net_af_packet0,iface=ul0 --api "$OVP_DIR/bad7.sock" "${common[@]}"
bad_daemon "bad --store URL" "store" 1 --host-id @HID@ --vtep-ip 198.18.0.1 \
    --uplink net_af_packet0,iface=ul0 --api "$OVP_DIR/bad8.sock" --store /no/scheme --no-huge
# This one fails after EAL init (the interface is looked up by the af_packet PMD), so
# EAL/PMD lines may come before overpassd's own; more than one line is reported as a
# warning, not a failure.
bad_daemon "--uplink on a missing interface" "uplink|nosuchif0" 40 --host-id @HID@ --vtep-ip 198.18.0.1 \
    --uplink net_af_packet0,iface=nosuchif0 --api "$OVP_DIR/bad9.sock" "${common[@]}"
bad_daemon "unknown uplink driver" "uplink|net_nosuchdrv0" 40 --host-id @HID@ --vtep-ip 198.18.0.1 \
    --uplink net_nosuchdrv0 --api "$OVP_DIR/bad10.sock" "${common[@]}"
bad_daemon "malformed --metrics" "metrics.*nonsense" 1 --host-id @HID@ --vtep-ip 198.18.0.1 \
    --uplink net_af_packet0,iface=ul0 --api "$OVP_DIR/bad12.sock" "${common[@]}" --metrics nonsense
bad_daemon "--metrics port out of range" "metrics.*70000" 1 --host-id @HID@ --vtep-ip 198.18.0.1 \
    --uplink net_af_packet0,iface=ul0 --api "$OVP_DIR/bad13.sock" "${common[@]}" --metrics 127.0.0.1:70000
# The metrics port taken by another process: found after EAL init, so EAL lines may come
# first (warning only, as above); no API socket may be left behind.
ovp_bg_in holder "h1-$id" python3 -c 'import socket, time
s = socket.socket(); s.bind(("127.0.0.1", 19555)); s.listen(); print("bound", flush=True); time.sleep(120)'
# Until the holder has bound the port, the daemon below would find it free and run.
holder_bound() { grep -q bound "${OVP_LOG[holder]}" 2>/dev/null; }
ovp_eventually 20 holder_bound || ovp_fail "the port holder did not bind 127.0.0.1:19555: $(cat "${OVP_LOG[holder]}")"
bad_daemon "--metrics port in use" "metrics.*19555.*listen|cannot listen" 40 --host-id @HID@ \
    --vtep-ip 198.18.0.1 --uplink net_af_packet0,iface=ul0 --api "$OVP_DIR/bad14.sock" "${common[@]}" \
    --metrics 127.0.0.1:19555
ovp_stop holder 5
unset "OVP_LOG[holder]"

ovp_step "overpassd on host1"
ovp_daemon_start host1 "h1-$id" "host1-$id" 198.18.0.1
ovp_daemon_wait host1 30 || ovp_fail "overpassd host1 did not become ready"
daemon_up=1
cli() { ovp_cli host1 "$@"; }
for c in c1 c2 c3 c4 c5 c6; do ovp_container_add "$c-$id"; done

ovp_step "unknown network"
expect_err "network inspect nosuch" "nosuch" cli network inspect nosuch
expect_err "network rm nosuch" "nosuch" cli network rm nosuch
expect_err "endpoint attach to nosuch" "nosuch" \
    cli endpoint attach --network nosuch --name x1 --netns "c1-$id"

ovp_step "bad network requests"
expect_ok "network create net1 10.0.2.0/24" cli network create --subnet 10.0.2.0/24 net1
vni1=$(cli network inspect net1 | ovp_json_get vni)
daemon_check "network inspect net1"
[[ "$vni1" =~ ^[0-9]+$ ]] || ovp_fail "network inspect net1 gave no VNI"
expect_err "same subnet" "subnet|overlap|10\.0\.2\.0/24" cli network create --subnet 10.0.2.0/24 net2
expect_err "overlapping subnet 10.0.0.0/16" "subnet|overlap" cli network create --subnet 10.0.0.0/16 net2
expect_err "name taken" "net1|exists|taken" cli network create --subnet 10.0.5.0/24 net1
expect_err "VNI taken" "vni|$vni1" cli network create --subnet 10.0.6.0/24 --vni "$vni1" net3
expect_err "host bits set in subnet" "subnet|10\.0\.7\.1" cli network create --subnet 10.0.7.1/24 net4
expect_err "/31 too small" "subnet|small|/31" cli network create --subnet 10.0.7.0/31 net4
expect_err "gateway outside subnet" "gateway" cli network create --subnet 10.0.8.0/24 --gateway 10.0.9.1 net4
expect_err "bad network name" "name" cli network create --subnet 10.0.8.0/24 "bad name!"
expect_err "mtu out of range" "mtu" cli network create --subnet 10.0.8.0/24 --mtu 100 net4
expect_err "vni out of range" "vni" cli network create --subnet 10.0.8.0/24 --vni 16777216 net4
expect_err "non-numeric vni" "vni|number" cli network create --subnet 10.0.8.0/24 --vni abc net4
cli network ls
if ! ovp_cli_lacks host1 net2 network ls || ! ovp_cli_lacks host1 net3 network ls ||
    ! ovp_cli_lacks host1 net4 network ls; then
    echo "FAIL a refused network was created anyway" >&2
    failures=$((failures + 1))
fi

ovp_step "address pool exhaustion (10.0.9.0/30: one address besides the gateway)"
expect_ok "network create tiny 10.0.9.0/30" cli network create --subnet 10.0.9.0/30 tiny
expect_ok "attach e1 to tiny" cli endpoint attach --network tiny --name e1 --netns "c1-$id"
expect_err "attach e2 to a full pool" "exhaust|pool|full|no free" \
    cli endpoint attach --network tiny --name e2 --netns "c2-$id"
if ip -n "c2-$id" link show dev eth0 >/dev/null 2>&1; then
    echo "FAIL refused attach left an eth0 in c2-$id" >&2
    failures=$((failures + 1))
fi

ovp_step "bad attach requests"
# the interfaces of a container namespace, but lo: what a refused attach must not change
ifaces() { ip -n "$1" -o link show | awk -F': ' '{print $2}' | sed 's/@.*//' | grep -vx lo | sort | tr '\n' ' '; }
expect_ok "attach dup to net1 (c3)" cli endpoint attach --network net1 --name dup --netns "c3-$id"
expect_err "endpoint name taken in the same network" "dup|taken|exists" \
    cli endpoint attach --network net1 --name dup --netns "c4-$id"
[[ -z "$(ifaces "c4-$id")" ]] || {
    echo "FAIL refused attach left interfaces in c4-$id: $(ifaces "c4-$id")" >&2
    failures=$((failures + 1))
}
expect_err "missing netns" "namespace|netns|nosuch-ns" \
    cli endpoint attach --network net1 --name x2 --netns "nosuch-ns-$id"
expect_err "neither --netns nor --vhost-user" "netns|vhost" cli endpoint attach --network net1 --name x3
expect_err "vhost-user socket in a missing directory" "vhost|socket|director" \
    cli endpoint attach --network net1 --name x4 --vhost-user "$OVP_DIR/nosuchdir/x4.sock"
# A live socket at the path (here the daemon's own API socket) is not a stale vhost-user
# socket: refused, and left in place (daemon_check asks the daemon through it).
expect_err "vhost-user path of a socket in use" "in use" \
    cli endpoint attach --network net1 --name x4 --vhost-user "${OVP_SOCK[host1]}"
[[ -S "${OVP_SOCK[host1]}" ]] || {
    echo "FAIL the API socket ${OVP_SOCK[host1]} is gone after a vhost-user attach named it" >&2
    failures=$((failures + 1))
}
: >"$OVP_DIR/plain-file"
expect_err "vhost-user path of a regular file" "not a socket" \
    cli endpoint attach --network net1 --name x4 --vhost-user "$OVP_DIR/plain-file"
[[ -f "$OVP_DIR/plain-file" ]] || {
    echo "FAIL a regular file at the vhost-user path was removed" >&2
    failures=$((failures + 1))
}
expect_err "detach unknown endpoint" "nosuch|not found" cli endpoint detach nosuch
# A container that already has an eth0: the attach must fail as a whole (no TAP left
# behind, no address claimed, no endpoint listed).
ip -n "c5-$id" link add eth0 type veth peer name eth0p || ovp_fail "veth eth0 in c5"
before=$(ifaces "c5-$id")
expect_err "attach into a namespace that already has eth0" "eth0|exists|x6" \
    cli endpoint attach --network net1 --name x6 --netns "c5-$id"
after=$(ifaces "c5-$id")
[[ "$after" == "$before" ]] || {
    echo "FAIL refused attach changed c5-$id's interfaces: '$before' -> '$after'" >&2
    failures=$((failures + 1))
}
ovp_cli_lacks host1 x6 endpoint ls || {
    echo "FAIL refused endpoint x6 is listed: $(cli endpoint ls 2>&1)" >&2
    failures=$((failures + 1))
}
ovp_step "the same endpoint name in two networks: detach needs --network"
expect_ok "attach e1 to net1 too (c2)" cli endpoint attach --network net1 --name e1 --netns "c2-$id"
expect_err "ambiguous detach e1" "e1|network" cli endpoint detach e1
expect_ok "detach e1 --network net1" cli endpoint detach --network net1 e1
expect_ok "a good attach after the refusals (c4)" cli endpoint attach --network net1 --name x5 --netns "c4-$id"
# net1 handed out .2 (dup) and .3 (e1, now detached); addresses go out in turn, so the
# next is .4 (e1's .3 waits for the rest of the pool), and refused attaches claim nothing
# and do not move the turn on
ip4=$(ip -n "c4-$id" -o -4 addr show dev eth0 2>/dev/null | awk '{print $4}')
[[ "$ip4" == 10.0.2.4/24 ]] || {
    echo "FAIL x5 got '$ip4', expected 10.0.2.4/24 (did a refused attach keep an address or move the turn on?)" >&2
    failures=$((failures + 1))
}

ovp_step "a namespace's own resolv.conf is kept aside while attached and put back on detach"
mkdir -p "/etc/netns/c6-$id"
printf '# the namespace'"'"'s own\nnameserver 127.0.0.53\n' >"/etc/netns/c6-$id/resolv.conf"
mine=$(cat "/etc/netns/c6-$id/resolv.conf")
expect_ok "attach x7 into c6, which has a resolv.conf" cli endpoint attach --network net1 --name x7 --netns "c6-$id"
grep -q "written by overpassd" "/etc/netns/c6-$id/resolv.conf" || {
    echo "FAIL c6's resolv.conf is not overpassd's while x7 is attached" >&2
    failures=$((failures + 1))
}
expect_ok "detach x7" cli endpoint detach --network net1 x7
[[ "$(cat "/etc/netns/c6-$id/resolv.conf" 2>/dev/null)" == "$mine" ]] || {
    echo "FAIL c6's own resolv.conf was not put back: '$(cat "/etc/netns/c6-$id/resolv.conf" 2>&1)'" >&2
    failures=$((failures + 1))
}

ovp_step "network rm with endpoints attached"
expect_err "rm tiny while e1 is attached" "endpoint|attached|in use" cli network rm tiny
expect_ok "detach e1" cli endpoint detach e1
expect_ok "rm tiny after detach" cli network rm tiny
if ! ovp_cli_lacks host1 tiny network ls; then
    echo "FAIL tiny still listed after rm" >&2
    failures=$((failures + 1))
fi
expect_ok "subnet of a removed network is free again" cli network create --subnet 10.0.9.0/30 tiny2

ovp_step "the daemon survived every refused request, and kept no stray TAP"
# TAPs are created in the daemon's namespace and moved into containers: h1 keeps only ul0
[[ "$(ifaces "h1-$id")" == "ul0 " ]] || {
    echo "FAIL host namespace h1-$id holds stray interfaces: $(ifaces "h1-$id")" >&2
    failures=$((failures + 1))
}
expect_ok "host ls" cli host ls
daemon_up=0
ovp_daemon_stop host1 15
rc=$?
[[ $rc -eq 0 ]] || { echo "FAIL host1 exit status $rc on SIGTERM" >&2; failures=$((failures + 1)); }

[[ $failures -eq 0 ]] || ovp_fail "$failures check(s) failed (see FAIL lines above)"

ovp_step "cleanup leaves nothing"
ovp_cleanup
ovp_leak_check || exit 1
ovp_pass "cli_errors passed"
exit 0
