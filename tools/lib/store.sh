# SPDX-License-Identifier: Apache-2.0
# shellcheck shell=bash disable=SC2034,SC2004  # OVP_* are read by the sourcing scripts; the maps are declared in netns.sh
# runs on: the test/demo script's shell (sourced, bash only, after tools/lib/netns.sh)
#
# Store helpers for tools/demo.sh and tests/integration/*.sh: a management network
# and a real etcd on it.
#
#   - The management network: namespace mgmt-<id> with bridge br0 carrying
#     198.19.0.254/24. Every host namespace gets a second veth "mg0" plugged into it,
#     with a kernel address 198.19.0.N/24: that link is the host's own (as in a real
#     deployment, the store is kept off the VXLAN underlay that overpassd owns; ul0
#     stays without a kernel address).
#   - etcd (/usr/bin/etcd) runs inside mgmt-<id> on 198.19.0.254, client port 2379,
#     peer port 2380 (concrete ports: they go into the advertise URLs; the namespace
#     is private to the run, so they cannot collide with anything), data dir under
#     the run dir, stopped by its PID. It can be stopped and started again with the
#     same data dir and ports (a store outage).
#   - or the in-tree fake Consul (tests/ctl/fake_consul/fake_consul.py) inside
#     mgmt-<id> on 198.19.0.254:8500, with a per-run ACL token (a file given to the
#     daemons by --store-token-file). The fake keeps its data in memory: a store
#     outage is made with its fault injection (or SIGSTOP/SIGCONT), not a restart.
#   - overpassd started with --store etcd://198.19.0.254:2379/ovp-<id> (or
#     consul://198.19.0.254:8500/ovp-<id> once ovp_consul_start ran).
#
# Usage:
#   source "$here/../../tools/lib/netns.sh"
#   source "$here/../../tools/lib/store.sh"
#   ovp_init cluster_etcd
#   ovp_etcd_need                           # exit 77 when /usr/bin/etcd is missing
#   ovp_find_bins "$BUILD_DIR"
#   ovp_mgmt_add                            # mgmt-<pid>, br0 198.19.0.254/24
#   ovp_etcd_start && ovp_etcd_wait 20      # sets OVP_STORE_URL
#   ovp_etcd_hosts 2                        # host1..host2 on underlay + management
#   ovp_etcd_stop; ...; ovp_etcd_start && ovp_etcd_wait 20
# or, for Consul:
#   ovp_consul_need; ...; ovp_consul_start && ovp_consul_wait 20   # sets OVP_STORE_URL
#   ovp_store_hosts 2                       # daemons get --store-token-file
#   ovp_consul_fault '{"preset":"no_leader","count":1000000}'; ovp_consul_fault_clear

if [[ -n "${_OVP_STORE_SH:-}" ]]; then
    return 0
fi
_OVP_STORE_SH=1
if [[ -z "${_OVP_NETNS_SH:-}" ]]; then
    echo "store.sh: source tools/lib/netns.sh first" >&2
    return 1
fi

OVP_ETCD_BIN=${OVP_ETCD_BIN:-/usr/bin/etcd}
OVP_MGMT_NS=""                       # set by ovp_mgmt_add
OVP_MGMT_IP=198.19.0.254             # the store's address on the management network
OVP_MGMT_PREFIX=24
OVP_MGMT_IF=mg0                      # the host-side management veth, same name in every host
OVP_ETCD_CLIENT_PORT=2379
OVP_ETCD_PEER_PORT=2380
OVP_ETCD_DATA=$OVP_DIR/etcd.data
OVP_ETCD_CLIENT_URL=http://$OVP_MGMT_IP:$OVP_ETCD_CLIENT_PORT
OVP_ETCD_PREFIX=ovp-$OVP_ID          # key namespace of this run inside etcd
OVP_STORE_URL=etcd://$OVP_MGMT_IP:$OVP_ETCD_CLIENT_PORT/$OVP_ETCD_PREFIX
OVP_ETCD_STARTS=0                    # how many times etcd was started in this run
declare -A OVP_MGMT_ADDR=()          # host namespace -> its management address
OVP_STORE_DAEMON_ARGS=()             # extra overpassd options the store needs (token file)

