#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
# runs on: the test runner (observability.sh), python3 stdlib only
"""Helpers for tests/integration/observability.sh.

Prometheus text exposition (label-aware, never line greps). Queries:
  get NAME [LABEL=VALUE ...]              value of the one series that matches (error: none or several)
  sum NAME [LABEL=VALUE ...]              sum over the matching series (error: none)
  label NAME LABEL [LABEL=VALUE ...]      a label of the one series that matches
  with-label LABEL=VALUE                  how many series (any name) carry that label value, then
                                          those series, space-separated
Commands (python starts slowly on a loaded machine: one call answers many queries):
  q FILE                                  one answer line per query line on stdin; exit 2 on any
                                          error, after answering every line ("ERROR why")
  deltas                                  stdin lines "BEFORE AFTER WANT get|sum NAME [LABEL=VALUE...]":
                                          prints each check; exit 1 when any AFTER - BEFORE != WANT
Traffic (run inside a container namespace with `ip netns exec`):
  udp-send DST PORT COUNT PAYLOAD         COUNT datagrams of PAYLOAD bytes, paced
  udp-recv PORT COUNT PAYLOAD IDLE_S      counts datagrams of PAYLOAD bytes until COUNT or IDLE_S idle;
                                          prints "received N other M"
  spoof-send IFACE SRC_MAC DST_MAC SRC_IP DST_IP COUNT PAYLOAD
                                          COUNT hand-built Ethernet/IPv4/UDP frames on an AF_PACKET socket
DPDK telemetry:
  telemetry SOCKET COMMAND...             one JSON line per command: its answer (dpdk_telemetry.v2)
Prometheus HTTP API:
  prom-vector                             reads an /api/v1/query answer on stdin; prints one line
                                          per sample: "NAME VALUE {labels as JSON}"; exit 2 if not success
"""
import json
import socket
import struct
import sys
import time


# ---------------------------------------------------------------------------------
# exposition parser

class ParseError(Exception):
    pass


def _parse_labels(s, i):
    """Parses '{a="x",b="y"}' starting at s[i] == '{'. Returns (dict, index after '}')."""
    labels = {}
    i += 1
    while True:
        while i < len(s) and s[i] in " \t,":
            i += 1
        if i >= len(s):
            raise ParseError("unterminated label set")
        if s[i] == "}":
            return labels, i + 1
        j = i
        while j < len(s) and (s[j].isalnum() or s[j] == "_"):
            j += 1
        name = s[i:j]
        if not name:
            raise ParseError("bad label name at %d" % i)
        while j < len(s) and s[j] in " \t":
            j += 1
        if j >= len(s) or s[j] != "=":
            raise ParseError("expected '=' after label %s" % name)
        j += 1
        while j < len(s) and s[j] in " \t":
            j += 1
        if j >= len(s) or s[j] != '"':
            raise ParseError("expected '\"' for label %s" % name)
        j += 1
        val = []
        while True:
            if j >= len(s):
                raise ParseError("unterminated value of label %s" % name)
            c = s[j]
            if c == "\\":
                if j + 1 >= len(s):
                    raise ParseError("dangling escape")
                e = s[j + 1]
                val.append({"n": "\n", "\\": "\\", '"': '"'}.get(e, "\\" + e))
                j += 2
                continue
            if c == '"':
                j += 1
                break
            val.append(c)
            j += 1
        if name in labels:
            raise ParseError("duplicate label %s" % name)
        labels[name] = "".join(val)
        i = j


def parse_exposition(text):
    """Returns a list of (name, labels dict, float value)."""
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            i = 0
            while i < len(line) and (line[i].isalnum() or line[i] in "_:"):
                i += 1
            name = line[:i]
            if not name:
                raise ParseError("no metric name")
            labels = {}
            if i < len(line) and line[i] == "{":
                labels, i = _parse_labels(line, i)
            rest = line[i:].split()
            if len(rest) not in (1, 2):
                raise ParseError("expected VALUE [TIMESTAMP]")
            value = float(rest[0])
        except (ParseError, ValueError) as e:
            sys.exit("line %d: %s: %r" % (n, e, line))
        out.append((name, labels, value))
    return out


