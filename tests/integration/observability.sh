#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Observability end to end, on two overpass hosts (host1 on hugepages so that
# dpdk-dumpcap can attach to it as a secondary process; host2 with --no-huge):
#  a) exact counters: N UDP datagrams app1 -> app2 move every /metrics counter on their
#     path by exactly N (bytes by exactly N * frame size); K frames with a spoofed source
#     IP move overpass_dropped_packets_total{reason="spoofed_ip"} by exactly K;
#  b) promtool check metrics accepts both hosts' exposition;
#  c) a real Prometheus server scrapes host1 and answers queries;
#  d) DPDK telemetry (/overpass/ports, /overpass/drops) agrees with /metrics;
#  e) dpdk-dumpcap captures VXLAN on host1's uplink with the network's VNI;
#  f) detaching an endpoint removes its series; the remote VTEP's series stay.
# Usage: observability.sh BUILD_DIR        Exit: 0 pass, 1 fail, 77 skip (not root).
# shellcheck disable=SC2154,SC2317  # new_scrape sets variables by name; traps call functions
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../../tools/lib/netns.sh
source "$here/../../tools/lib/netns.sh"
BUILD_DIR=${1:-$here/../../build}

ovp_init observability
ovp_find_bins "$BUILD_DIR"
id=$OVP_ID
tool=$here/observability_tool.py
net=obs-net
H1ID=host1-$id
H2ID=host2-$id
N=1000          # UDP datagrams in the measured window
K=100           # spoofed frames
P=100           # UDP payload bytes; the frame is P + 42 (Ethernet 14, IPv4 20, UDP 8)
FRAME=$((P + 42))
OUTER=$((FRAME + 50))   # + outer Ethernet 14, IPv4 20, UDP 8, VXLAN 8
UDP_PORT=5001
SPOOF_IP=10.0.2.250
PROM_PORT=19090
METRICS=127.0.0.1:9417  # overpassd's default; each host namespace has its own loopback

for b in curl python3 promtool prometheus dpdk-dumpcap dpdk-telemetry.py tshark; do
    command -v "$b" >/dev/null 2>&1 || ovp_fail "$b not found (tools/install-deps.sh installs it)"
done

# ---------------------------------------------------------------------------------
# hugepages for host1: restored after ovp_cleanup has stopped every process

HP_NR=/proc/sys/vm/nr_hugepages
HP_DIR=/dev/hugepages
HP_WANT=256                 # free 2 MB pages wanted (the mbuf pool alone is ~40 MB)
_obs_hp_old=""
_obs_hp_mounted=0
hp_files() { compgen -G "$HP_DIR/overpass-${H1ID}map_*" || true; }
obs_on_exit() {
    local rc=$?
    trap - EXIT INT TERM
    ovp_cleanup
    # a daemon that had to be SIGKILLed leaves its hugepage files: never leave ours
    local f
    for f in $(hp_files); do rm -f -- "$f"; done
    [[ $_obs_hp_mounted -eq 1 ]] && umount "$HP_DIR" 2>/dev/null
    [[ -n "$_obs_hp_old" ]] && echo "$_obs_hp_old" >"$HP_NR" 2>/dev/null
    exit "$rc"
}
trap obs_on_exit EXIT

hugepages_setup() {
    local free total
    free=$(awk '/^HugePages_Free:/ {print $2}' /proc/meminfo)
    total=$(cat "$HP_NR")
    if ((free < HP_WANT)); then
        _obs_hp_old=$total
        echo $((total + HP_WANT - free)) >"$HP_NR" || ovp_fail "cannot write $HP_NR"
        free=$(awk '/^HugePages_Free:/ {print $2}' /proc/meminfo)
        ((free >= HP_WANT)) || ovp_fail "only $free free hugepages after raising nr_hugepages (want $HP_WANT)"
        ovp_info "nr_hugepages $total -> $(cat "$HP_NR") (restored on exit)"
    fi
    mkdir -p "$HP_DIR"
    if ! mountpoint -q "$HP_DIR"; then
        mount -t hugetlbfs nodev "$HP_DIR" || ovp_fail "mount hugetlbfs on $HP_DIR"
        _obs_hp_mounted=1
    fi
}

