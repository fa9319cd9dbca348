#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
# runs on: perf/cluster_bench.sh, inside the management namespace (next to etcd)
#
# A third watcher on etcd, to split the attach latency: it follows PREFIX through the
# v3 JSON gateway's streaming /v3/watch and appends "put|delete <CLOCK_REALTIME ns> KEY"
# to LOG for every event whose key ends with SUFFIX, stamped when the event is read
# (userspace; a fraction of a millisecond after etcd sent it unless descheduled). It is
# what any watcher, host2's overpassd included, can see at the earliest.
# Runs until SIGTERM; creates READY_FILE once the watch is created.
#
# Usage: etcd_watch.py ETCD_URL PREFIX SUFFIX LOG READY_FILE
import base64
import http.client
import json
import signal
import sys
import time
import urllib.parse


def main():
    url, prefix, suffix, log_path, ready = sys.argv[1:6]
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    k = prefix.encode()
    end = k[:-1] + bytes([k[-1] + 1])
    u = urllib.parse.urlparse(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=None)
    body = json.dumps({"create_request": {"key": base64.b64encode(k).decode(),
                                          "range_end": base64.b64encode(end).decode()}})
    conn.request("POST", "/v3/watch", body=body, headers={"Content-Type": "application/json"})
    resp = conn.getresponse()
    log = open(log_path, "a", buffering=1)
    dec = json.JSONDecoder()
    buf = ""
    while True:
        chunk = resp.read1(65536)
        if not chunk:
            return 1
        now = time.time_ns()
        buf += chunk.decode(errors="replace")
        while True:
            buf = buf.lstrip()
            if not buf:
                break
            try:
                msg, n = dec.raw_decode(buf)
            except ValueError:
                break
            buf = buf[n:]
            res = msg.get("result", {})
            if res.get("created"):
                open(ready, "w").close()
            for ev in res.get("events", []) or []:
                key = base64.b64decode(ev["kv"]["key"]).decode(errors="replace")
                if key.endswith(suffix):
                    log.write("%s %d %s\n" % ("delete" if ev.get("type") == "DELETE" else "put", now, key))


if __name__ == "__main__":
    sys.exit(main())