def _selectors(args):
    sel = {}
    for a in args:
        if "=" not in a:
            sys.exit("selector %r is not LABEL=VALUE" % a)
        k, v = a.split("=", 1)
        sel[k] = v
    return sel


def _match(samples, name, sel):
    return [(n, l, v) for (n, l, v) in samples
            if n == name and all(l.get(k) == v for k, v in sel.items())]


def _load(path):
    with open(path, encoding="utf-8") as f:
        return parse_exposition(f.read())


def _num(v):
    return str(int(v)) if v == int(v) else repr(v)


class QueryError(Exception):
    pass


def _query(samples, words):
    """Answers one query (get/sum/label/with-label) on parsed samples, as a string."""
    op, args = words[0], words[1:]
    try:
        if op == "get" and len(args) >= 1:
            m = _match(samples, args[0], _selectors(args[1:]))
            if len(m) != 1:
                raise QueryError("%d series of %s match %s" % (len(m), args[0], args[1:]))
            return _num(m[0][2])
        if op == "sum" and len(args) >= 1:
            m = _match(samples, args[0], _selectors(args[1:]))
            if not m:
                raise QueryError("no series of %s match %s" % (args[0], args[1:]))
            return _num(sum(v for _, _, v in m))
        if op == "label" and len(args) >= 2:
            m = _match(samples, args[0], _selectors(args[2:]))
            if len(m) != 1:
                raise QueryError("%d series of %s match %s" % (len(m), args[0], args[2:]))
            if args[1] not in m[0][1]:
                raise QueryError("series has no label %s" % args[1])
            return m[0][1][args[1]]
        if op == "with-label" and len(args) == 1:
            sel = _selectors(args)
            m = ["%s%s" % (n, json.dumps(l, sort_keys=True, separators=(",", ":")))
                 for n, l, _ in samples if all(l.get(k) == v for k, v in sel.items())]
            return " ".join([str(len(m))] + m)
    except SystemExit as e:   # a bad selector
        raise QueryError(str(e))
    raise QueryError("bad query %r" % " ".join(words))


def cmd_q(a):
    samples = _load(a[0])
    failed = False
    for line in sys.stdin:
        words = line.split()
        if not words:
            continue
        try:
            print(_query(samples, words))
        except QueryError as e:
            print("ERROR %s" % e)
            failed = True
    sys.exit(2 if failed else 0)


def cmd_deltas(_a):
    cache = {}
    def load(path):
        if path not in cache:
            cache[path] = _load(path)
        return cache[path]
    bad = 0
    for line in sys.stdin:
        words = line.split()
        if not words:
            continue
        before, after, want, query = words[0], words[1], int(words[2]), words[3:]
        what = "%s: %s" % (before.rsplit("/", 1)[-1].split(".")[0], " ".join(query[1:]))
        try:
            vb = int(float(_query(load(before), query)))
            va = int(float(_query(load(after), query)))
        except QueryError as e:
            print("    MISMATCH %s: %s" % (what, e))
            bad += 1
            continue
        if va - vb != want:
            print("    MISMATCH %s: %d -> %d (+%d), expected +%d" % (what, vb, va, va - vb, want))
            bad += 1
        else:
            print("    ok %s: +%d" % (what, want))
    if bad:
        print("%d counter(s) off" % bad)
        sys.exit(1)


# ---------------------------------------------------------------------------------
# traffic

def payload_bytes(size):
    return bytes((i * 7 + 3) & 0xFF for i in range(size))


def cmd_udp_send(a):
    dst, port, count, size = a[0], int(a[1]), int(a[2]), int(a[3])
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    data = payload_bytes(size)
    for i in range(count):
        if s.sendto(data, (dst, port)) != size:
            sys.exit("short send")
        # paced: the TAP's queue towards overpassd must never overflow (an overflow is
        # the kernel's drop, not the data plane's, and would spoil the exact counts)
        if i % 10 == 9:
            time.sleep(0.002)
    print("sent %d" % count)


