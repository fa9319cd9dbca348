# SPDX-License-Identifier: Apache-2.0
# shellcheck shell=bash disable=SC2034  # EP_*, OVP_* maps are read by the sourcing scripts
# runs on: the test/demo script's shell (sourced, bash only)
#
# Shared helpers for tools/demo.sh and tests/integration/*.sh:
#   - "hosts" and "containers" as network namespaces, hosts on one shared L2 underlay
#     (a bridge inside a switch namespace, one veth per host);
#   - overpassd / other processes started in the background, recorded by PID and
#     stopped by that PID (TERM, wait, KILL) -- never by name;
#   - a cleanup registry: everything created is recorded and removed on exit, failure,
#     Ctrl-C and SIGTERM (meson's timeout), in reverse order.
#
# Every name includes the run id (the calling script's PID), so that two runs, or a
# leftover from an earlier run, can never collide.
#
# Usage:
#   source "$(dirname "${BASH_SOURCE[0]}")/../../tools/lib/netns.sh"
#   ovp_init two_hosts                      # traps, run dir /tmp/ovp-<pid>
#   ovp_find_bins "$BUILD_DIR"              # sets OVPD and OVP
#   ovp_switch_add                          # ul-<pid> with bridge br0
#   ovp_host_add h1-$OVP_ID                 # veth "ul0" in the host, no kernel IP
#   ovp_daemon_start host1 h1-$OVP_ID host1-$OVP_ID 198.18.0.1
#   ovp_daemon_wait host1 || ovp_fail "host1 not ready"
#   ovp_cli host1 network ls
#
# Environment knobs:
#   OVP_DAEMON_ARGS   extra overpassd options for every daemon (default: --no-huge --workers 1)
#   OVP_KEEP=1        keep the run directory (logs, store) after the run
#   OVP_VERBOSE=1     echo every command ovp_run executes

# Only the first source counts (a script may source it twice through helpers).
if [[ -n "${_OVP_NETNS_SH:-}" ]]; then
    return 0
fi
_OVP_NETNS_SH=1

OVP_ID=$$                      # never inherited: names must be unique to this run
OVP_DIR=/tmp/ovp-$OVP_ID
OVP_NAME=${OVP_NAME:-$(basename "$0" .sh)}
OVP_STORE_FILE=$OVP_DIR/store.json
OVP_DAEMON_ARGS=${OVP_DAEMON_ARGS:---no-huge --workers 1}
OVP_UPLINK_IF=ul0              # the host-side underlay veth, same name in every host
OVP_SWITCH_NS=""               # set by ovp_switch_add

_ovp_pids=()                   # PIDs in start order
declare -A _ovp_pid_label=()   # PID -> label
declare -A OVP_PID=()          # label -> PID
declare -A OVP_LOG=()          # label -> log file
declare -A OVP_SOCK=()         # daemon label -> API socket
declare -A OVP_HOSTNS=()       # daemon label -> host namespace
declare -A OVP_HOSTID=()       # daemon label -> host id
_ovp_netns=()                  # namespaces in creation order
_ovp_paths=()                  # files/dirs to remove
_ovp_cmds=()                   # extra cleanup commands (eval'd, reverse order)
_ovp_sw_ports=0
_ovp_cleaned=0
_ovp_etc_netns_existed=1

# ---------------------------------------------------------------------------------
# logging

ovp_ts() { date +%H:%M:%S; }
ovp_step() { printf '%s [%s] ==> %s\n' "$(ovp_ts)" "$OVP_NAME" "$*"; }
ovp_info() { printf '%s [%s]     %s\n' "$(ovp_ts)" "$OVP_NAME" "$*"; }
ovp_pass() { printf '%s [%s] ok  %s\n' "$(ovp_ts)" "$OVP_NAME" "$*"; }
ovp_warn() { printf '%s [%s] WARN %s\n' "$(ovp_ts)" "$OVP_NAME" "$*" >&2; }

# Prints the last lines of every log this run produced (daemons, testpmd, ...).
ovp_dump_logs() {
    local n=${1:-60} label any=0
    for label in "${!OVP_LOG[@]}"; do
        [[ -s "${OVP_LOG[$label]}" ]] || continue
        printf -- '----- log of %s (%s), last %d lines -----\n' "$label" "${OVP_LOG[$label]}" "$n" >&2
        tail -n "$n" "${OVP_LOG[$label]}" >&2
        any=1
    done
    [[ $any -eq 0 ]] || printf -- '----- end of logs -----\n' >&2
}