# ---------------------------------------------------------------------------------
# metrics helpers (label-aware parsing in observability_tool.py)

# scrape DAEMON FILE: host DAEMON's /metrics into FILE
scrape() {
    ip netns exec "${OVP_HOSTNS[$1]}" curl -sf --max-time 5 -o "$2" "http://$METRICS/metrics"
}
snap=0
# new_scrape VAR DAEMON: scrapes into a new file and sets VAR to its name
new_scrape() {
    snap=$((snap + 1))
    local f=$OVP_DIR/$2.$snap.prom
    scrape "$2" "$f" || ovp_fail "GET http://$METRICS/metrics on $2 failed"
    printf -v "$1" '%s' "$f"
}
# mq FILE QUERY...: answers every query (observability_tool.py q) in one python run,
# one per line, into the array MQ. Fails when any query does (its line says why).
MQ=()
mq() {
    local f=$1 out rc
    shift
    out=$(printf '%s\n' "$@" | python3 "$tool" q "$f")
    rc=$?
    mapfile -t MQ <<<"$out"
    return $rc
}

# Exact-delta checks, collected with expect and run in one python call by run_checks.
chk=()
expect() { chk+=("$*"); }  # BEFORE AFTER WANT get|sum NAME [LABEL=VALUE...]
run_checks() {  # WHAT
    local out rc
    out=$(printf '%s\n' "${chk[@]}" | python3 "$tool" deltas)
    rc=$?
    chk=()
    printf '%s\n' "$out"
    [[ $rc -eq 0 ]] || ovp_fail "$1: $(tail -n 1 <<<"$out") (MISMATCH lines above)"
}
# settle WHAT CHECKS_FN VAR DAEMON [VAR DAEMON...]: a worker adds a burst to a port's
# counters after rte_eth_tx_burst() has handed it on, so a receiver can hold the frames
# before /metrics counts them (for longer when the worker is preempted on a loaded
# machine). Scrapes each DAEMON into VAR and evaluates CHECKS_FN's exact checks (it calls
# expect with the VARs) until they all hold, up to 10 s; then runs them for the record,
# failing with the mismatches of the last scrape if they never held. Counters only grow:
# a delta that went past its exact value never comes back, so this waits out the lag
# and nothing else.
settle() {
    local what=$1 fn=$2 i j
    shift 2
    local pairs=("$@")
    for ((i = 0; i < 50; i++)); do
        for ((j = 0; j < ${#pairs[@]}; j += 2)); do new_scrape "${pairs[j]}" "${pairs[j + 1]}"; done
        "$fn"
        printf '%s\n' "${chk[@]}" | python3 "$tool" deltas >/dev/null 2>&1 && break
        chk=()
        sleep 0.2
    done
    if ((${#chk[@]} == 0)); then
        "$fn"   # never held: the last scrape's MISMATCH lines say why
    elif ((i > 0)); then
        ovp_info "$what: counters settled after $i re-scrape(s)"
    fi
    run_checks "$what"
}

# ---------------------------------------------------------------------------------

ovp_step "hugepages for host1 (dpdk-dumpcap needs a hugepage primary); two hosts on one underlay"
hugepages_setup
ovp_switch_add
ovp_host_add "h1-$id"
ovp_host_add "h2-$id"
h1_args=${OVP_DAEMON_ARGS//--no-huge/}
OVP_DAEMON_ARGS=$h1_args ovp_daemon_start host1 "h1-$id" "$H1ID" 198.18.0.1
ovp_daemon_start host2 "h2-$id" "$H2ID" 198.18.0.2
ovp_daemon_wait host1 30 || ovp_fail "overpassd host1 (hugepages, args: $h1_args) did not become ready"
ovp_daemon_wait host2 30 || ovp_fail "overpassd host2 did not become ready"
[[ -n "$(hp_files)" ]] || ovp_fail "host1 runs but has no hugepage files $HP_DIR/overpass-${H1ID}map_*"
! grep -q "packet capture (dpdk-dumpcap) unavailable" "${OVP_LOG[host1]}" ||
    ovp_fail "host1 says packet capture is unavailable: $(grep 'capture' "${OVP_LOG[host1]}")"
ovp_pass "host1 on hugepages ($(hp_files | wc -l) files), host2 --no-huge"

ovp_step "network $net 10.0.2.0/24; app1 on host1, app2 on host2; ping both ways"
ovp_cli host1 network create --subnet 10.0.2.0/24 "$net" || ovp_fail "network create"
net_on_host2() { ovp_cli_has host2 "$net" network ls; }
ovp_eventually 10 net_on_host2 || ovp_fail "host2 does not see $net: $(ovp_cli host2 network ls 2>&1)"
inspect=$(ovp_cli host1 network inspect "$net") || ovp_fail "network inspect: $inspect"
vni=$(ovp_json_get vni <<<"$inspect") || ovp_fail "inspect has no vni: $inspect"
[[ "$vni" =~ ^[0-9]+$ ]] || ovp_fail "inspect vni '$vni'"
ovp_container_add "app1-$id"
ovp_container_add "app2-$id"
ovp_attach host1 "$net" app1 "app1-$id" || ovp_fail "attach app1"
ovp_attach host2 "$net" app2 "app2-$id" || ovp_fail "attach app2"
IP1=${EP_IP[app1]} MAC1=${EP_MAC[app1]} IP2=${EP_IP[app2]} MAC2=${EP_MAC[app2]}
[[ "$SPOOF_IP" != "$IP1" && "$SPOOF_IP" != "$IP2" ]] || ovp_fail "$SPOOF_IP was given to an endpoint"
ovp_ping_ok "app1-$id" "$IP2" 3 15 || ovp_fail "ping app1 -> app2 ($IP2)"
ovp_ping_ok "app2-$id" "$IP1" 3 15 || ovp_fail "ping app2 -> app1 ($IP1)"
ovp_pass "vni $vni; app1 $IP1 $MAC1, app2 $IP2 $MAC2"

ovp_step "quiet containers: static neighbours, IPv6 off, no packet on either port for 1 s"
# Nothing may cross the overlay during the measured windows but what the test sends:
# permanent neighbour entries (no ARP), IPv6 off (no RS/MLD/ND), UDP to a bound port
# (no ICMP port unreachable) and no names (no DNS).
ip -n "app1-$id" neigh replace "$IP2" lladdr "$MAC2" dev eth0 nud permanent || ovp_fail "neigh app1"
ip -n "app2-$id" neigh replace "$IP1" lladdr "$MAC1" dev eth0 nud permanent || ovp_fail "neigh app2"
for c in app1 app2; do
    v=$(ip netns exec "$c-$id" cat /proc/sys/net/ipv6/conf/eth0/disable_ipv6 2>/dev/null || echo 1)
    [[ "$v" == 1 ]] || ovp_fail "IPv6 is on for eth0 in $c-$id"
done
sleep 0.5
new_scrape q1 host1
new_scrape q2 host2
sleep 1
new_scrape q1b host1
new_scrape q2b host2
for k in rx_packets tx_packets; do
    expect "$q1" "$q1b" 0 get "overpass_port_${k}_total" endpoint=app1
    expect "$q2" "$q2b" 0 get "overpass_port_${k}_total" endpoint=app2
done
run_checks "containers not quiet (something other than the test's traffic is flowing)"
ovp_pass "quiet"

# ---------------------------------------------------------------------------------
ovp_step "a) $N UDP datagrams of $P bytes app1 -> app2: exact deltas on both hosts"
new_scrape b1 host1
new_scrape b2 host2
k_tx0=$(ovp_ifstat "app1-$id" eth0 tx_packets)
k_dr0=$(ovp_ifstat "app1-$id" eth0 tx_dropped)
ovp_bg_in receiver "app2-$id" timeout 60 python3 "$tool" udp-recv "$UDP_PORT" "$N" "$P" 10
rpid=$OVP_LAST_PID
rx_ready() { grep -q '^ready' "${OVP_LOG[receiver]}"; }
ovp_eventually 10 rx_ready || ovp_fail "UDP receiver in app2 did not start: $(cat "${OVP_LOG[receiver]}")"
ip netns exec "app1-$id" timeout 60 python3 "$tool" udp-send "$IP2" "$UDP_PORT" "$N" "$P" ||
    ovp_fail "UDP sender in app1 failed"
wait "$rpid"
rrc=$?
got=$(cat "${OVP_LOG[receiver]}")
[[ $rrc -eq 0 ]] || ovp_fail "receiver exited with $rrc: $got"
k_tx1=$(ovp_ifstat "app1-$id" eth0 tx_packets)
k_dr1=$(ovp_ifstat "app1-$id" eth0 tx_dropped)
ovp_info "app1 eth0 (kernel) sent $((k_tx1 - k_tx0)) frames, dropped $((k_dr1 - k_dr0)); app2 receiver: ${got##*$'\n'}"
[[ $((k_dr1 - k_dr0)) -eq 0 ]] || ovp_fail "the kernel dropped $((k_dr1 - k_dr0)) frames on app1's eth0 (the TAP queue towards overpassd overflowed: overpassd did not read it in time)"
[[ $((k_tx1 - k_tx0)) -eq $N ]] || ovp_fail "the kernel sent $((k_tx1 - k_tx0)) frames on app1's eth0, not $N (background traffic in the container)"
[[ "$got" == *"received $N other 0"* ]] || ovp_fail "app2 did not receive exactly $N datagrams: $got"
checks_a() {
expect "$b1" "$a1" "$N" get overpass_port_rx_packets_total endpoint=app1
expect "$b1" "$a1" $((N * FRAME)) get overpass_port_rx_bytes_total endpoint=app1
expect "$b1" "$a1" 0 get overpass_port_tx_packets_total endpoint=app1
expect "$b1" "$a1" 0 get overpass_port_dropped_packets_total endpoint=app1
expect "$b1" "$a1" "$N" get overpass_network_encap_packets_total network="$net" vni="$vni"
expect "$b1" "$a1" $((N * FRAME)) get overpass_network_encap_bytes_total network="$net" vni="$vni"
expect "$b1" "$a1" 0 get overpass_network_decap_packets_total network="$net"
expect "$b1" "$a1" 0 get overpass_network_flood_packets_total network="$net"
expect "$b1" "$a1" "$N" get overpass_vtep_tx_packets_total vtep=198.18.0.2
expect "$b1" "$a1" $((N * OUTER)) get overpass_vtep_tx_bytes_total vtep=198.18.0.2
expect "$b1" "$a1" 0 get overpass_vtep_rx_packets_total vtep=198.18.0.2
expect "$b1" "$a1" 0 sum overpass_dropped_packets_total
expect "$b2" "$a2" "$N" get overpass_vtep_rx_packets_total vtep=198.18.0.1
expect "$b2" "$a2" $((N * OUTER)) get overpass_vtep_rx_bytes_total vtep=198.18.0.1
expect "$b2" "$a2" 0 get overpass_vtep_tx_packets_total vtep=198.18.0.1
expect "$b2" "$a2" "$N" get overpass_network_decap_packets_total network="$net" vni="$vni"
expect "$b2" "$a2" $((N * FRAME)) get overpass_network_decap_bytes_total network="$net" vni="$vni"
expect "$b2" "$a2" 0 get overpass_network_encap_packets_total network="$net"
expect "$b2" "$a2" "$N" get overpass_port_tx_packets_total endpoint=app2
expect "$b2" "$a2" $((N * FRAME)) get overpass_port_tx_bytes_total endpoint=app2
expect "$b2" "$a2" 0 get overpass_port_rx_packets_total endpoint=app2
expect "$b2" "$a2" 0 sum overpass_dropped_packets_total
}
settle "exact counters for $N datagrams" checks_a a1 host1 a2 host2
ovp_pass "every counter on the path moved by exactly $N packets / $((N * FRAME)) inner / $((N * OUTER)) outer bytes"

ovp_step "a) $K frames from app1 with spoofed source IP $SPOOF_IP (AF_PACKET on eth0): spoofed_ip +$K on host1"
k_tx0=$(ovp_ifstat "app1-$id" eth0 tx_packets)
ip netns exec "app1-$id" timeout 30 python3 "$tool" spoof-send eth0 "$MAC1" "$MAC2" "$SPOOF_IP" "$IP2" "$K" "$P" ||
    ovp_fail "spoofed sender in app1 failed"
k_tx1=$(ovp_ifstat "app1-$id" eth0 tx_packets)
[[ $((k_tx1 - k_tx0)) -eq $K ]] || ovp_fail "the kernel sent $((k_tx1 - k_tx0)) frames on app1's eth0, not $K"
mq "$a1" "get overpass_dropped_packets_total reason=spoofed_ip" || ovp_fail "no spoofed_ip series: ${MQ[*]}"
checks_s() {
expect "$a1" "$s1" "$K" get overpass_dropped_packets_total reason=spoofed_ip
expect "$a1" "$s1" "$K" sum overpass_dropped_packets_total
expect "$a1" "$s1" "$K" get overpass_port_rx_packets_total endpoint=app1
expect "$a1" "$s1" $((K * FRAME)) get overpass_port_rx_bytes_total endpoint=app1
expect "$a1" "$s1" "$K" get overpass_port_dropped_packets_total endpoint=app1
expect "$a1" "$s1" 0 get overpass_network_encap_packets_total network="$net"
expect "$a1" "$s1" 0 get overpass_vtep_tx_packets_total vtep=198.18.0.2
expect "$a2" "$s2" 0 get overpass_vtep_rx_packets_total vtep=198.18.0.1
expect "$a2" "$s2" 0 get overpass_port_tx_packets_total endpoint=app2
expect "$a2" "$s2" 0 sum overpass_dropped_packets_total
}
settle "spoofed source IP" checks_s s1 host1 s2 host2
ovp_pass "$K spoofed frames counted as spoofed_ip on host1, none left the host"

# ---------------------------------------------------------------------------------
ovp_step "b) promtool check metrics on both hosts' exposition"
for h in host1 host2; do
    f=$([[ $h == host1 ]] && echo "$s1" || echo "$s2")
    out=$(promtool check metrics <"$f" 2>&1)
    rc=$?
    [[ $rc -eq 0 ]] || ovp_fail "promtool check metrics on $h's /metrics (exit $rc): $out"
    ovp_info "$h: promtool ok ($(grep -c '^# TYPE' "$f") families, $(grep -vc '^#' "$f") samples)"
done
ovp_pass "promtool accepts both"

# ---------------------------------------------------------------------------------
ovp_step "c) a Prometheus server in host1's namespace scrapes $METRICS every second"
pdir=$OVP_DIR/prometheus
mkdir -p "$pdir/data"
cat >"$pdir/prometheus.yml" <<EOF
global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: overpass
    static_configs:
      - targets: ['$METRICS']
EOF
promtool check config "$pdir/prometheus.yml" >/dev/null 2>&1 || ovp_fail "prometheus config: $(promtool check config "$pdir/prometheus.yml" 2>&1)"
ovp_bg_in prometheus "h1-$id" prometheus --config.file="$pdir/prometheus.yml" --storage.tsdb.path="$pdir/data" \
    --web.listen-address="127.0.0.1:$PROM_PORT" --log.level=warn
# app1's port has seen no packet since the spoof window, so Prometheus's latest sample
# equals the value in /metrics exactly. One query (an "or" of four selectors) per poll.
new_scrape m host1
mq "$m" "get overpass_port_rx_packets_total endpoint=app1" || ovp_fail "host1 /metrics: ${MQ[*]}"
want=${MQ[0]}
PQ='overpass_build_info or up{job="overpass"} or overpass_port_rx_packets_total{endpoint="app1"} or overpass_dropped_packets_total{reason="spoofed_ip"}'
prom_out="(no answer)"
prom_ok() {
    ovp_alive prometheus || return 2
    prom_out=$(ip netns exec "h1-$id" curl -sf --max-time 3 --get --data-urlencode "query=$PQ" \
        "http://127.0.0.1:$PROM_PORT/api/v1/query" | python3 "$tool" prom-vector) || return 1
    local bi up rx sp
    bi=$(awk '$1 == "overpass_build_info"' <<<"$prom_out")
    up=$(awk '$1 == "up" {print $2}' <<<"$prom_out")
    rx=$(awk '$1 == "overpass_port_rx_packets_total" {print $2}' <<<"$prom_out")
    sp=$(awk '$1 == "overpass_dropped_packets_total" {print $2}' <<<"$prom_out")
    [[ $(grep -c . <<<"$bi") -eq 1 && "$bi" == "overpass_build_info 1 "* && "$bi" == *'"dpdk_version": "DPDK '* &&
        "$bi" =~ \"version\":\ \"[^\"]+\" && "$up" == 1 && "$rx" == "$want" && "$sp" == "$K" ]]
}
ovp_eventually 30 prom_ok || ovp_fail "after 30 s Prometheus answers '$PQ' with:
$prom_out
expected overpass_build_info 1 (with version, dpdk_version), up 1, app1 rx_packets $want (as /metrics), spoofed_ip $K; log: $(tail -5 "${OVP_LOG[prometheus]}")"
while IFS= read -r l; do ovp_info "$l"; done <<<"$prom_out"
ovp_stop prometheus 10
ovp_pass "Prometheus scraped host1: build_info 1, up 1, app1 rx $want, spoofed_ip $K"

# ---------------------------------------------------------------------------------
ovp_step "d) DPDK telemetry of host1 (/var/run/dpdk/overpass-$H1ID/dpdk_telemetry.v2) agrees with /metrics"
tsock=/var/run/dpdk/overpass-$H1ID/dpdk_telemetry.v2
[[ -S "$tsock" ]] || ovp_fail "no telemetry socket $tsock"
new_scrape m host1
mq "$m" "label overpass_port_rx_packets_total port endpoint=app1" \
    "get overpass_port_rx_packets_total endpoint=app1" "get overpass_port_rx_bytes_total endpoint=app1" \
    "get overpass_dropped_packets_total reason=spoofed_ip" "label overpass_port_rx_packets_total port kind=uplink" ||
    ovp_fail "host1 /metrics: ${MQ[*]}"
p1port=${MQ[0]} m_rx=${MQ[1]} m_rxb=${MQ[2]} m_sp=${MQ[3]} upname=${MQ[4]}
tel=$(python3 "$tool" telemetry "$tsock" /overpass/ports /overpass/drops) || ovp_fail "telemetry: $tel"
# answer lines: app1's port "NAME KIND RX_PACKETS RX_BYTES", then drops{spoofed_ip}
tel=$(python3 -c '
import json, sys
ports, drops = (json.loads(l) for l in sys.argv[1].splitlines())
m = [(k, v) for k, v in ports.items() if isinstance(v, dict) and v.get("endpoint") == "app1"]
if len(m) != 1:
    sys.exit("%d ports with endpoint app1 in /overpass/ports: %s" % (len(m), ports))
k, v = m[0]
print(k, v["kind"], v["rx_packets"], v["rx_bytes"])
print(drops.get("spoofed_ip", "none in %s" % drops))' "$tel") || ovp_fail "telemetry answers: $tel"
mapfile -t tel <<<"$tel"
[[ "${tel[0]}" == "$p1port tap $m_rx $m_rxb" ]] ||
    ovp_fail "/overpass/ports says app1's port is '${tel[0]}' (name kind rx_packets rx_bytes); /metrics: '$p1port tap $m_rx $m_rxb'"
ovp_info "/overpass/ports: $p1port tap rx_packets $m_rx rx_bytes $m_rxb (as in /metrics)"
[[ "${tel[1]}" == "$m_sp" && "$m_sp" -eq $K ]] ||
    ovp_fail "/overpass/drops spoofed_ip '${tel[1]}', /metrics $m_sp, expected $K"
ovp_info "/overpass/drops: spoofed_ip ${tel[1]} (as in /metrics)"
# the stock client, as an operator would run it
out=$(echo /overpass/info | timeout 10 dpdk-telemetry.py -f "overpass-$H1ID" 2>&1)
[[ "$out" == *"\"host\": \"$H1ID\""* && "$out" == *'"vtep": "198.18.0.1"'* ]] ||
    ovp_fail "dpdk-telemetry.py -f overpass-$H1ID /overpass/info: $out"
ovp_pass "telemetry agrees with /metrics; dpdk-telemetry.py -f overpass-$H1ID works"

# ---------------------------------------------------------------------------------
ovp_step "e) dpdk-dumpcap on host1's uplink while app1 pings app2: VXLAN with VNI $vni"
pcap=$OVP_DIR/uplink.pcapng
ovp_bg_in pinger "app1-$id" ping -n -q -i 0.2 -c 200 "$IP2"
ovp_bg dumpcap timeout 30 dpdk-dumpcap --file-prefix="overpass-$H1ID" -p -i "$upname" -c 10 -w "$pcap"
dpid=$OVP_LAST_PID
wait "$dpid"
drc=$?
ovp_stop pinger 5
[[ $drc -eq 0 ]] || ovp_fail "dpdk-dumpcap exited with $drc: $(tail -20 "${OVP_LOG[dumpcap]}")"
ovp_alive host1 || ovp_fail "overpassd host1 died during the capture"
[[ -s "$pcap" ]] || ovp_fail "dpdk-dumpcap wrote no $pcap: $(tail -20 "${OVP_LOG[dumpcap]}")"
# one line per captured frame: VNI (empty when not VXLAN), outer,inner sources, destinations
frames=$(tshark -r "$pcap" -d udp.port==4789,vxlan -T fields -E separator=' ' \
    -e vxlan.vni -e ip.src -e ip.dst 2>"$OVP_DIR/tshark.err") || ovp_fail "tshark -r $pcap: $(cat "$OVP_DIR/tshark.err")"
total=$(grep -c . <<<"$frames")
fields=$(grep -v '^ ' <<<"$frames")
nvx=$(grep -c . <<<"$fields")
ovp_info "captured $total frames, $nvx VXLAN (VNI, outer+inner sources, outer+inner destinations):"
while IFS= read -r l; do ovp_info "    $l"; done <<<"$fields"
((nvx >= 1)) || ovp_fail "no VXLAN packet among the $total frames captured on $upname"
while read -r v srcs dsts; do
    [[ "$v" == "$vni" ]] || ovp_fail "captured VXLAN with VNI '$v', the network's is $vni"
    # outer then inner addresses: VTEP to VTEP around app1 to app2 (or the reply)
    [[ "$srcs" == "198.18.0.1,$IP1" && "$dsts" == "198.18.0.2,$IP2" ||
        "$srcs" == "198.18.0.2,$IP2" && "$dsts" == "198.18.0.1,$IP1" ]] ||
        ovp_fail "captured VXLAN between unexpected peers: src $srcs dst $dsts"
done <<<"$fields"
ovp_pass "$nvx captured VXLAN packets, all VNI $vni between app1 and app2"

# ---------------------------------------------------------------------------------
ovp_step "f) detach app2 on host2: its series go from host2's /metrics; host1 keeps VTEP 198.18.0.2"
new_scrape before2 host2
mq "$before2" "label overpass_port_tx_packets_total port endpoint=app2" "with-label endpoint=app2" ||
    ovp_fail "host2 /metrics before detach: ${MQ[*]}"
p2port=${MQ[0]}
[[ "${MQ[1]%% *}" -gt 0 ]] || ovp_fail "no series with endpoint=app2 before detach"
out=$(ovp_cli host2 endpoint detach app2 2>&1) || ovp_fail "endpoint detach app2: $out"
no_app2() { ovp_cli_lacks host1 app2 endpoint ls && ovp_cli_lacks host2 app2 endpoint ls; }
ovp_eventually 10 no_app2 || ovp_fail "app2 still listed after detach: $(ovp_cli host1 endpoint ls 2>&1)"
new_scrape after2 host2
mq "$after2" "with-label endpoint=app2" "with-label port=$p2port" "get overpass_port_rx_packets_total kind=uplink" ||
    ovp_fail "host2 /metrics after detach: ${MQ[*]}"
[[ "${MQ[0]%% *}" == 0 ]] || ovp_fail "host2 still exports series with endpoint=\"app2\" after detach: ${MQ[0]}"
[[ "${MQ[1]%% *}" == 0 ]] || ovp_fail "host2 still exports series with port=\"$p2port\" (app2's port) after detach: ${MQ[1]}"
new_scrape after1 host1
vq=()
for fam in overpass_vtep_tx_packets_total overpass_vtep_tx_bytes_total overpass_vtep_rx_packets_total \
    overpass_vtep_rx_bytes_total overpass_vtep_resolved; do
    vq+=("get $fam vtep=198.18.0.2")
done
mq "$after1" "${vq[@]}" || ovp_fail "host1 lost VTEP 198.18.0.2's series while host2 is up: ${MQ[*]}"
v=${MQ[0]}
((v >= N)) || ovp_fail "host1 overpass_vtep_tx_packets_total{vtep=\"198.18.0.2\"} is $v after detach, was at least $N"
[[ "${MQ[4]}" == 1 ]] || ovp_fail "host1 overpass_vtep_resolved{vtep=\"198.18.0.2\"} is ${MQ[4]} while host2 is up"
ovp_pass "app2's series ($p2port) gone on host2; host1 still has VTEP 198.18.0.2 (tx_packets $v)"

# ---------------------------------------------------------------------------------
ovp_step "graceful stop: exit 0, no hugepage file of host1 left in $HP_DIR"
ovp_daemon_stop host2 15
rc=$?
[[ $rc -eq 0 ]] || ovp_fail "overpassd host2 exited with status $rc on SIGTERM"
ovp_daemon_stop host1 15
rc=$?
[[ $rc -eq 0 ]] || ovp_fail "overpassd host1 exited with status $rc on SIGTERM"
left=$(hp_files)
[[ -z "$left" ]] || ovp_fail "host1 left hugepage files after a graceful stop: $(tr '\n' ' ' <<<"$left")"
ovp_pass "both daemons stopped cleanly, hugepages released"

ovp_step "cleanup leaves nothing"
ovp_cleanup
ovp_leak_check || exit 1
[[ -z "$(hp_files)" ]] || ovp_fail "hugepage files left: $(hp_files)"
ovp_pass "observability passed"
exit 0