def cmd_udp_recv(a):
    port, count, size, idle = int(a[0]), int(a[1]), int(a[2]), float(a[3])
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    s.bind(("0.0.0.0", port))
    s.settimeout(idle)
    want = payload_bytes(size)
    print("ready", flush=True)
    got = other = 0
    while got < count:
        try:
            b = s.recv(65536)
        except socket.timeout:
            break
        if b == want:
            got += 1
        else:
            other += 1
    print("received %d other %d" % (got, other), flush=True)


def _csum(b):
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def build_udp_frame(src_mac, dst_mac, src_ip, dst_ip, sport, dport, payload):
    mac = lambda m: bytes(int(x, 16) for x in m.split(":"))
    sip, dip = socket.inet_aton(src_ip), socket.inet_aton(dst_ip)
    udp_len = 8 + len(payload)
    pseudo = sip + dip + struct.pack("!BBH", 0, 17, udp_len)
    udp = struct.pack("!HHHH", sport, dport, udp_len, 0) + payload
    uc = _csum(pseudo + udp) or 0xFFFF
    udp = struct.pack("!HHHH", sport, dport, udp_len, uc) + payload
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + udp_len, 0x1234, 0x4000, 64, 17, 0, sip, dip)
    ip = ip[:10] + struct.pack("!H", _csum(ip)) + ip[12:]
    return mac(dst_mac) + mac(src_mac) + b"\x08\x00" + ip + udp


def cmd_spoof_send(a):
    iface, smac, dmac, sip, dip, count, size = a[0], a[1], a[2], a[3], a[4], int(a[5]), int(a[6])
    frame = build_udp_frame(smac, dmac, sip, dip, 40000, 9999, payload_bytes(size))
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    s.bind((iface, 0))
    for i in range(count):
        if s.send(frame) != len(frame):
            sys.exit("short send")
        if i % 20 == 19:
            time.sleep(0.002)
    print("sent %d frames of %d bytes" % (count, len(frame)))


# ---------------------------------------------------------------------------------
# DPDK telemetry (v2 socket: SOCK_SEQPACKET, a JSON greeting, then one JSON answer per command)

def cmd_telemetry(a):
    path = a[0]
    s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    s.settimeout(5)
    s.connect(path)
    greeting = json.loads(s.recv(1024).decode())
    out_len = int(greeting.get("max_output_len", 16384))
    for command in a[1:]:
        s.send(command.encode())
        answer = json.loads(s.recv(out_len).decode())
        if command not in answer:
            sys.exit("telemetry answer without %s: %s" % (command, answer))
        print(json.dumps(answer[command], sort_keys=True))


def cmd_prom_vector(_a):
    try:
        doc = json.load(sys.stdin)
    except ValueError as e:
        sys.exit("not JSON: %s" % e)
    if doc.get("status") != "success":
        print("query failed: %s" % doc, file=sys.stderr)
        sys.exit(2)
    for r in doc.get("data", {}).get("result", []):
        print("%s %s %s" % (r["metric"].get("__name__", "-"), r["value"][1], json.dumps(r["metric"], sort_keys=True)))


COMMANDS = {
    "udp-send": (cmd_udp_send, 4), "udp-recv": (cmd_udp_recv, 4), "spoof-send": (cmd_spoof_send, 7),
    "q": (cmd_q, 1), "deltas": (cmd_deltas, 0),
    "telemetry": (cmd_telemetry, 2), "prom-vector": (cmd_prom_vector, 0),
}

if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in COMMANDS:
        sys.exit(__doc__)
    fn, nargs = COMMANDS[sys.argv[1]]
    if len(sys.argv) - 2 < nargs:
        sys.exit(__doc__)
    fn(sys.argv[2:])