# Fails the run: message, logs, exit 1 (the EXIT trap cleans up).
ovp_fail() {
    printf '%s [%s] FAIL %s\n' "$(ovp_ts)" "$OVP_NAME" "$*" >&2
    ovp_dump_logs
    exit 1
}

ovp_skip() {
    printf '%s [%s] SKIP %s\n' "$(ovp_ts)" "$OVP_NAME" "$*"
    exit 77
}

# Runs a command, echoing it first when OVP_VERBOSE=1. Returns its status.
ovp_run() {
    [[ "${OVP_VERBOSE:-0}" = 1 ]] && printf '    + %s\n' "$*"
    "$@"
}

# ---------------------------------------------------------------------------------
# setup and the cleanup registry

ovp_need_root() {
    [[ "$(id -u)" -eq 0 ]] || ovp_skip "needs root (network namespaces, TAP devices)"
}

ovp_init() {
    OVP_NAME=${1:-$OVP_NAME}
    ovp_need_root
    umask 022
    [[ -d /etc/netns ]] || _ovp_etc_netns_existed=0
    mkdir -p "$OVP_DIR" || { echo "cannot create $OVP_DIR" >&2; exit 1; }
    _ovp_paths+=("$OVP_DIR")
    trap '_ovp_on_exit' EXIT
    trap 'ovp_warn "interrupted"; exit 130' INT
    trap 'ovp_warn "terminated"; exit 143' TERM
    trap '' PIPE
}

ovp_register_path() { _ovp_paths+=("$@"); }
ovp_register_netns() { _ovp_netns+=("$@"); }
# A command string to eval at cleanup, before processes are stopped.
ovp_register_cmd() { _ovp_cmds+=("$1"); }
ovp_register_pid() {  # PID LABEL
    _ovp_pids+=("$1")
    _ovp_pid_label[$1]=$2
    OVP_PID[$2]=$1
}

_ovp_on_exit() {
    local rc=$?
    trap - EXIT INT TERM
    ovp_cleanup
    exit "$rc"
}

# Stops PID: SIGTERM, up to TIMEOUT seconds, then SIGKILL. Reaps it when it is our
# child. Returns the process's exit status when known (else 0); 137 after SIGKILL.
ovp_kill_pid() {
    local pid=$1 timeout=${2:-10} rc=0 t0 now st
    [[ -n "$pid" ]] || return 0
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null
        t0=${EPOCHREALTIME/[.,]/}
        while :; do
            st=$(ps -o stat= -p "$pid" 2>/dev/null)
            # gone, or a zombie waiting to be reaped (kill -0 still succeeds on those)
            [[ -z "$st" || "$st" == Z* ]] && break
            now=${EPOCHREALTIME/[.,]/}
            ((now - t0 >= timeout * 1000000)) && break
            sleep 0.1
        done
        st=$(ps -o stat= -p "$pid" 2>/dev/null)
        if [[ -n "$st" && "$st" != Z* ]]; then
            now=${EPOCHREALTIME/[.,]/}
            ovp_warn "pid $pid (${_ovp_pid_label[$pid]:-?}, state $st) still running $(((now - t0) / 1000)) ms after SIGTERM: SIGKILL"
            kill -KILL "$pid" 2>/dev/null
            rc=137
        fi
    fi
    wait "$pid" 2>/dev/null
    local w=$?
    [[ $rc -ne 0 ]] && return "$rc"
    return "$w"
}