OVP_CONSUL_FAKE=${OVP_CONSUL_FAKE:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../../tests/ctl/fake_consul" 2>/dev/null && pwd)/fake_consul.py}
OVP_CONSUL_PORT=8500
OVP_CONSUL_URL=http://$OVP_MGMT_IP:$OVP_CONSUL_PORT
OVP_CONSUL_PREFIX=ovp-$OVP_ID        # key prefix of this run inside Consul
OVP_CONSUL_TOKEN=""                  # set by ovp_consul_start
OVP_CONSUL_TOKEN_FILE=$OVP_DIR/consul.token
OVP_PYTHON=""                        # the real interpreter (not a pyenv shim): its PID is the fake's

# Exits 77 (skip) when there is no etcd binary.
ovp_etcd_need() {
    [[ -x "$OVP_ETCD_BIN" ]] || ovp_skip "no etcd at $OVP_ETCD_BIN (Debian package etcd-server)"
}

# ---------------------------------------------------------------------------------
# the management network

# Namespace mgmt-<id> with bridge br0 (no STP, no forward delay) holding the store's
# address 198.19.0.254/24.
ovp_mgmt_add() {
    OVP_MGMT_NS=mgmt-$OVP_ID
    ovp_netns_add "$OVP_MGMT_NS"
    ip -n "$OVP_MGMT_NS" link add br0 type bridge stp_state 0 forward_delay 0 \
        || ovp_fail "bridge in $OVP_MGMT_NS"
    ip -n "$OVP_MGMT_NS" addr add "$OVP_MGMT_IP/$OVP_MGMT_PREFIX" dev br0 \
        || ovp_fail "address $OVP_MGMT_IP on $OVP_MGMT_NS"
    ip -n "$OVP_MGMT_NS" link set br0 up
}

# Plugs host namespace NS into the management bridge: veth "mg0" inside NS with the
# kernel address 198.19.0.N/24, its peer "mhN" on br0.
ovp_mgmt_link() {  # NS N
    local ns=$1 n=$2 port
    [[ -n "$OVP_MGMT_NS" ]] || ovp_mgmt_add
    [[ "$n" =~ ^[0-9]+$ && $n -ge 1 && $n -le 253 ]] || ovp_fail "management host number '$n' not in 1..253"
    port=mh$n
    ip -n "$OVP_MGMT_NS" link add "$port" type veth peer name "$OVP_MGMT_IF" netns "$ns" \
        || ovp_fail "veth $port <-> $ns/$OVP_MGMT_IF"
    ip -n "$OVP_MGMT_NS" link set "$port" master br0
    ip -n "$OVP_MGMT_NS" link set "$port" up
    ip -n "$ns" addr add "198.19.0.$n/$OVP_MGMT_PREFIX" dev "$OVP_MGMT_IF" \
        || ovp_fail "address 198.19.0.$n on $ns/$OVP_MGMT_IF"
    ip -n "$ns" link set "$OVP_MGMT_IF" up
    OVP_MGMT_ADDR[$ns]=198.19.0.$n
}

# ---------------------------------------------------------------------------------
# etcd

# The etcd command line (one member, named after the run).
_ovp_etcd_cmd() {
    local peer=http://$OVP_MGMT_IP:$OVP_ETCD_PEER_PORT name=ovp$OVP_ID
    printf '%s\n' "$OVP_ETCD_BIN" --name "$name" --data-dir "$OVP_ETCD_DATA" \
        --listen-client-urls "$OVP_ETCD_CLIENT_URL" --advertise-client-urls "$OVP_ETCD_CLIENT_URL" \
        --listen-peer-urls "$peer" --initial-advertise-peer-urls "$peer" \
        --initial-cluster "$name=$peer" --log-level warn
}

# The etcd command as one printable line (for narration).
ovp_etcd_cmdline() { _ovp_etcd_cmd | tr '\n' ' ' | sed 's/ $//'; }

# Starts etcd in the management namespace (creating it if needed), in the background,
# logging (appending) to $OVP_DIR/etcd.log; recorded under label "etcd" (the label
# follows the newest instance). Starting again after ovp_etcd_stop reuses the data
# dir and the ports: the same cluster comes back.
ovp_etcd_start() {
    [[ -n "$OVP_MGMT_NS" ]] || ovp_mgmt_add
    if ovp_alive etcd; then
        ovp_warn "etcd already running (pid ${OVP_PID[etcd]})"
        return 0
    fi
    local -a cmd
    mapfile -t cmd < <(_ovp_etcd_cmd)
    mkdir -p "$OVP_ETCD_DATA" && chmod 700 "$OVP_ETCD_DATA"
    local log=$OVP_DIR/etcd.log
    OVP_LOG[etcd]=$log
    OVP_ETCD_STARTS=$((OVP_ETCD_STARTS + 1))
    printf -- '--- etcd start #%d at %s\n' "$OVP_ETCD_STARTS" "$(date +%T.%N)" >>"$log"
    ip netns exec "$OVP_MGMT_NS" "${cmd[@]}" </dev/null >>"$log" 2>&1 &
    OVP_LAST_PID=$!
    ovp_register_pid "$OVP_LAST_PID" etcd
}

# One request to etcd's v3 JSON gateway from the management namespace:
#   ovp_etcd_api /v3/kv/range '{"key":"..."}'       prints the JSON answer
ovp_etcd_api() {  # PATH JSON
    ip netns exec "$OVP_MGMT_NS" curl -sS --max-time 2 -X POST \
        "$OVP_ETCD_CLIENT_URL$1" -d "$2"
}

# Waits until etcd answers a range request (bounded). Fails when etcd died.
ovp_etcd_wait() {  # [TIMEOUT_S]
    local timeout=${1:-20} i pid=${OVP_PID[etcd]:-}
    for ((i = 0; i < timeout * 10; i++)); do
        if [[ -z "$pid" ]] || ! kill -0 "$pid" 2>/dev/null; then
            wait "$pid" 2>/dev/null
            ovp_warn "etcd (pid $pid) exited with status $? before it was ready"
            tail -n 30 "$OVP_DIR/etcd.log" >&2
            return 1
        fi
        if ovp_etcd_api /v3/kv/range '{"key":"AA=="}' 2>/dev/null | grep -q '"header"'; then
            return 0
        fi
        sleep 0.1
    done
    ovp_warn "etcd not ready after ${timeout}s on $OVP_ETCD_CLIENT_URL"
    tail -n 30 "$OVP_DIR/etcd.log" >&2
    return 1
}

# Stops etcd gracefully (SIGTERM, then SIGKILL after TIMEOUT). Returns its status.
ovp_etcd_stop() { ovp_stop etcd "${1:-10}"; }

# Prints this run's keys and values (decoded) with their leases: for failure reports.
ovp_etcd_dump() {
    local start end
    start=$(printf '%s/' "$OVP_ETCD_PREFIX" | base64 -w0)
    end=$(printf '%s0' "$OVP_ETCD_PREFIX" | base64 -w0)   # '/' + 1 = '0'
    ovp_etcd_api /v3/kv/range "{\"key\":\"$start\",\"range_end\":\"$end\"}" | python3 -c '
import base64, json, sys
try:
    d = json.load(sys.stdin)
except ValueError as e:
    sys.exit("etcd answer is not JSON: %s" % e)
for kv in d.get("kvs", []):
    k = base64.b64decode(kv["key"]).decode(errors="replace")
    v = base64.b64decode(kv.get("value", "")).decode(errors="replace")
    print("%s = %s%s" % (k, v, ("  [lease %s]" % kv["lease"]) if kv.get("lease") else ""))
'
}

# ---------------------------------------------------------------------------------
# the fake Consul

# Exits 77 (skip) when python3 or the fake is missing.
ovp_consul_need() {
    [[ -f "$OVP_CONSUL_FAKE" ]] || ovp_skip "no fake Consul at $OVP_CONSUL_FAKE"
    OVP_PYTHON=$(python3 -c 'import sys; print(sys.executable)' 2>/dev/null) \
        || ovp_skip "no python3 for the fake Consul"
    [[ -x "$OVP_PYTHON" ]] || ovp_skip "no python3 for the fake Consul"
}

# Starts the fake Consul in the management namespace on 198.19.0.254:8500 with a
# fresh ACL token (also written, mode 600, to $OVP_CONSUL_TOKEN_FILE and passed to
# every daemon started later as --store-token-file). Logs to $OVP_DIR/consul.log;
# recorded under label "consul". Sets OVP_STORE_URL to consul://.../ovp-<id>.
ovp_consul_start() {
    [[ -n "$OVP_MGMT_NS" ]] || ovp_mgmt_add
    [[ -n "$OVP_PYTHON" ]] || ovp_consul_need
    if ovp_alive consul; then
        ovp_warn "fake Consul already running (pid ${OVP_PID[consul]})"
        return 0
    fi
    if [[ -z "$OVP_CONSUL_TOKEN" ]]; then
        OVP_CONSUL_TOKEN=$(cat /proc/sys/kernel/random/uuid)
        (umask 077 && printf '%s\n' "$OVP_CONSUL_TOKEN" >"$OVP_CONSUL_TOKEN_FILE")
    fi
    OVP_STORE_URL=consul://$OVP_MGMT_IP:$OVP_CONSUL_PORT/$OVP_CONSUL_PREFIX
    OVP_STORE_DAEMON_ARGS=(--store-token-file "$OVP_CONSUL_TOKEN_FILE")
    local log=$OVP_DIR/consul.log
    OVP_LOG[consul]=$log
    rm -f "$OVP_DIR/consul.port"
    printf -- '--- fake Consul start at %s\n' "$(date +%T.%N)" >>"$log"
    ip netns exec "$OVP_MGMT_NS" "$OVP_PYTHON" "$OVP_CONSUL_FAKE" --host "$OVP_MGMT_IP" \
        --port "$OVP_CONSUL_PORT" --token "$OVP_CONSUL_TOKEN" --port-file "$OVP_DIR/consul.port" \
        </dev/null >>"$log" 2>&1 &
    OVP_LAST_PID=$!
    ovp_register_pid "$OVP_LAST_PID" consul
}

# The fake's command line (token elided), for narration.
ovp_consul_cmdline() {
    echo "ip netns exec $OVP_MGMT_NS $OVP_PYTHON $OVP_CONSUL_FAKE --host $OVP_MGMT_IP --port $OVP_CONSUL_PORT --token <per-run token> --port-file $OVP_DIR/consul.port"
}

# One request to the fake from the management namespace, with the ACL token:
#   ovp_consul_api GET /v1/kv/x?recurse         prints the body
#   ovp_consul_api POST /_fake/fault '{...}'    (admin endpoints need no token)
# Fails on a transport error or an HTTP status >= 400.
ovp_consul_api() {  # METHOD PATH [JSON]
    local -a data=()
    [[ $# -ge 3 ]] && data=(--data-binary "$3")
    ip netns exec "$OVP_MGMT_NS" curl -sS -f --max-time 5 -X "$1" \
        -H "X-Consul-Token: $OVP_CONSUL_TOKEN" "${data[@]}" "$OVP_CONSUL_URL$2"
}

# Waits until the fake wrote its port file and answers /v1/status/leader (bounded).
ovp_consul_wait() {  # [TIMEOUT_S]
    local timeout=${1:-20} i pid=${OVP_PID[consul]:-}
    for ((i = 0; i < timeout * 10; i++)); do
        if [[ -z "$pid" ]] || ! kill -0 "$pid" 2>/dev/null; then
            wait "$pid" 2>/dev/null
            ovp_warn "fake Consul (pid $pid) exited with status $? before it was ready"
            tail -n 30 "$OVP_DIR/consul.log" >&2
            return 1
        fi
        if [[ -s "$OVP_DIR/consul.port" ]] && ovp_consul_api GET /v1/status/leader >/dev/null 2>&1; then
            return 0
        fi
        sleep 0.1
    done
    ovp_warn "fake Consul not ready after ${timeout}s on $OVP_CONSUL_URL"
    tail -n 30 "$OVP_DIR/consul.log" >&2
    return 1
}

# Stops the fake (SIGTERM, then SIGKILL after TIMEOUT). Returns its status. Its data
# is in memory only: a restart starts empty.
ovp_consul_stop() {
    ovp_consul_resume 2>/dev/null   # a stopped process would not handle SIGTERM
    ovp_stop consul "${1:-10}"
}

# Fault injection (POST /_fake/fault, see tests/ctl/fake_consul/README.md) and clear.
ovp_consul_fault() { ovp_consul_api POST /_fake/fault "$1" >/dev/null; }
ovp_consul_fault_clear() { ovp_consul_api POST /_fake/fault/clear '{}' >/dev/null; }

# Freezes / thaws the fake by its PID (a hung server: the kernel still accepts TCP
# connections into the backlog, nothing answers). Its clock is monotonic time, so
# session deadlines keep running while it is stopped.
ovp_consul_pause() { kill -STOP "${OVP_PID[consul]:?no fake Consul}"; }
ovp_consul_resume() {
    local pid=${OVP_PID[consul]:-}
    [[ -n "$pid" ]] && kill -CONT "$pid"
}

# Prints this run's keys and values (decoded) with their sessions: for failure reports.
ovp_consul_dump() {
    local out
    out=$(ovp_consul_api GET "/v1/kv/$OVP_CONSUL_PREFIX/?recurse") || {
        # 404 = nothing under the prefix
        ovp_consul_api GET /v1/status/leader >/dev/null 2>&1 && return 0
        return 1
    }
    python3 -c '
import base64, json, sys
for e in json.loads(sys.argv[1]):
    v = base64.b64decode(e.get("Value") or "").decode(errors="replace")
    s = e.get("Session")
    print("%s = %s%s" % (e["Key"], v, ("  [session %s]" % s) if s else ""))
' "$out"
}

# The fake's sessions as "ID NAME TTL" lines.
ovp_consul_sessions() {
    local out
    out=$(ovp_consul_api GET /v1/session/list) || return 1
    python3 -c '
import json, sys
for s in json.loads(sys.argv[1]):
    print(s.get("ID"), s.get("Name"), s.get("TTL"))
' "$out"
}

# ---------------------------------------------------------------------------------
# overpassd on the store (etcd or Consul)

# Like ovp_daemon_start (tools/lib/netns.sh), with --store $OVP_STORE_URL (and
# OVP_STORE_DAEMON_ARGS, e.g. Consul's --store-token-file):
#   ovp_store_daemon_start LABEL NS HOST_ID VTEP_IP [more overpassd options...]
# A restart under the same LABEL appends to the same log.
ovp_store_daemon_start() {
    local label=$1 ns=$2 hid=$3 vtep=$4
    shift 4
    local sock=$OVP_DIR/$label.sock log=$OVP_DIR/$label.log
    OVP_SOCK[$label]=$sock
    OVP_HOSTNS[$label]=$ns
    OVP_HOSTID[$label]=$hid
    OVP_LOG[$label]=$log
    ovp_register_path "/var/run/dpdk/overpass-$hid"
    printf -- '--- overpassd %s start at %s\n' "$label" "$(date +%T.%N)" >>"$log"
    # shellcheck disable=SC2086  # OVP_DAEMON_ARGS is a word list on purpose
    ip netns exec "$ns" "$OVPD" --host-id "$hid" --vtep-ip "$vtep" \
        --uplink "net_af_packet0,iface=$OVP_UPLINK_IF" \
        --store "$OVP_STORE_URL" "${OVP_STORE_DAEMON_ARGS[@]}" --api "$sock" $OVP_DAEMON_ARGS "$@" \
        </dev/null >>"$log" 2>&1 &
    OVP_LAST_PID=$!
    ovp_register_pid "$OVP_LAST_PID" "$label"
}

# Creates the underlay switch, the management network (if not there yet) and hosts
# host1..hostN: namespace h<i>-<id>, underlay veth ul0 (no kernel IP, VTEP
# 198.18.0.<i> owned by overpassd), management veth mg0 198.19.0.<i>/24, host id
# host<i>-<id>, one overpassd each on $OVP_STORE_URL. Starts them all, then waits.
ovp_store_hosts() {  # N [extra overpassd options...]
    local n=$1 i
    shift
    [[ -n "$OVP_SWITCH_NS" ]] || ovp_switch_add
    [[ -n "$OVP_MGMT_NS" ]] || ovp_mgmt_add
    for ((i = 1; i <= n; i++)); do
        ovp_host_add "h$i-$OVP_ID"
        ovp_mgmt_link "h$i-$OVP_ID" "$i"
        ovp_store_daemon_start "host$i" "h$i-$OVP_ID" "host$i-$OVP_ID" "198.18.0.$i" "$@"
    done
    for ((i = 1; i <= n; i++)); do
        ovp_daemon_wait "host$i" 30 || ovp_fail "overpassd host$i did not become ready"
    done
}

# The same, under its first name (etcd was the first network store).
ovp_etcd_hosts() { ovp_store_hosts "$@"; }
