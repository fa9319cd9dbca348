#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
# runs on: the bench host (no DPDK; Python standard library only)
#
# Writes the inputs of the data-plane benchmark (perf/dp_bench):
#
#   gen_bench.py store   --endpoints N --vteps M --out STORE.json
#   gen_bench.py traffic --scenario S --endpoints N --vteps M [--flows F] [--size B]
#                        --out-dir DIR
#
# The store is a file_store file (format "overpass-file-store/1", what overpassd's
# file:// backend reads): one network (VNI 4096, 10.0.0.0/8, gateway 10.0.0.1, MTU 1450),
# the bench host "bench" (VTEP 198.18.0.1) with LOCAL endpoints 10.0.0.2..10.0.0.5, and
# N - LOCAL remote endpoints spread round-robin over M remote hosts/VTEPs.
#
# Traffic (classic pcap, Ethernet, no FCS: a "64-byte frame" is 60 bytes in the file):
#   encap   container.pcap  local endpoint 0 -> F flows to remote endpoints spread over the table
#   decap   uplink.pcap     VXLAN from the M VTEPs (source endpoints spread over the table)
#                           to the local endpoints
#   local   container.pcap  local endpoint 0 -> local endpoints 1..3
#   bum     container.pcap  local endpoint 0 -> broadcast (replicated to every VTEP and local port)
#   mixed   both            encap and decap at once (half the frames each direction)
#   encap2  container.pcap + container2.pcap: encap from local endpoints 0 and 1 (one
#           RX port per worker for the 2-worker run)
# Addresses are pure functions of the indices, so store and traffic always agree.
import argparse
import json
import os
import struct
import sys

LOCAL = 4                      # local endpoints (container ports of the bench)
VNI = 4096
NET_ID = "be0c4b0e0c4b0e00"
BENCH_HOST = "bench"
BENCH_VTEP = (198, 18, 0, 1)
BENCH_VTEP_MAC = bytes.fromhex("02c612000001")   # dp_bench --vtep-mac default
VXLAN_PORT = 4789
MAX_VTEPS = 256                # max_remote_vteps_per_network in include/overpass/tables.hpp


def ip_str(t):
    return ".".join(str(b) for b in t)


def ip_of(n):
    """Overlay address number n (host order) inside 10.0.0.0/8."""
    v = (10 << 24) + n
    return ((v >> 24) & 255, (v >> 16) & 255, (v >> 8) & 255, v & 255)


def local_ip(k):
    return ip_of(2 + k)


def remote_ip(i):
    return ip_of(16 + i)


def mac_of(ip):
    return bytes((0x02, 0x42) + tuple(ip))


def mac_str(mac):
    return ":".join("%02x" % b for b in mac)


def vtep_ip(j):
    return (198, 18, 1 + j // 200, 1 + j % 200)


def vtep_mac(j):
    return bytes((0x02, 0xc6, 0x12, 0x01, j >> 8, j & 255))


def remote_count(n):
    if n <= LOCAL:
        sys.exit("gen_bench.py: --endpoints must be larger than %d" % LOCAL)
    return n - LOCAL


def spread(f, r):
    """Flow f's remote endpoint: a multiplicative walk, so consecutive frames touch
    endpoints all over the table (no locality the hash tables would not see for real)."""
    return (f * 2654435761) % r


# ---------------------------------------------------------------- store

def write_store(path, n, m):
    if not 1 <= m <= MAX_VTEPS:
        sys.exit("gen_bench.py: --vteps must be 1..%d" % MAX_VTEPS)
    r = remote_count(n)
    root = "overpass/v1/"
    rev = [0]

    def rec(value):
        rev[0] += 1
        return {"value": value, "create_rev": rev[0], "mod_rev": rev[0]}

    # Written by hand, streaming: a 1M-endpoint store is ~200 MB of JSON.
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write('{\n "format": "overpass-file-store/1",\n "keys": {\n')
        first = [True]

        def put(key, value):
            f.write(("" if first[0] else ",\n") + "  " + json.dumps(key) + ": " + json.dumps(rec(value)))
            first[0] = False

        put(root + "hosts/" + BENCH_HOST, json.dumps({"vtep": ip_str(BENCH_VTEP), "vxlan_port": VXLAN_PORT}))
        for j in range(m):
            put(root + "hosts/r%03d" % j, json.dumps({"vtep": ip_str(vtep_ip(j)), "vxlan_port": VXLAN_PORT}))
        put(root + "names/bench", json.dumps(NET_ID))
        put(root + "vnis/%d" % VNI, json.dumps(NET_ID))
        put(root + "subnets/10.0.0.0_8", json.dumps(NET_ID))
        put(root + "nets/%s/meta" % NET_ID,
            json.dumps({"name": "bench", "vni": VNI, "subnet": "10.0.0.0/8", "gateway": "10.0.0.1",
                        "mtu": 1450, "created_by": BENCH_HOST}))
        eps = root + "nets/%s/eps/" % NET_ID
        for k in range(LOCAL):
            ip = local_ip(k)
            put(eps + ip_str(ip), json.dumps({"name": "l%d" % k, "mac": mac_str(mac_of(ip)), "host": BENCH_HOST,
                                              "vtep": ip_str(BENCH_VTEP), "kind": "tap"}))
        for i in range(r):
            ip = remote_ip(i)
            j = i % m
            put(eps + ip_str(ip), json.dumps({"name": "e%d" % i, "mac": mac_str(mac_of(ip)), "host": "r%03d" % j,
                                              "vtep": ip_str(vtep_ip(j)), "kind": "tap"}))
        f.write('\n },\n "revision": %d,\n "sessions": {}\n}\n' % rev[0])
    os.replace(tmp, path)


# ---------------------------------------------------------------- frames

def csum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while s >> 16:
        s = (s & 0xffff) + (s >> 16)
    return (~s) & 0xffff


def ipv4(src, dst, proto, payload, ident=0):
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), ident, 0x4000, 64, proto, 0,
                      bytes(src), bytes(dst))
    c = csum(hdr)
    return hdr[:10] + struct.pack("!H", c) + hdr[12:] + payload