# Removes everything registered, in reverse order. Safe to call more than once.
ovp_cleanup() {
    [[ $_ovp_cleaned -eq 1 ]] && return 0
    _ovp_cleaned=1
    local i pid ns p
    for ((i = ${#_ovp_cmds[@]} - 1; i >= 0; i--)); do
        eval "${_ovp_cmds[$i]}" >/dev/null 2>&1 || true
    done
    for ((i = ${#_ovp_pids[@]} - 1; i >= 0; i--)); do
        pid=${_ovp_pids[$i]}
        kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null; continue; }
        ovp_kill_pid "$pid" 10 || true
    done
    for ((i = ${#_ovp_netns[@]} - 1; i >= 0; i--)); do
        ns=${_ovp_netns[$i]}
        if [[ -e /run/netns/$ns ]]; then
            ip netns del "$ns" 2>/dev/null || ovp_warn "could not delete netns $ns"
        fi
        # overpassd writes /etc/netns/<ns>/resolv.conf for containers it configures
        [[ -d /etc/netns/$ns ]] && rm -rf "/etc/netns/$ns"
    done
    [[ $_ovp_etc_netns_existed -eq 0 ]] && rmdir /etc/netns 2>/dev/null
    for ((i = ${#_ovp_paths[@]} - 1; i >= 0; i--)); do
        p=${_ovp_paths[$i]}
        if [[ "$p" == "$OVP_DIR" && "${OVP_KEEP:-0}" = 1 ]]; then
            echo "kept $OVP_DIR (OVP_KEEP=1)" >&2
            continue
        fi
        rm -rf -- "$p"
    done
}

# Checks that nothing of this run is left: processes, namespaces, DPDK runtime dirs.
# Namespace deletion is asynchronous in the kernel for the devices inside, but the
# names in /run/netns go away synchronously. Prints what leaked; returns 1 if any.
ovp_leak_check() {
    local leaked=0 pid ns
    for pid in "${_ovp_pids[@]}"; do
        if kill -0 "$pid" 2>/dev/null; then
            echo "leak: process $pid (${_ovp_pid_label[$pid]}) still running" >&2
            leaked=1
        fi
    done
    for ns in $(ip netns list 2>/dev/null | awk '{print $1}'); do
        if [[ "$ns" == *-"$OVP_ID" ]]; then
            echo "leak: netns $ns" >&2
            leaked=1
        fi
    done
    for p in /var/run/dpdk/*-"$OVP_ID" "$OVP_DIR"; do
        [[ -e "$p" ]] || continue
        [[ "$p" == "$OVP_DIR" && "${OVP_KEEP:-0}" = 1 ]] && continue
        echo "leak: $p" >&2
        leaked=1
    done
    return $leaked
}

# ---------------------------------------------------------------------------------
# binaries

# Sets OVPD and OVP from a build dir; fails when they are missing.
ovp_find_bins() {
    local build=${1:?build dir}
    OVPD=$build/control/overpassd
    OVP=$build/tools/overpass/overpass
    [[ -x "$OVPD" ]] || ovp_fail "overpassd not built: $OVPD (run ninja -C $build)"
    [[ -x "$OVP" ]] || ovp_fail "overpass CLI not built: $OVP (run ninja -C $build)"
    OVPD=$(readlink -f "$OVPD")
    OVP=$(readlink -f "$OVP")
}

# ---------------------------------------------------------------------------------
# namespaces

# Creates a namespace with lo up and IPv6 off (as Docker does for IPv4-only
# networks): keeps router solicitations and MLD out of the counters tests watch.
ovp_netns_add() {
    local ns=$1
    [[ ${#ns} -le 40 ]] || ovp_fail "netns name too long: $ns"
    ip netns add "$ns" || ovp_fail "ip netns add $ns"
    _ovp_netns+=("$ns")
    ip -n "$ns" link set lo up
    ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 \
        net.ipv6.conf.default.disable_ipv6=1 >/dev/null 2>&1 || true
}

# Switches offloads off on a veth: frames a kernel hands to an af_packet socket (or
# sends as VXLAN) must carry finished checksums and be real MTU-sized frames.
ovp_offloads_off() {  # NS IFNAME
    command -v ethtool >/dev/null 2>&1 || return 0
    ip netns exec "$1" ethtool -K "$2" tx off tso off gso off gro off >/dev/null 2>&1 || true
}

# The shared underlay: namespace ul-<id> with bridge br0 (no STP, no forward delay,
# no multicast snooping, so that every frame flows from the first moment).
ovp_switch_add() {
    OVP_SWITCH_NS=ul-$OVP_ID
    ovp_netns_add "$OVP_SWITCH_NS"
    ip -n "$OVP_SWITCH_NS" link add br0 type bridge stp_state 0 forward_delay 0 mcast_snooping 0 \
        || ovp_fail "bridge in $OVP_SWITCH_NS"
    ip -n "$OVP_SWITCH_NS" link set br0 up
}

# A host: namespace NS with veth "ul0" plugged into the switch. With KERNEL_IP
# (e.g. 198.18.0.3/24) the kernel owns the underlay (a Linux VXLAN host); without
# it, ul0 is up with no address, for overpassd's af_packet uplink.
ovp_host_add() {  # NS [KERNEL_IP/PREFIX]
    local ns=$1 kip=${2:-} sw
    [[ -n "$OVP_SWITCH_NS" ]] || ovp_switch_add
    ovp_netns_add "$ns"
    _ovp_sw_ports=$((_ovp_sw_ports + 1))
    sw=sw$_ovp_sw_ports
    ip -n "$OVP_SWITCH_NS" link add "$sw" type veth peer name "$OVP_UPLINK_IF" netns "$ns" \
        || ovp_fail "veth $sw <-> $ns/$OVP_UPLINK_IF"
    ip -n "$OVP_SWITCH_NS" link set "$sw" master br0
    ip -n "$OVP_SWITCH_NS" link set "$sw" up
    ovp_offloads_off "$OVP_SWITCH_NS" "$sw"
    ovp_offloads_off "$ns" "$OVP_UPLINK_IF"
    if [[ -n "$kip" ]]; then
        ip -n "$ns" addr add "$kip" dev "$OVP_UPLINK_IF" || ovp_fail "address $kip on $ns"
    fi
    ip -n "$ns" link set "$OVP_UPLINK_IF" up
}

# A container: just a namespace; overpassd moves the TAP in, names it eth0 and
# configures it.
ovp_container_add() { ovp_netns_add "$1"; }

# Runs a command inside a namespace.
ovp_in() {
    local ns=$1
    shift
    ip netns exec "$ns" "$@"
}

# ---------------------------------------------------------------------------------
# processes

# Starts "$@" in the background, stdin from /dev/null, stdout+stderr to
# $OVP_DIR/LABEL.log, and records its PID. Sets OVP_LAST_PID.
ovp_bg() {  # LABEL CMD...
    local label=$1
    shift
    local log=$OVP_DIR/$label.log
    OVP_LOG[$label]=$log
    "$@" </dev/null >"$log" 2>&1 &
    OVP_LAST_PID=$!
    ovp_register_pid "$OVP_LAST_PID" "$label"
}

# Same, inside namespace NS. `ip netns exec` execs the command, so the recorded PID
# is the command's own.
ovp_bg_in() {  # LABEL NS CMD...
    local label=$1 ns=$2
    shift 2
    ovp_bg "$label" ip netns exec "$ns" "$@"
}

# Stops a process started with ovp_bg by its label. Returns its exit status.
ovp_stop() {  # LABEL [TIMEOUT]
    local pid=${OVP_PID[$1]:-}
    [[ -n "$pid" ]] || return 0
    ovp_kill_pid "$pid" "${2:-10}"
}

ovp_alive() { local pid=${OVP_PID[$1]:-}; [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; }

# ---------------------------------------------------------------------------------
# overpassd

# Starts overpassd for LABEL inside host namespace NS:
#   ovp_daemon_start LABEL NS HOST_ID VTEP_IP [more overpassd options...]
# API socket $OVP_DIR/LABEL.sock, log $OVP_DIR/LABEL.log, store $OVP_STORE_FILE (one
# file shared by every daemon of the run). Registers its DPDK runtime dir for removal.
ovp_daemon_start() {
    local label=$1 ns=$2 hid=$3 vtep=$4
    shift 4
    local sock=$OVP_DIR/$label.sock
    OVP_SOCK[$label]=$sock
    OVP_HOSTNS[$label]=$ns
    OVP_HOSTID[$label]=$hid
    ovp_register_path "/var/run/dpdk/overpass-$hid"
    # shellcheck disable=SC2086  # OVP_DAEMON_ARGS is a word list on purpose
    ovp_bg_in "$label" "$ns" "$OVPD" --host-id "$hid" --vtep-ip "$vtep" \
        --uplink "net_af_packet0,iface=$OVP_UPLINK_IF" \
        --store "file://$OVP_STORE_FILE" --api "$sock" $OVP_DAEMON_ARGS "$@"
}

# Waits until the daemon answers `host ls` (bounded). On failure prints its log.
ovp_daemon_wait() {  # LABEL [TIMEOUT_S]
    local label=$1 timeout=${2:-30} i
    local pid=${OVP_PID[$label]} sock=${OVP_SOCK[$label]}
    for ((i = 0; i < timeout * 5; i++)); do
        if ! kill -0 "$pid" 2>/dev/null; then
            wait "$pid" 2>/dev/null
            local rc=$?
            ovp_warn "overpassd $label (pid $pid) exited with status $rc before it was ready"
            ovp_dump_logs 80
            return 1
        fi
        if "$OVP" -H "unix://$sock" host ls >/dev/null 2>&1; then
            return 0
        fi
        sleep 0.2
    done
    ovp_warn "overpassd $label not ready after ${timeout}s (no answer on $sock)"
    ovp_dump_logs 80
    return 1
}

# Stops a daemon gracefully (SIGTERM; it detaches its endpoints). Returns its status.
ovp_daemon_stop() { ovp_stop "$1" "${2:-15}"; }

# The CLI against daemon LABEL.
ovp_cli() {  # LABEL ARGS...
    local label=$1
    shift
    "$OVP" -H "unix://${OVP_SOCK[$label]}" "$@"
}

# ---------------------------------------------------------------------------------
# endpoints and checks

# Attaches a TAP endpoint and parses "NAME IP/PREFIX MAC" into EP_IP[name],
# EP_CIDR[name], EP_MAC[name]. Prints the CLI's output. Returns the CLI's status.
declare -A EP_IP=() EP_CIDR=() EP_MAC=()
ovp_attach() {  # DAEMON NETWORK NAME NETNS
    local d=$1 net=$2 name=$3 ns=$4 out rc
    out=$(ovp_cli "$d" endpoint attach --network "$net" --name "$name" --netns "$ns" 2>&1)
    rc=$?
    printf '%s\n' "$out"
    [[ $rc -eq 0 ]] || return $rc
    _ovp_parse_attach "$name" "$out"
}

_ovp_parse_attach() {  # NAME OUTPUT
    local name=$1 out=$2 line cidr mac
    line=$(printf '%s\n' "$out" | awk -v n="$name" '$1 == n {print; exit}')
    [[ -n "$line" ]] || line=$(printf '%s\n' "$out" | tail -n 1)
    cidr=$(awk '{print $2}' <<<"$line")
    mac=$(awk '{print $3}' <<<"$line")
    if ! [[ "$cidr" =~ ^[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+/[0-9]+$ ]]; then
        ovp_warn "cannot parse 'NAME IP/PREFIX MAC' from attach output: $out"
        return 1
    fi
    EP_CIDR[$name]=$cidr
    EP_IP[$name]=${cidr%/*}
    EP_MAC[$name]=${mac,,}
}

# The MAC Docker (and overpass) derive from an IPv4 address: 02:42 + the 4 bytes.
ovp_mac_of_ip() {
    local a b c d
    IFS=. read -r a b c d <<<"$1"
    printf '02:42:%02x:%02x:%02x:%02x\n' "$a" "$b" "$c" "$d"
}

# Pings from namespace NS, prints ping's summary; succeeds only when every echo is
# answered (ping itself exits 0 when any one is).
ovp_ping() {  # NS DST [COUNT]
    local out rc
    out=$(ip netns exec "$1" ping -n -q -c "${3:-3}" -i 0.2 -W 2 "$2" 2>&1)
    rc=$?
    printf '%s\n' "$out" | grep -E 'transmitted|rtt|ping:'
    [[ $rc -eq 0 && "$out" == *", 0% packet loss"* ]]
}

# Waits up to TIMEOUT seconds for one answered ping (the first packets may go while
# the peers are still learning next hops), then requires COUNT answered pings.
ovp_ping_ok() {  # NS DST [COUNT] [TIMEOUT]
    local ns=$1 dst=$2 count=${3:-3} timeout=${4:-10} i
    for ((i = 0; i < timeout; i++)); do
        ip netns exec "$ns" ping -n -q -c 1 -W 1 "$dst" >/dev/null 2>&1 && break
        sleep 0.5
    done
    ovp_ping "$ns" "$dst" "$count"
}

# Succeeds when no echo is answered.
ovp_ping_fails() {  # NS DST [COUNT]
    ! ip netns exec "$1" ping -n -q -c "${3:-3}" -i 0.2 -W 1 "$2" >/dev/null 2>&1
}

# Reads an interface counter inside a namespace (rx_packets, tx_packets, ...).
ovp_ifstat() {  # NS IFNAME COUNTER
    ip netns exec "$1" cat "/sys/class/net/$2/statistics/$3" 2>/dev/null || echo -1
}

# ---------------------------------------------------------------------------------
# a Linux kernel VXLAN host, built the way Docker's overlay driver builds one

# In host namespace NS (whose ul0 carries LOCAL_IP): vx0 (VNI, port 4789, no
# learning) enslaved to bridge br0. Remote VTEPs and MACs come from static
# entries: ovp_kernel_fdb.
ovp_kernel_vtep_add() {  # NS VNI LOCAL_IP [DSTPORT]
    local ns=$1 vni=$2 local_ip=$3 port=${4:-4789}
    ip -n "$ns" link add vx0 type vxlan id "$vni" dstport "$port" local "$local_ip" \
        dev "$OVP_UPLINK_IF" nolearning || ovp_fail "vxlan vx0 in $ns"
    ip -n "$ns" link add br0 type bridge stp_state 0 forward_delay 0 mcast_snooping 0 \
        || ovp_fail "bridge br0 in $ns"
    ip -n "$ns" link set vx0 master br0
    ip -n "$ns" link set vx0 up
    ip -n "$ns" link set br0 up
}

# A container plugged into the kernel host's br0 by a veth: eth0 with IP/PREFIX,
# MAC and MTU inside container namespace CNS.
ovp_kernel_container_add() {  # HOSTNS CNS IP/PREFIX MAC [MTU]
    local hns=$1 cns=$2 cidr=$3 mac=$4 mtu=${5:-1450}
    ovp_netns_add "$cns"
    _ovp_sw_ports=$((_ovp_sw_ports + 1))
    local hv=ve$_ovp_sw_ports
    ip -n "$hns" link add "$hv" mtu "$mtu" type veth peer name eth0 netns "$cns" \
        || ovp_fail "veth $hns/$hv <-> $cns/eth0"
    ip -n "$hns" link set "$hv" master br0
    ip -n "$hns" link set "$hv" up
    ovp_offloads_off "$hns" "$hv"
    ip -n "$cns" link set eth0 address "$mac" mtu "$mtu"
    ovp_offloads_off "$cns" eth0
    ip -n "$cns" addr add "$cidr" dev eth0
    ip -n "$cns" link set eth0 up
}

# Static forwarding entries on the kernel host's vx0: MAC -> remote VTEP. MAC
# 00:00:00:00:00:00 is the flood entry (BUM head-end replication), added with append.
ovp_kernel_fdb() {  # NS MAC REMOTE_VTEP
    if [[ "$2" == 00:00:00:00:00:00 ]]; then
        ip netns exec "$1" bridge fdb append 00:00:00:00:00:00 dev vx0 dst "$3"
    else
        ip netns exec "$1" bridge fdb add "$2" dev vx0 dst "$3" static
    fi
}

# ---------------------------------------------------------------------------------
# a ready-made cluster

# Creates the switch and overpass hosts host1..hostN: namespace h<i>-<id>, host id
# host<i>-<id>, VTEP 198.18.0.<i>, one overpassd each (label host<i>), all sharing
# $OVP_STORE_FILE. Starts them all, then waits for each (bounded).
ovp_overpass_hosts() {  # N [extra overpassd options...]
    local n=$1 i
    shift
    [[ -n "$OVP_SWITCH_NS" ]] || ovp_switch_add
    for ((i = 1; i <= n; i++)); do
        ovp_host_add "h$i-$OVP_ID"
        ovp_daemon_start "host$i" "h$i-$OVP_ID" "host$i-$OVP_ID" "198.18.0.$i" "$@"
    done
    for ((i = 1; i <= n; i++)); do
        ovp_daemon_wait "host$i" 30 || ovp_fail "overpassd host$i did not become ready"
    done
}

# Retries CMD (a shell function or command) every 0.2 s until it succeeds or TIMEOUT
# seconds pass. For state that propagates through the store (watch poll: 100 ms).
ovp_eventually() {  # TIMEOUT CMD...
    local timeout=$1 i
    shift
    for ((i = 0; i < timeout * 5; i++)); do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.2
    done
    "$@"
}

# Reads JSON on stdin and prints the first value found under key FIELD (searched
# depth-first, so the exact nesting of the CLI's output does not matter). Strings
# print bare, other values as JSON. Fails when stdin is not JSON or FIELD is absent.
ovp_json_get() {  # FIELD
    python3 -c '
import json, sys
def find(v, k):
    if isinstance(v, dict):
        if k in v:
            return True, v[k]
        v = list(v.values())
    if isinstance(v, list):
        for x in v:
            ok, r = find(x, k)
            if ok:
                return True, r
    return False, None
try:
    doc = json.load(sys.stdin)
except ValueError as e:
    sys.exit("not JSON: %s" % e)
ok, r = find(doc, sys.argv[1])
if not ok:
    sys.exit("no field %r" % sys.argv[1])
print(r if isinstance(r, str) else json.dumps(r))
' "$1"
}

# Checks a TAP container's eth0: address CIDR, MAC, MTU, up, default route via GW.
# Prints what differs; returns 1 if anything does.
ovp_check_eth0() {  # NS CIDR MAC MTU GW
    local ns=$1 cidr=$2 mac=$3 mtu=$4 gw=$5 bad=0 v
    if ! ip -n "$ns" link show dev eth0 >/dev/null 2>&1; then
        echo "$ns: no eth0" >&2
        return 1
    fi
    v=$(ip -n "$ns" -o -4 addr show dev eth0 | awk '{print $4}')
    [[ "$v" == "$cidr" ]] || { echo "$ns: eth0 address '$v', expected $cidr" >&2; bad=1; }
    v=$(ip netns exec "$ns" cat /sys/class/net/eth0/address)
    [[ "${v,,}" == "${mac,,}" ]] || { echo "$ns: eth0 MAC $v, expected $mac" >&2; bad=1; }
    v=$(ip netns exec "$ns" cat /sys/class/net/eth0/mtu)
    [[ "$v" == "$mtu" ]] || { echo "$ns: eth0 MTU $v, expected $mtu" >&2; bad=1; }
    v=$(ip -n "$ns" -o link show dev eth0)
    [[ "$v" =~ [\<,]UP[,\>] ]] || { echo "$ns: eth0 is not up: $v" >&2; bad=1; }
    v=$(ip -n "$ns" -4 route show default)
    [[ "$v" == *"via $gw dev eth0"* ]] || { echo "$ns: default route '$v', expected via $gw dev eth0" >&2; bad=1; }
    return $bad
}

# ovp_cli_has DAEMON FIELD ARGS...: the CLI call succeeds and some whitespace-separated
# field of its output equals FIELD. ovp_cli_lacks: succeeds and none does. A failing
# CLI call fails both (so "lacks" never passes on a dead daemon).
ovp_cli_has() {
    local d=$1 f=$2 out
    shift 2
    out=$(ovp_cli "$d" "$@" 2>&1) || return 2
    awk -v f="$f" '{for (i = 1; i <= NF; i++) if ($i == f) found = 1} END {exit !found}' <<<"$out"
}
ovp_cli_lacks() {
    local d=$1 f=$2 out
    shift 2
    out=$(ovp_cli "$d" "$@" 2>&1) || return 2
    ! awk -v f="$f" '{for (i = 1; i <= NF; i++) if ($i == f) found = 1} END {exit !found}' <<<"$out"
}

# Prints daemon LABEL's non-zero drop counters on one line ("reason=N ...").
ovp_drops() {  # LABEL
    ovp_cli "$1" stats --json 2>/dev/null | python3 -c '
import json, sys
try:
    d = json.load(sys.stdin)
except ValueError:
    sys.exit(0)
def find(v):
    if isinstance(v, dict):
        if isinstance(v.get("drops"), dict):
            return v["drops"]
        for x in v.values():
            r = find(x)
            if r is not None:
                return r
    return None
drops = find(d) or {}
print(" ".join("%s=%s" % (k, n) for k, n in sorted(drops.items()) if n) or "(no drops)")
'
}
