#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The two-host demo, narrated like a terminal session: two "hosts" (network namespaces
# on one L2 underlay) run overpassd, a global overlay network is created on host1 and
# appears on host2, a container on each host gets an interface from it, and they ping
# each other across VXLAN. Everything is torn down at the end, on failure and on Ctrl-C.
#
# Usage: tools/demo.sh [--build DIR] [--store file|etcd] [--pace SECONDS]
#   --build DIR   meson build directory with control/overpassd and tools/overpass/overpass
#                 (default: build)
#   --store file  one shared file store (default)
#   --store etcd  a real etcd (/usr/bin/etcd) started by the demo in a management
#                 namespace on 198.19.0.254; each host reaches it over its own
#                 management link; stopped at the end
#   --pace S      pause S seconds between steps (for a live audience)
# Needs root (namespaces, TAP devices). Exit 0 when both pings succeed.
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

build=build
store_kind="file"
pace=0
while [[ $# -gt 0 ]]; do
    case $1 in
        --build) build=${2:?--build needs a directory}; shift 2 ;;
        --build=*) build=${1#--build=}; shift ;;
        --store) store_kind=${2:?--store needs file or etcd}; shift 2 ;;
        --store=*) store_kind=${1#--store=}; shift ;;
        --pace) pace=${2:?--pace needs seconds}; shift 2 ;;
        -h | --help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "demo.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
    esac
done
case $store_kind in
    file) ;;
    etcd)
        if [[ ! -x /usr/bin/etcd ]]; then
            echo "demo.sh: --store etcd needs /usr/bin/etcd (Debian package etcd-server)" >&2
            exit 1
        fi
        ;;
    *) echo "demo.sh: --store must be file or etcd, not '$store_kind'" >&2; exit 2 ;;
esac
if [[ "$(id -u)" -ne 0 ]]; then
    echo "demo.sh: needs root (network namespaces, TAP devices); try: sudo $0 $*" >&2
    exit 1
fi

# shellcheck source=lib/netns.sh
source "$here/lib/netns.sh"
if [[ $store_kind == etcd ]]; then
    # shellcheck source=lib/store.sh
    source "$here/lib/store.sh"
fi
ovp_init demo
ovp_find_bins "$build"
id=$OVP_ID

if [[ -t 1 ]]; then
    b=$'\e[1m' dim=$'\e[2m' grn=$'\e[32m' red=$'\e[31m' off=$'\e[0m'
else
    b='' dim='' grn='' red='' off=''
fi
say() { printf '\n%s# %s%s\n' "$dim" "$*" "$off"; [[ "$pace" == 0 ]] || sleep "$pace"; }
prompt() { printf '%s%s$%s %s\n' "$b" "$1" "$off" "$2"; }
# on HOST CMD...: shows "HOST$ overpass ...", runs it against HOST's daemon.
on() {
    local h=$1
    shift
    prompt "$h" "overpass $*"
    ovp_cli "$h" "$@"
}
# inside CONTAINER CMD...: shows "CONTAINER$ CMD", runs it inside the container.
inside() {
    local c=$1
    shift
    prompt "$c" "$*"
    ip netns exec "$c-$id" "$@"
}
die() {
    printf '\n%sdemo failed: %s%s\n' "$red" "$*" "$off" >&2
    ovp_dump_logs 40
    exit 1
}

say "overpass demo: two hosts, one overlay network, one container on each host"
if [[ $store_kind == etcd ]]; then
    say "host1 = netns h1-$id (VTEP 198.18.0.1), host2 = netns h2-$id (VTEP 198.18.0.2),
#   both plugged into one underlay bridge; the store is etcd in netns mgmt-$id
#   ($OVP_MGMT_IP), which each host reaches over its own management link mg0 (198.19.0.N)"
    ovp_mgmt_add
    say "start etcd on the management network (data dir under $OVP_DIR)"
    prompt store "$(ovp_etcd_cmdline) &"
    ovp_etcd_start
    ovp_etcd_wait 20 || die "etcd did not come up"
    printf 'etcd ready on %s (pid %s)\n' "$OVP_ETCD_CLIENT_URL" "${OVP_PID[etcd]}"
    store_url=$OVP_STORE_URL
else
    say "host1 = netns h1-$id (VTEP 198.18.0.1), host2 = netns h2-$id (VTEP 198.18.0.2),
#   both plugged into one underlay bridge; the store is one file both daemons share"
    store_url=file://$OVP_STORE_FILE
