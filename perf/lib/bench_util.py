#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
# runs on: perf/cluster_bench.sh (the management namespace for `put-endpoints`, the
# root namespace for the rest)
#
# Helpers of the cluster benchmark:
#   put-endpoints ETCD_URL KEY_PREFIX NET_ID COUNT FIRST_IP HOST VTEP [BATCH]
#       writes COUNT endpoint records of fake host HOST (VTEP) under
#       KEY_PREFIX/overpass/v1/nets/NET_ID/eps/<ip>, addresses FIRST_IP, FIRST_IP+1, ...
#       through etcd's v3 JSON gateway, BATCH puts per txn (etcd's default limit: 128).
#       Persistent keys (no lease). Prints {"keys":..,"txns":..,"seconds":..,"revision":..}.
#   delete-prefix ETCD_URL KEY
#       deletes every key starting with KEY. Prints {"deleted": N}.
#   poll SOCK TARGET INTERVAL_MS TIMEOUT_S [READY_FILE]
#       creates READY_FILE (if given) once running, then polls GET /v1/stats on overpassd's API socket every INTERVAL_MS (a new connection
#       each time) until tables.endpoints >= TARGET. Prints one JSON line with CLOCK_REALTIME
#       ns of the first poll that found the socket file (sock_ns: overpassd binds it before
#       the store is contacted, after DPDK's EAL and ports are up; connections are accepted
#       only once the API runs), of the first answered request (api_ns) and of the answer
#       that first showed
#       tables.endpoints >= TARGET (conv_ns), the slowest answer while waiting, the number
#       of polls, and the last stats' tables and control.sync.
#   stats-get SOCK          prints the daemon's /v1/stats JSON (one line)
#   summary FILE...         each FILE holds one number per line: prints n, p50, p90, p99,
#                           max, min, mean as JSON (nearest-rank percentiles)
import base64
import json
import math
import os
import socket
import sys
import time
import urllib.request


def b64(s):
    return base64.b64encode(s.encode()).decode()


def etcd_post(url, path, body, timeout=10):
    req = urllib.request.Request(url + path, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.loads(r.read())


def ip_add(ip, n):
    a = socket.inet_aton(ip)
    v = int.from_bytes(a, "big") + n
    return socket.inet_ntoa(v.to_bytes(4, "big"))


def put_endpoints(url, prefix, net_id, count, first_ip, host, vtep, batch=128):
    t0 = time.monotonic()
    txns = 0
    rev = 0
    base = "%s/overpass/v1/nets/%s/eps/" % (prefix, net_id)
    for start in range(0, count, batch):
        ops = []
        for i in range(start, min(count, start + batch)):
            ip = ip_add(first_ip, i)
            mac = "02:42:" + ":".join("%02x" % b for b in socket.inet_aton(ip))
            val = json.dumps({"name": "fake%d" % i, "mac": mac, "host": host, "vtep": vtep, "kind": "tap"},
                             separators=(",", ":"))
            ops.append({"request_put": {"key": b64(base + ip), "value": b64(val)}})
        r = etcd_post(url, "/v3/kv/txn", {"success": ops})
        if not r.get("succeeded", False) and "header" not in r:
            sys.exit("txn failed: %s" % r)
        rev = int(r.get("header", {}).get("revision", 0))
        txns += 1
    print(json.dumps({"keys": count, "txns": txns, "seconds": round(time.monotonic() - t0, 3), "revision": rev}))


def delete_prefix(url, key):
    k = key.encode()
    end = k[:-1] + bytes([k[-1] + 1])
    r = etcd_post(url, "/v3/kv/deleterange",
                  {"key": base64.b64encode(k).decode(), "range_end": base64.b64encode(end).decode()})
    print(json.dumps({"deleted": int(r.get("deleted", 0))}))


def http_get_unix(path_sock, path, timeout=10.0):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(path_sock)
        s.sendall(("GET %s HTTP/1.1\r\nHost: overpass\r\nConnection: close\r\n\r\n" % path).encode())
        buf = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
            head, sep, body = buf.partition(b"\r\n\r\n")
            if sep:
                cl = None
                for line in head.split(b"\r\n")[1:]:
                    name, _, v = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        cl = int(v.strip())
                if cl is not None and len(body) >= cl:
                    break
    finally:
        s.close()
    head, _, body = buf.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, json.loads(body) if body else None


def find(v, k):
    if isinstance(v, dict):
        if k in v:
            return v[k]
        v = list(v.values())
    if isinstance(v, list):
        for x in v:
            r = find(x, k)
            if r is not None:
                return r
    return None


def poll(sock, target, interval_ms, timeout_s, ready=None):
    interval = interval_ms / 1000.0
    if ready:
        open(ready, "w").close()
    deadline = time.monotonic() + timeout_s
    api_ns = None
    conv_ns = None
    sock_ns = None
    polls = 0
    slowest_ms = 0.0
    last = None
    errors = 0
    nxt = time.monotonic()
    while time.monotonic() < deadline:
        polls += 1
        t_send = time.monotonic()
        if sock_ns is None and os.path.exists(sock):
            sock_ns = time.time_ns()
        try:
            status, doc = http_get_unix(sock, "/v1/stats", timeout=max(1.0, deadline - t_send))
        except (OSError, ValueError, IndexError):
            status, doc = 0, None
            errors += 1
        now_ns = time.time_ns()
        if status == 200 and doc is not None:
            if api_ns is None:
                api_ns = now_ns
            else:
                slowest_ms = max(slowest_ms, (time.monotonic() - t_send) * 1000)
            last = doc
            n = find(doc.get("tables", {}), "endpoints")
            if n is not None and n >= target:
                conv_ns = now_ns
                break
        nxt += interval
        d = nxt - time.monotonic()
        if d > 0:
            time.sleep(d)
        else:
            nxt = time.monotonic()
    out = {"sock_ns": sock_ns, "api_ns": api_ns, "conv_ns": conv_ns, "polls": polls, "failed_polls": errors,
           "slowest_answer_ms": round(slowest_ms, 1)}
    if last is not None:
        out["tables"] = last.get("tables")
        out["sync"] = find(last, "sync")
    print(json.dumps(out))
    return 0 if conv_ns is not None else 1


def summary(files):
    vals = []
    for f in files:
        if not os.path.exists(f):
            continue
        with open(f) as fh:
            vals += [float(x) for x in fh.read().split() if x.strip()]
    vals.sort()
    n = len(vals)
    if n == 0:
        print(json.dumps({"n": 0}))
        return

    def pct(p):  # nearest rank
        return vals[max(0, min(n - 1, math.ceil(p / 100.0 * n) - 1))]
    print(json.dumps({"n": n, "p50": pct(50), "p90": pct(90), "p99": pct(99), "max": vals[-1],
                      "min": vals[0], "mean": round(sum(vals) / n, 3)}))


def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "put-endpoints":
        put_endpoints(args[0], args[1], args[2], int(args[3]), args[4], args[5], args[6],
                      int(args[7]) if len(args) > 7 else 128)
    elif cmd == "delete-prefix":
        delete_prefix(args[0], args[1])
    elif cmd == "poll":
        return poll(args[0], int(args[1]), float(args[2]), float(args[3]), args[4] if len(args) > 4 else None)
    elif cmd == "stats-get":
        status, doc = http_get_unix(args[0], "/v1/stats")
        print(json.dumps(doc))
        return 0 if status == 200 else 1
    elif cmd == "summary":
        summary(args)
    else:
        sys.exit("unknown command " + cmd)
    return 0


if __name__ == "__main__":
    sys.exit(main())
