#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
# runs on: perf/cluster_bench.sh, inside the prober container's namespace on host2
#
# The prober of the attach-to-first-packet benchmark. Every PERIOD (default 1 ms) it
# sends, as raw Ethernet frames on eth0 (AF_PACKET, so the kernel's neighbour cache is
# not involved):
#   - an ARP request "who has TARGET_IP, tell MY_IP";
#   - a UDP datagram MY_IP:40000 -> TARGET_IP:40001 addressed to TARGET_MAC (overpass
#     MACs are derived from the address: 02:42 + the four bytes), payload
#     "OVPB" + seq (u64) + CLOCK_REALTIME send time in ns (u64).
# Overpass answers ARP on host2 itself, from the `addresses` table learned from the
# store, and drops requests for unknown targets (arp_unknown_target): a reply therefore
# means host2 has learned the endpoint. The UDP frame is encapsulated towards host1 once
# host2's `endpoints` table knows TARGET_MAC (before that it is unknown unicast, and
# head-end replication has no remote VTEP to send it to as long as host1 has no other
# endpoint in the network: the benchmark keeps it that way).
#
# It writes to LOG one line per "ARP came up" transition: "arp_up <kernel rx ns>", for
# a reply that follows at least GAP_MS without replies, and "arp_down <last reply ns>"
# when replies stop for GAP_MS. Runs until SIGTERM.
#
# Usage: prober.py IFNAME MY_IP MY_MAC TARGET_IP LOG [PERIOD_MS] [GAP_MS]
import os
import select
import signal
import socket
import struct
import sys
import time

SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
ETH_P_ARP = 0x0806
ETH_P_IP = 0x0800


def mac_bytes(s):
    return bytes(int(x, 16) for x in s.split(":"))


def ip_checksum(hdr):
    s = 0
    for i in range(0, len(hdr), 2):
        s += (hdr[i] << 8) | hdr[i + 1]
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return (~s) & 0xFFFF


def main():
    ifname, my_ip, my_mac, tgt_ip, log_path = sys.argv[1:6]
    period = float(sys.argv[6]) / 1000.0 if len(sys.argv) > 6 else 0.001
    gap_ns = int(float(sys.argv[7]) * 1e6) if len(sys.argv) > 7 else 100_000_000
    mine = socket.inet_aton(my_ip)
    tgt = socket.inet_aton(tgt_ip)
    smac = mac_bytes(my_mac)
    tmac = b"\x02\x42" + tgt
    bcast = b"\xff" * 6

    arp = (bcast + smac + struct.pack("!H", ETH_P_ARP)
           + struct.pack("!HHBBH", 1, ETH_P_IP, 6, 4, 1) + smac + mine + b"\x00" * 6 + tgt)

    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ARP))
    s.bind((ifname, ETH_P_ARP))
    s.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    s.setblocking(False)

    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))

    log = open(log_path, "a", buffering=1)
    seq = 0
    up = False
    last_reply = 0
    next_t = time.monotonic()
    while not stop:
        now = time.monotonic()
        if now >= next_t:
            seq += 1
            payload = b"OVPB" + struct.pack("!QQ", seq, time.time_ns())
            udp = struct.pack("!HHHH", 40000, 40001, 8 + len(payload), 0) + payload
            iph = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), seq & 0xFFFF, 0x4000, 64, 17, 0, mine, tgt)
            iph = iph[:10] + struct.pack("!H", ip_checksum(iph)) + iph[12:]
            try:
                s.send(arp)
                s.send(tmac + smac + struct.pack("!H", ETH_P_IP) + iph + udp)
            except OSError:
                pass
            next_t += period
            if next_t < now:           # fell behind (descheduled): do not burst
                next_t = now + period
        timeout = max(0.0, next_t - time.monotonic())
        try:
            r, _, _ = select.select([s], [], [], timeout)
        except InterruptedError:
            continue
        if r:
            while True:
                try:
                    data, anc, _, _ = s.recvmsg(2048, 64)
                except (BlockingIOError, InterruptedError):
                    break
                if len(data) < 42 or data[12:14] != b"\x08\x06":
                    continue
                op = struct.unpack("!H", data[20:22])[0]
                if op != 2 or data[28:32] != tgt:
                    continue
                ts = time.time_ns()
                for lvl, typ, val in anc:
                    if lvl == socket.SOL_SOCKET and typ == SO_TIMESTAMPNS and len(val) >= 16:
                        sec, nsec = struct.unpack("qq", val[:16])
                        ts = sec * 1_000_000_000 + nsec
                if not up or ts - last_reply > gap_ns:
                    if up:
                        log.write("arp_down %d\n" % last_reply)
                    log.write("arp_up %d\n" % ts)
                    up = True
                last_reply = ts
        if up and time.time_ns() - last_reply > gap_ns:
            log.write("arp_down %d\n" % last_reply)
            up = False
    log.write("sent %d\n" % seq)
    log.close()


if __name__ == "__main__":
    main()