fi
ovp_switch_add
for i in 1 2; do
    ovp_host_add "h$i-$id"
    if [[ $store_kind == etcd ]]; then
        ovp_mgmt_link "h$i-$id" "$i"
        prompt "host$i" "ip addr show mg0   # management link, the way to the store"
        ip -n "h$i-$id" -4 -br addr show dev mg0
    fi
    prompt "host$i" "overpassd --host-id host$i-$id --vtep-ip 198.18.0.$i --uplink net_af_packet0,iface=ul0 --store $store_url --api $OVP_DIR/host$i.sock $OVP_DAEMON_ARGS &"
    if [[ $store_kind == etcd ]]; then
        ovp_store_daemon_start "host$i" "h$i-$id" "host$i-$id" "198.18.0.$i"
    else
        ovp_daemon_start "host$i" "h$i-$id" "host$i-$id" "198.18.0.$i"
    fi
done
for i in 1 2; do
    ovp_daemon_wait "host$i" 30 || die "overpassd on host$i did not come up"
done
say "both daemons are up; on hostN the CLI talks to OVERPASS_HOST=unix://$OVP_DIR/hostN.sock"
on host1 host ls || die "host ls"

say "create a global overlay network on host1 ..."
on host1 network create --subnet 10.0.2.0/24 overlay-net || die "network create"
say "... and host2 sees it (scope global)"
has_net() { ovp_cli_has host2 overlay-net network ls; }
ovp_eventually 10 has_net || die "host2 does not see overlay-net"
on host2 network ls || die "network ls on host2"

say "start a container on each host and attach it"
ovp_container_add "app1-$id"
ovp_container_add "app2-$id"
prompt host1 "ip netns add app1-$id"
out=$(on host1 endpoint attach --network overlay-net --name app1 --netns "app1-$id") || die "attach app1: $out"
echo "$out"
_ovp_parse_attach app1 "${out##*$'\n'}" || die "attach output"
prompt host2 "ip netns add app2-$id"
out=$(on host2 endpoint attach --network overlay-net --name app2 --netns "app2-$id") || die "attach app2: $out"
echo "$out"
_ovp_parse_attach app2 "${out##*$'\n'}" || die "attach output"

say "inside the containers: eth0 with an address from the pool, MTU 1450"
inside app1 ip addr show eth0 || die "no eth0 in app1"
inside app2 ip addr show eth0 || die "no eth0 in app2"

say "app2 (host2) pings app1 (host1) across VXLAN, and back"
# the very first packet may wait for the VTEPs' ARP: give the path a moment
ip netns exec "app2-$id" ping -c 1 -W 5 "${EP_IP[app1]}" >/dev/null 2>&1
# every echo must be answered (ping alone exits 0 when any one is)
ping_all() {  # FROM TO
    local out
    out=$(inside "$1" ping -c 3 "$2" 2>&1)
    printf '%s\n' "$out"
    [[ "$out" == *", 0% packet loss"* ]]
}
ping_all app2 "${EP_IP[app1]}" || die "app2 cannot ping app1 (${EP_IP[app1]})"
ping_all app1 "${EP_IP[app2]}" || die "app1 cannot ping app2 (${EP_IP[app2]})"

say "by name: each container's resolver is its network's gateway, answered by overpassd"
inside app2 cat /etc/resolv.conf
ping_all app2 app1 || die "app2 cannot ping app1 by name"
ping_all app1 app2 || die "app1 cannot ping app2 by name"

say "endpoints of the cluster, and host1's counters"
on host1 endpoint ls || die "endpoint ls"
on host1 stats || die "stats"

say "the same counters as Prometheus scrapes them (host1's /metrics on 127.0.0.1:9417)"
prompt host1 "curl -s 127.0.0.1:9417/metrics | grep -E '^overpass_(vtep|network)_.*packets_total'"
metrics=$(ip netns exec "${OVP_HOSTNS[host1]}" curl -s --max-time 5 127.0.0.1:9417/metrics) || die "no /metrics on host1"
grep -E '^overpass_(vtep|network)_.*packets_total' <<<"$metrics" || die "host1's /metrics has no VTEP or network series"

if [[ $store_kind == etcd ]]; then
    say "what the cluster keeps in etcd (keys under $OVP_ETCD_PREFIX/; hosts and endpoints hang on the hosts' leases)"
    ovp_etcd_dump || die "cannot read etcd"
    say "tearing down: daemons (SIGTERM; they revoke their leases), then etcd"
    for i in 1 2; do
        ovp_daemon_stop "host$i" 15 || die "overpassd on host$i did not stop cleanly"
    done
    say "their hosts and endpoints went with the leases; the networks stay in etcd"
    ovp_etcd_dump || die "cannot read etcd"
    prompt store "kill -TERM ${OVP_PID[etcd]}   # etcd"
    ovp_etcd_stop 10
    printf 'etcd stopped\n'
    say "and the namespaces, sockets, data dir"
else
    say "tearing down: daemons (SIGTERM), namespaces, sockets, store"
fi
ovp_cleanup
ovp_leak_check || die "something was left behind"
printf '\n%sdemo passed: app1 %s (host1) <-> app2 %s (host2) over VXLAN%s\n' \
    "$grn" "${EP_IP[app1]}" "${EP_IP[app2]}" "$off"
exit 0
