#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
# runs on: perf/cluster_bench.sh, inside the (still empty) target container namespace
# on host1, started before `overpass endpoint attach`
#
# Waits for the prober's first UDP datagram (port 40001, payload "OVPB" + seq + send
# time) on ANY interface of its network namespace. The AF_PACKET socket is not bound to
# an interface, so it also sees eth0, which overpassd moves into the namespace only
# during the attach: the receiver is ready before the first packet can possibly arrive.
# The arrival time is the kernel's receive timestamp (SO_TIMESTAMPNS, CLOCK_REALTIME,
# taken when the TAP hands the frame to the stack), not the time Python reads it.
#
# Creates READY_FILE once the socket is open, then prints one JSON line and exits:
#   {"rx_ns": ..., "tx_ns": <prober send time>, "seq": ..., "ifindex": ...}
# or {"timeout": true} after TIMEOUT_S.
#
# Usage: first_packet.py READY_FILE [TIMEOUT_S]
import json
import select
import socket
import struct
import sys
import time

SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4


def main():
    ready = sys.argv[1]
    timeout = float(sys.argv[2]) if len(sys.argv) > 2 else 10.0
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    s.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    open(ready, "w").close()
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            print(json.dumps({"timeout": True}))
            return 1
        r, _, _ = select.select([s], [], [], left)
        if not r:
            continue
        data, anc, _, addr = s.recvmsg(2048, 64)
        # addr = (ifname, proto, pkttype, hatype, hwaddr)
        if addr[2] == PACKET_OUTGOING or len(data) < 14 + 20 + 8 + 20:
            continue
        if data[12:14] != b"\x08\x00" or data[23] != 17:
            continue
        ihl = (data[14] & 0x0F) * 4
        u = 14 + ihl
        if struct.unpack("!H", data[u + 2:u + 4])[0] != 40001 or data[u + 8:u + 12] != b"OVPB":
            continue
        seq, tx_ns = struct.unpack("!QQ", data[u + 12:u + 28])
        rx_ns = time.time_ns()
        for lvl, typ, val in anc:
            if lvl == socket.SOL_SOCKET and typ == SO_TIMESTAMPNS and len(val) >= 16:
                sec, nsec = struct.unpack("qq", val[:16])
                rx_ns = sec * 1_000_000_000 + nsec
        print(json.dumps({"rx_ns": rx_ns, "tx_ns": tx_ns, "seq": seq, "ifname": addr[0]}))
        return 0


if __name__ == "__main__":
    sys.exit(main())