def udp(sport, dport, payload):
    return struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload


def eth(dst, src, payload, ethertype=0x0800):
    return dst + src + struct.pack("!H", ethertype) + payload


def inner_frame(dst_mac, src_mac, src_ip, dst_ip, f, size):
    """A UDP/IPv4 frame of `size` bytes on the wire (size - 4 without the FCS)."""
    length = size - 4
    pad = length - 14 - 20 - 8
    if pad < 0:
        sys.exit("gen_bench.py: --size must be at least 46")
    payload = bytes((f + i) & 255 for i in range(pad))
    return eth(dst_mac, src_mac, ipv4(src_ip, dst_ip, 17, udp(1024 + f % 60000, 5000 + (f // 60000) % 1000, payload),
                                      ident=f & 0xffff))


def encap_frames(n, m, flows, size, local=0):
    r = remote_count(n)
    src = local_ip(local)
    for f in range(flows):
        dst = remote_ip(spread(f, r))
        yield inner_frame(mac_of(dst), mac_of(src), src, dst, f, size)


def decap_frames(n, m, flows, size):
    r = remote_count(n)
    for f in range(flows):
        i = spread(f, r)
        j = i % m
        src = remote_ip(i)
        dst = local_ip(f % LOCAL)
        inner = inner_frame(mac_of(dst), mac_of(src), src, dst, f, size)
        vx = struct.pack("!II", 0x08000000, VNI << 8) + inner
        outer = ipv4(vtep_ip(j), BENCH_VTEP, 17, udp(49152 + (f & 0x3fff), VXLAN_PORT, vx), ident=f & 0xffff)
        yield eth(BENCH_VTEP_MAC, vtep_mac(j), outer)


def local_frames(n, m, flows, size):
    src = local_ip(0)
    for f in range(flows):
        dst = local_ip(1 + f % (LOCAL - 1))
        yield inner_frame(mac_of(dst), mac_of(src), src, dst, f, size)


def bum_frames(n, m, flows, size):
    src = local_ip(0)
    for f in range(flows):
        yield inner_frame(b"\xff" * 6, mac_of(src), src, (10, 255, 255, 255), f, size)


def write_pcap(path, frames):
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xa1b2c3d4, 2, 4, 0, 0, 65535, 1))
        count = 0
        for i, fr in enumerate(frames):
            f.write(struct.pack("<IIII", i // 1000000, i % 1000000, len(fr), len(fr)))
            f.write(fr)
            count += 1
    return count


def write_traffic(args):
    os.makedirs(args.out_dir, exist_ok=True)
    files = {}
    gen = {"encap": [("container", encap_frames)], "decap": [("uplink", decap_frames)],
           "local": [("container", local_frames)], "bum": [("container", bum_frames)],
           "mixed": [("container", encap_frames), ("uplink", decap_frames)],
           "encap2": [("container", encap_frames),
                      ("container2", lambda n, m, f, b: encap_frames(n, m, f, b, local=1))]}[args.scenario]
    flows = args.flows if args.scenario not in ("mixed", "encap2") else max(1, args.flows // 2)
    for role, fn in gen:
        path = os.path.join(args.out_dir, role + ".pcap")
        write_pcap(path, fn(args.endpoints, args.vteps, flows, args.size))
        files[role] = path
    json.dump({"scenario": args.scenario, "endpoints": args.endpoints, "vteps": args.vteps, "flows": args.flows,
               "size": args.size, "pcaps": files}, open(os.path.join(args.out_dir, "traffic.json"), "w"))
    print(" ".join("--%s-pcap %s" % (k, v) for k, v in files.items()))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("store")
    s.add_argument("--endpoints", type=int, required=True)
    s.add_argument("--vteps", type=int, default=64)
    s.add_argument("--out", required=True)
    t = sub.add_parser("traffic")
    t.add_argument("--scenario", choices=["encap", "decap", "local", "bum", "mixed", "encap2"], required=True)
    t.add_argument("--endpoints", type=int, required=True)
    t.add_argument("--vteps", type=int, default=64)
    t.add_argument("--flows", type=int, default=16384)
    t.add_argument("--size", type=int, default=64, help="inner frame size on the wire, FCS included")
    t.add_argument("--out-dir", required=True)
    args = ap.parse_args()
    if args.cmd == "store":
        write_store(args.out, args.endpoints, args.vteps)
    else:
        write_traffic(args)


if __name__ == "__main__":
    main()
