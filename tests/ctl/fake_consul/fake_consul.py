#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Protocol-faithful fake of the subset of Consul's HTTP API that overpass uses.

Independent of overpass' client code on purpose: every rule below comes from
Consul's documentation (developer.hashicorp.com/consul/api-docs/...) or, where
the docs are silent, from Consul's own source (github.com/hashicorp/consul).
The rule-to-source mapping is in the comments ("[docs kv]", "[src kvs.go]" ...).

Implemented: KV (/v1/kv), blocking queries, sessions (/v1/session), KV
transactions (/v1/txn), a single ACL token, /v1/status/leader|peers, a
controllable clock and fault injection under /_fake/.

Run:     python3 fake_consul.py --port 0 [--token T] [--port-file F] [--no-jitter]
                                [--tls-cert CERT.pem --tls-key KEY.pem]
Import:  fc = FakeConsul(token=None); port = fc.start(); ...; fc.stop()

With --tls-cert/--tls-key every connection (the /_fake/ admin endpoints included) is
HTTPS; a client that fails the handshake is dropped without an internal error.

Python 3 standard library only.
"""

import argparse
import base64
import binascii
import json
import os
import random
import re
import signal
import socket
import ssl
import struct
import sys
import threading
import time
import traceback
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlencode, urlsplit

# ---------------------------------------------------------------------------
# Constants (sources in comments)
# ---------------------------------------------------------------------------
NS = 1_000_000_000
# [docs kv] "values ... limited to 512KB"; [src agent/kvs_endpoint.go] KVMaxValueSize
KV_MAX_VALUE_SIZE = 512 * 1024
# [src agent/txn_endpoint.go] maxTxnLen = max(TxnMaxReqLen, KVMaxValueSize), both default 512 KiB
TXN_MAX_REQ_LEN = 512 * 1024
# [src agent/txn_endpoint.go] maxTxnOps = 64 (current docs say 128; notes say design for 64)
MAX_TXN_OPS = 64
# [docs features/blocking] default wait 5 min, max 10 min, jitter up to wait/16
DEFAULT_QUERY_TIME = 300.0
MAX_QUERY_TIME = 600.0
JITTER_FRACTION = 16
# [docs session] TTL between 10s and 86400s; [src structs] SessionTTLMultiplier = 2
SESSION_TTL_MIN_NS = 10 * NS
SESSION_TTL_MAX_NS = 86400 * NS
SESSION_TTL_MULTIPLIER = 2
# [docs session] LockDelay default 15s; [src state/session.go] clamped to MaxLockDelay = 60s
DEFAULT_LOCK_DELAY_NS = 15 * NS
MAX_LOCK_DELAY_NS = 60 * NS
# [src agent/session_endpoint.go] numeric/str lock delay < 1000 (ns) is taken as seconds
LOCK_DELAY_MIN_THRESHOLD = 1000
SERF_CHECK = "serfHealth"

# [src agent/kvs_endpoint.go validateKVKey] suspicious "file extensions" rejected at key end
_SUSPICIOUS_EXT = [
    ".js", ".css", ".html", ".htm", ".xml", ".json", ".txt", ".log",
    ".php", ".asp", ".jsp", ".cgi", ".pl", ".py", ".rb", ".sh",
    ".exe", ".dll", ".bat", ".cmd", ".com", ".scr", ".vbs",
    ".pdf", ".doc", ".docx", ".xls", ".xlsx", ".ppt", ".pptx",
    ".zip", ".rar", ".tar", ".gz", ".7z", ".bz2",
    ".jpg", ".jpeg", ".png", ".gif", ".svg", ".ico", ".bmp",
    ".mp3", ".mp4", ".avi", ".mov", ".wmv", ".flv", ".swf",
    ".woff", ".woff2", ".ttf", ".eot", ".otf",
]
_KEY_SAFE = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789,-_./")

_UUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


def validate_kv_key(key):
    """Return None if valid, else the error text of Consul's validateKVKey
    (agent/kvs_endpoint.go, newest stored commit). Callers answer 400."""
    if key == "":
        return "key cannot be empty"
    if key.startswith("/"):
        return "key must not begin with a '/'"
    for i, ch in enumerate(key):
        if ch not in _KEY_SAFE:
            return ("key contains invalid character '%s' at position %d. "
                    "Only alphanumeric characters and ,-_./ are allowed" % (ch, i))
    if "../" in key or "..\\" in key:
        return "key contains path traversal sequence"
    low = key.lower()
    for ext in _SUSPICIOUS_EXT:
        if low.endswith(ext):
            return ("key contains suspicious file extension '%s' that may be cached by proxies" % ext)
    return None


# ---------------------------------------------------------------------------
# Go-compatible helpers
# ---------------------------------------------------------------------------
_DUR_UNITS = {"ns": 1, "us": 1e3, "\u00b5s": 1e3, "\u03bcs": 1e3, "ms": 1e6,
              "s": 1e9, "m": 60e9, "h": 3600e9}
_DUR_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|\u00b5s|\u03bcs|ms|s|m|h)")


def parse_go_duration(text):
    """time.ParseDuration: '10s', '1m30s', '1.5h', '250ms', '0'. Returns int ns."""
    if not isinstance(text, str):
        raise ValueError("time: invalid duration %s" % json.dumps(str(text)))
    s = text
    sign = 1
    if s[:1] in ("+", "-"):
        sign = -1 if s[0] == "-" else 1
        s = s[1:]
    if s == "0":
        return 0
    if s == "":
        raise ValueError("time: invalid duration %s" % json.dumps(text))
    pos, total = 0, 0.0
    while pos < len(s):
        m = _DUR_PART.match(s, pos)
        if not m:
            if re.match(r"(\d+(?:\.\d*)?|\.\d+)$", s[pos:]):
                raise ValueError("time: missing unit in duration %s" % json.dumps(text))
            raise ValueError("time: invalid duration %s" % json.dumps(text))
        total += float(m.group(1)) * _DUR_UNITS[m.group(2)]
        pos = m.end()
    return sign * int(round(total))


def go_parse_uint(text):
    """strconv.ParseUint(s, 10, 64) with Go's error text."""
    if not re.fullmatch(r"[0-9]+", text or ""):
        raise ValueError('strconv.ParseUint: parsing %s: invalid syntax' % json.dumps(text))
    v = int(text)
    if v >= 1 << 64:
        raise ValueError('strconv.ParseUint: parsing %s: value out of range' % json.dumps(text))
    return v


def go_quote(s):
    return json.dumps(s)


class HTTPErr(Exception):
    def __init__(self, status, body, headers=None):
        Exception.__init__(self, body)
        self.status = status
        self.body = body
        self.headers = headers or []


# ---------------------------------------------------------------------------
# State store (mirrors agent/consul/state/kvs.go, session.go, txn.go)
# ---------------------------------------------------------------------------
class _Data:
    def __init__(self):
        self.kv = {}            # key -> entry dict
        self.tomb = {}          # key -> index (graveyard)
        self.kvs_index = 0      # "kvs" table index
        self.tomb_index = 0     # "tombstones" table index
        self.sessions = {}      # id -> session dict (internal)
        self.sessions_index = 0

    def copy_kv(self):
        d = _Data()
        d.kv = {k: dict(v) for k, v in self.kv.items()}
        d.tomb = dict(self.tomb)
        d.kvs_index = self.kvs_index
        d.tomb_index = self.tomb_index
        d.sessions = self.sessions          # not modified by KV ops
        d.sessions_index = self.sessions_index
        return d

    def adopt_kv(self, other):
        self.kv, self.tomb = other.kv, other.tomb
        self.kvs_index, self.tomb_index = other.kvs_index, other.tomb_index

    # kvsMaxIndex: max of "kvs" and "tombstones" table indexes
    def kv_table_index(self):
        return max(self.kvs_index, self.tomb_index)


def _entry_equal(a, b):
    # [src structs.DirEntry.Equal] LockIndex, Key, Flags, Value, Session
    return (a["LockIndex"] == b["LockIndex"] and a["Key"] == b["Key"] and a["Flags"] == b["Flags"]
            and (a["Value"] or b"") == (b["Value"] or b"") and a["Session"] == b["Session"])


def kvs_set(d, idx, ent, update_session):
    """kvsSetTxn. ent: Key, Value, Flags, Session, LockIndex. Returns stored/result entry."""
    ex = d.kv.get(ent["Key"])
    new = {"Key": ent["Key"], "Value": ent.get("Value"), "Flags": ent.get("Flags", 0),
           "LockIndex": ent.get("LockIndex", 0)}
    new["CreateIndex"] = ex["CreateIndex"] if ex else idx
    if update_session:
        new["Session"] = ent.get("Session", "")
    else:
        new["Session"] = ex["Session"] if ex else ""
    if ex is not None and _entry_equal(ex, new):
        # identical write: no state change, ModifyIndex unchanged [src kvs.go]
        new["ModifyIndex"] = ex["ModifyIndex"]
        return new
    new["ModifyIndex"] = idx
    d.kv[new["Key"]] = new
    d.kvs_index = idx
    return dict(new)


def kvs_delete(d, idx, key):
    if key not in d.kv:
        return
    d.tomb[key] = idx
    d.tomb_index = idx
    del d.kv[key]
    d.kvs_index = idx


def kvs_delete_cas(d, idx, cidx, key):
    e = d.kv.get(key)
    if e is None or e["ModifyIndex"] != cidx:
        return e is None    # [src kvsDeleteCASTxn] CAS delete of a missing key -> true
    kvs_delete(d, idx, key)
    return True


def kvs_delete_tree(d, idx, prefix):
    keys = [k for k in d.kv if k.startswith(prefix)]
    if not keys:
        return
    for k in keys:
        del d.kv[k]
    d.tomb[prefix] = idx        # one tombstone for the prefix [src kvsDeleteTreeTxn]
    d.tomb_index = idx
    d.kvs_index = idx


def kvs_set_cas(d, idx, ent):
    ex = d.kv.get(ent["Key"])
    cidx = ent.get("ModifyIndex", 0)
    if cidx == 0 and ex is not None:
        return False, None
    if cidx != 0 and ex is None:
        return False, None
    if ex is not None and cidx != 0 and cidx != ex["ModifyIndex"]:
        return False, None
    return True, kvs_set(d, idx, ent, False)


def session_lookup(d, sid):
    """memdb UUIDFieldIndex semantics: malformed id -> error."""
    if len(sid) != 36:
        raise ValueError("failed session lookup: index error: UUID must be 36 characters")
    if not _UUID_RE.match(sid):
        raise ValueError("failed session lookup: index error: Invalid UUID: %s" % sid)
    return d.sessions.get(sid)


def kvs_lock(d, idx, ent):
    """kvsLockTxn -> (ok, entry); raises ValueError for errors."""
    sid = ent.get("Session", "")
    if sid == "":
        raise ValueError("missing session")
    if session_lookup(d, sid) is None:
        raise ValueError("invalid session %s" % go_quote(sid))
    ex = d.kv.get(ent["Key"])
    e = dict(ent)
    if ex is not None:
        if ex["Session"] == sid:
            e["LockIndex"] = ex["LockIndex"]
        elif ex["Session"] != "":
            return False, None
        else:
            e["LockIndex"] = ex["LockIndex"] + 1
    else:
        e["LockIndex"] = 1
    return True, kvs_set(d, idx, e, True)


def kvs_unlock(d, idx, ent):
    sid = ent.get("Session", "")
    if sid == "":
        raise ValueError("missing session")
    ex = d.kv.get(ent["Key"])
    if ex is None or ex["Session"] != sid:
        return False, None
    e = dict(ent)
    e["Session"] = ""
    e["LockIndex"] = ex["LockIndex"]
    return True, kvs_set(d, idx, e, True)


def kvs_list(d, prefix):
    """kvsListTxn -> (index, entries sorted by key)."""
    entries = sorted((e for k, e in d.kv.items() if k.startswith(prefix)), key=lambda e: e["Key"])
    idx = d.kv_table_index()
    lindex = max([e["ModifyIndex"] for e in entries] or [0])
    if prefix != "":
        gindex = max([i for k, i in d.tomb.items() if k.startswith(prefix)] or [0])
        lindex = max(lindex, gindex)
    else:
        lindex = idx
    if lindex != 0:
        idx = lindex
    return idx, entries


def render_entry(e, with_value=True):
    out = {"LockIndex": e["LockIndex"], "Key": e["Key"], "Flags": e["Flags"],
           "Value": (base64.b64encode(e["Value"]).decode("ascii")
                     if with_value and e.get("Value") else None)}
    if e.get("Session"):
        out["Session"] = e["Session"]
    out["CreateIndex"] = e.get("CreateIndex", 0)
    out["ModifyIndex"] = e.get("ModifyIndex", 0)
    return out


def render_session(s):
    out = {"ID": s["ID"], "Name": s["Name"], "Node": s["Node"], "LockDelay": s["LockDelay"],
           "Behavior": s["Behavior"], "TTL": s["TTL"],
           "NodeChecks": list(s["NodeChecks"]) or None,
           "ServiceChecks": s["ServiceChecks"] or None,
           "CreateIndex": s["CreateIndex"], "ModifyIndex": s["ModifyIndex"]}
    if s["NodeChecks"] and s["NodeChecks"] != [SERF_CHECK]:
        out["Checks"] = list(s["NodeChecks"])
    return out


_TXN_WRITE_VERBS = {"set", "delete", "delete-cas", "delete-tree", "cas", "lock", "unlock"}
_TXN_VERBS = _TXN_WRITE_VERBS | {"get", "get-or-empty", "get-tree", "check-index",
                                 "check-session", "check-not-exists"}


# ---------------------------------------------------------------------------
# The fake server
# ---------------------------------------------------------------------------
class FakeConsul:
    def __init__(self, host="127.0.0.1", port=0, token=None, jitter=True,
                 max_txn_ops=MAX_TXN_OPS, node_name="fake-consul-node", datacenter="dc1",
                 txn_key_validation=True, verbose=False, tls_cert=None, tls_key=None):
        self.host = host
        self.tls_context = None
        if tls_cert:
            self.tls_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self.tls_context.load_cert_chain(tls_cert, tls_key)
        self.req_port = port
        self.token = token
        self.jitter = jitter
        self.max_txn_ops = max_txn_ops
        self.node_name = node_name
        self.datacenter = datacenter
        self.txn_key_validation = txn_key_validation
        self.verbose = verbose
        self._lock = threading.RLock()
        self._cond = threading.Condition(self._lock)
        self._stopping = False
        self.waiting = 0                # blocking queries parked in blocking() now (not reset)
        self._httpd = None
        self._threads = []
        self._conns = set()
        self.internal_errors = []       # tracebacks of handler crashes (self-test asserts empty)
        self._reset_locked()

    # ----- lifecycle -----------------------------------------------------
    def start(self):
        fake = self

        class _Server(ThreadingHTTPServer):
            daemon_threads = True
            allow_reuse_address = True
            request_queue_size = 128

            def get_request(self):
                sock, addr = ThreadingHTTPServer.get_request(self)
                if fake.tls_context is not None:
                    # Handshake in the handler thread (setup), never in the accept loop.
                    sock = fake.tls_context.wrap_socket(sock, server_side=True,
                                                        do_handshake_on_connect=False)
                return sock, addr

        self._httpd = _Server((self.host, self.req_port), _Handler)
        self._httpd.fake = fake
        self.port = self._httpd.server_address[1]
        t = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                             name="fake-consul-http", daemon=True)
        t.start()
        r = threading.Thread(target=self._reaper, name="fake-consul-reaper", daemon=True)
        r.start()
        self._threads = [t, r]
        return self.port

    @property
    def url(self):
        scheme = "https" if self.tls_context is not None else "http"
        return "%s://%s:%d" % (scheme, self.host, self.port)

    def stop(self):
        with self._cond:
            if self._stopping:
                return
            self._stopping = True
            self._cond.notify_all()
        if self._httpd is not None:
            self._httpd.shutdown()
            with self._lock:
                conns = list(self._conns)
            for c in conns:
                try:
                    c.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            self._httpd.server_close()
        for t in self._threads:
            t.join(timeout=5)

    def _reaper(self):
        while True:
            with self._cond:
                if self._stopping:
                    return
                self._expire_sessions_locked()
                self._cond.wait(0.05)

    # ----- clock ---------------------------------------------------------
    def now(self):
        """Fake clock: real monotonic time + offset (seconds)."""
        return time.monotonic() + self._clock_offset

    def advance_clock(self, seconds):
        with self._cond:
            self._clock_offset += float(seconds)
            self._expire_sessions_locked()
            self._cond.notify_all()
            return self.now()

    # ----- admin ---------------------------------------------------------
    def _reset_locked(self):
        self.data = _Data()
        self.raft_index = 1             # "global index counter starting at 1" [notes 5.6]
        self.lock_delay = {}            # key -> fake-clock expiry
        self._clock_offset = 0.0
        self.requests = []              # request log (method, path, query, status, token source)
        self._clear_faults_locked()

    def reset(self):
        with self._cond:
            self._reset_locked()
            self._cond.notify_all()

    def _clear_faults_locked(self):
        self.faults = {
            "index_backwards": [],      # one entry per shot: True or explicit index
            "index_zero": 0,
            "spurious_wakeup": 0,
            "known_leader_false": 0,
            "renew_ttl": None,          # Go duration string returned by renew (and adopted)
            "request": [],              # dicts: kind status|delay|reset, count, path, ...
        }

    def clear_faults(self):
        with self._lock:
            self._clear_faults_locked()

    def set_fault(self, spec):
        """spec: dict as accepted by POST /_fake/fault. Raises ValueError on bad specs."""
        if not isinstance(spec, dict) or not spec:
            raise ValueError("fault spec must be a non-empty JSON object")
        path = spec.get("path", "/v1/")
        if not isinstance(path, str):
            raise ValueError("path must be a string")
        count = spec.get("count", 1)
        if not isinstance(count, int) or isinstance(count, bool) or count < 1:
            raise ValueError("count must be a positive integer")
        known = {"index_backwards", "index_zero", "spurious_wakeup", "status", "preset", "body",
                 "count", "path", "reset_mid_body", "delay_ms", "known_leader", "renew_ttl"}
        unknown = set(spec) - known
        if unknown:
            raise ValueError("unknown fault keys: %s" % sorted(unknown))
        with self._lock:
            f = self.faults
            if "index_backwards" in spec:
                v = spec["index_backwards"]
                if v is True or (isinstance(v, int) and not isinstance(v, bool) and v >= 0):
                    f["index_backwards"].extend([v] * count)
                else:
                    raise ValueError("index_backwards must be true or a non-negative index")
            if "index_zero" in spec:
                if spec["index_zero"] is not True:
                    raise ValueError("index_zero must be true")
                f["index_zero"] += count
            if "spurious_wakeup" in spec:
                n = spec["spurious_wakeup"]
                if not isinstance(n, int) or isinstance(n, bool) or n < 1:
                    raise ValueError("spurious_wakeup must be a positive integer")
                f["spurious_wakeup"] += n
            if "known_leader" in spec:
                if spec["known_leader"] is not False:
                    raise ValueError("known_leader fault only supports false")
                f["known_leader_false"] += count
            if "renew_ttl" in spec:
                v = spec["renew_ttl"]
                if v is None:
                    f["renew_ttl"] = None
                else:
                    parse_go_duration(v)
                    f["renew_ttl"] = v
            if "status" in spec or "preset" in spec:
                preset = spec.get("preset")
                if preset is not None:
                    presets = {"no_leader": (500, "No cluster leader"),
                               "rate_limited": (429, "rate limit exceeded, try again later"),
                               "acl_not_found": (403, "ACL not found")}
                    if preset not in presets:
                        raise ValueError("unknown preset %r (known: %s)" % (preset, sorted(presets)))
                    status, body = presets[preset]
                else:
                    status, body = spec["status"], spec.get("body", "fake_consul injected error")
                if not isinstance(status, int) or not 100 <= status <= 599:
                    raise ValueError("status must be an HTTP status code")
                f["request"].append({"kind": "status", "status": status, "body": str(body),
                                     "count": count, "path": path})
            if "reset_mid_body" in spec:
                n = spec["reset_mid_body"]
                if not isinstance(n, int) or isinstance(n, bool) or n < 1:
                    raise ValueError("reset_mid_body must be a positive integer")
                f["request"].append({"kind": "reset", "count": n, "path": path})
            if "delay_ms" in spec:
                dm = spec["delay_ms"]
                if not isinstance(dm, (int, float)) or isinstance(dm, bool) or dm < 0:
                    raise ValueError("delay_ms must be a non-negative number")
                f["request"].append({"kind": "delay", "delay_ms": dm, "count": count,
                                     "path": path})

    def _take_counter(self, name):
        with self._lock:
            if self.faults[name] > 0:
                self.faults[name] -= 1
                return True
            return False

    def _take_request_faults(self, path):
        """Consume matching request-level faults: returns dict(status, delay_ms, reset)."""
        out = {}
        with self._lock:
            for f in self.faults["request"]:
                if f["count"] <= 0 or not path.startswith(f["path"]) or f["kind"] in out:
                    continue
                f["count"] -= 1
                out[f["kind"]] = f
            self.faults["request"] = [f for f in self.faults["request"] if f["count"] > 0]
        return out

    def reap_tombstones(self, upto=None):
        """Graveyard reaping (ReapTombstones): may make a prefix's index go backwards."""
        with self._cond:
            self.raft_index += 1
            idx = self.raft_index
            d = self.data
            if upto is None:
                upto = idx
            d.tomb = {k: i for k, i in d.tomb.items() if i > upto}
            d.tomb_index = idx
            self._cond.notify_all()

    def invalidate_session(self, sid):
        with self._cond:
            if sid not in self.data.sessions:
                return False
            self._invalidate_session_locked(sid)
            return True

    def state(self):
        with self._lock:
            d = self.data
            now = self.now()
            kv = []
            for k in sorted(d.kv):
                e = render_entry(d.kv[k])
                v = d.kv[k].get("Value")
                e["ValueText"] = v.decode("utf-8", "replace") if v else None
                kv.append(e)
            sessions = []
            for s in d.sessions.values():
                r = render_session(s)
                r["ExpiresIn"] = (s["deadline"] - now) if s["deadline"] is not None else None
                sessions.append(r)
            return {
                "raft_index": self.raft_index,
                "kvs_index": d.kvs_index, "tombstones_index": d.tomb_index,
                "sessions_index": d.sessions_index,
                "kv": kv, "tombstones": dict(d.tomb), "sessions": sessions,
                "lock_delay_remaining": {k: t - now for k, t in self.lock_delay.items() if t > now},
                "clock": {"now": now, "offset": self._clock_offset},
                "faults": json.loads(json.dumps(self.faults)),
                "token_required": self.token is not None,
                "internal_errors": len(self.internal_errors),
                "requests_logged": len(self.requests),
                "blocking_waiters": self.waiting,
            }

    # ----- sessions --------------------------------------------------------
    def _next_index_locked(self):
        self.raft_index += 1
        return self.raft_index

    def _expire_sessions_locked(self):
        now = self.now()
        expired = [sid for sid, s in self.data.sessions.items()
                   if s["deadline"] is not None and s["deadline"] <= now]
        for sid in expired:
            self._invalidate_session_locked(sid)

    def _invalidate_session_locked(self, sid, idx=None):
        """deleteSessionTxn: delete session, release or delete held keys, set lock-delay."""
        d = self.data
        s = d.sessions.pop(sid, None)
        if s is None:
            return
        if idx is None:
            idx = self._next_index_locked()
        d.sessions_index = idx
        delay = min(s["LockDelay"], MAX_LOCK_DELAY_NS) / NS
        now = self.now()
        held = [k for k, e in d.kv.items() if e["Session"] == sid]
        for k in held:
            if s["Behavior"] == "delete":
                kvs_delete(d, idx, k)
            else:
                e = dict(d.kv[k])
                e["Session"] = ""
                kvs_set(d, idx, e, True)
            if delay > 0:
                self.lock_delay[k] = now + delay
        self._cond.notify_all()

    def _lock_delayed_locked(self, key):
        t = self.lock_delay.get(key)
        return t is not None and t > self.now()

    # ----- blocking --------------------------------------------------------
    def blocking(self, min_index, wait_s, compute):
        """Run compute() (under the lock) until its index > min_index or the wait expires.
        [docs features/blocking] + [src agent/blockingquery/blockingquery.go]."""
        with self._cond:
            index, payload = compute()
            if min_index == 0:
                return index, payload
            if self.faults["index_backwards"]:
                v = self.faults["index_backwards"].pop(0)
                low = v if v is not True else min_index // 2
                return low, payload
            if self.faults["spurious_wakeup"] > 0:
                self.faults["spurious_wakeup"] -= 1
                return index, payload
            if wait_s is None or wait_s <= 0:
                wait_s = DEFAULT_QUERY_TIME
            wait_s = min(wait_s, MAX_QUERY_TIME)
            if self.jitter:
                wait_s += random.uniform(0, wait_s / JITTER_FRACTION)
            deadline = self.now() + wait_s
            self.waiting += 1
            try:
                while index <= min_index and not self._stopping:
                    remaining = deadline - self.now()
                    if remaining <= 0:
                        break
                    self._cond.wait(min(remaining, 0.5))
                    index, payload = compute()
            finally:
                self.waiting -= 1
            return index, payload


# ---------------------------------------------------------------------------
# HTTP handler
# ---------------------------------------------------------------------------
class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "fake-consul/1"

    def version_string(self):
        return self.server_version

    # ----- plumbing --------------------------------------------------------
    def setup(self):
        self._tls_failed = False
        if isinstance(self.request, ssl.SSLSocket):
            try:
                self.request.settimeout(10)
                self.request.do_handshake()
                self.request.settimeout(None)
            except (ssl.SSLError, OSError) as e:   # a plain-HTTP client, a distrustful one
                self._tls_failed = True
                if self.server.fake.verbose:
                    sys.stderr.write("fake_consul: TLS handshake failed: %s\n" % e)
        BaseHTTPRequestHandler.setup(self)
        with self.server.fake._lock:
            self.server.fake._conns.add(self.connection)

    def handle(self):
        if not self._tls_failed:
            BaseHTTPRequestHandler.handle(self)

    def finish(self):
        try:
            BaseHTTPRequestHandler.finish(self)
        except OSError:
            pass
        with self.server.fake._lock:
            self.server.fake._conns.discard(self.connection)

    def log_message(self, fmt, *args):
        if self.server.fake.verbose:
            sys.stderr.write("fake_consul: %s\n" % (fmt % args))

    def do_GET(self):
        self._dispatch("GET")

    def do_PUT(self):
        self._dispatch("PUT")

    def do_DELETE(self):
        self._dispatch("DELETE")

    def do_POST(self):
        self._dispatch("POST")

    def _read_body(self):
        te = (self.headers.get("Transfer-Encoding") or "").lower()
        if "chunked" in te:
            chunks = []
            total = 0
            while True:
                line = self.rfile.readline(65537)
                if not line:
                    raise HTTPErr(400, "malformed chunked body")
                try:
                    n = int(line.split(b";")[0].strip(), 16)
                except ValueError:
                    raise HTTPErr(400, "malformed chunk size")
                if n == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass
                    break
                total += n
                if total > 64 * 1024 * 1024:
                    raise HTTPErr(413, "request body too large")
                chunks.append(self.rfile.read(n))
                self.rfile.readline(65537)
            return b"".join(chunks)
        cl = self.headers.get("Content-Length")
        if cl is None:
            return b""
        try:
            n = int(cl)
            if n < 0:
                raise ValueError
        except ValueError:
            self.close_connection = True
            raise HTTPErr(400, "invalid Content-Length")
        if n > 64 * 1024 * 1024:
            self.close_connection = True
            raise HTTPErr(413, "request body too large")
        return self.rfile.read(n) if n else b""

    def _send(self, status, body=b"", ctype="text/plain; charset=utf-8", headers=(),
              index=None, leader_meta=False):
        fake = self.server.fake
        if isinstance(body, str):
            body = body.encode("utf-8")
        hdrs = list(headers)
        if self._is_api:
            hdrs.append(("X-Consul-Default-ACL-Policy", "deny" if fake.token is not None else "allow"))
        if index is not None or leader_meta:
            if index is not None:
                if fake._take_counter("index_zero"):
                    index = 0
                hdrs.append(("X-Consul-Index", str(index)))
            kl = "false" if fake._take_counter("known_leader_false") else "true"
            hdrs.append(("X-Consul-KnownLeader", kl))
            hdrs.append(("X-Consul-LastContact", "0"))
            if index is not None:
                hdrs.append(("X-Consul-Effective-Consistency", self._consistency))
        self._status = status
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in hdrs:
            self.send_header(k, v)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self._reset_pending:
            # Fault: headers + half the body, then an abortive close (RST).
            self.wfile.write(body[: len(body) // 2])
            try:
                self.wfile.flush()
            except OSError:
                pass
            self._abort_connection()
            return
        if self.command != "HEAD":
            self.wfile.write(body)

    def _abort_connection(self):
        self.close_connection = True
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        try:
            self.rfile.close()
        except OSError:
            pass
        try:
            self.connection.close()
        except OSError:
            pass

    def _json(self, status, obj, index=None, leader_meta=False, headers=()):
        if "pretty" in self._params:
            body = json.dumps(obj, indent=4) + "\n"
        else:
            body = json.dumps(obj, separators=(",", ":"))
        self._send(status, body, "application/json", headers=headers, index=index,
                   leader_meta=leader_meta)

    # ----- dispatch --------------------------------------------------------
    def _dispatch(self, method):
        fake = self.server.fake
        self._status = None
        self._reset_pending = False
        self._is_api = False
        self._params = {}
        self._consistency = "leader"
        token_src = None
        try:
            raw = self.path
            split = urlsplit(raw)
            rawpath = split.path
            self._params = parse_qs(split.query, keep_blank_values=True)
            path = unquote(rawpath)
            self._is_api = path.startswith("/v1/")
            body = self._read_body()
            if path.startswith("/_fake/"):
                self._admin(method, path, body)
                return
            if not self._is_api:
                raise HTTPErr(404, "fake_consul: no handler for %s" % path)
            # [docs api-structure] URL-encoded linefeed is rejected
            if "%0a" in raw.lower():
                raise HTTPErr(400, "Invalid URL: encoded linefeed")
            rf = fake._take_request_faults(path)
            if "delay" in rf:
                time.sleep(rf["delay"]["delay_ms"] / 1000.0)
            if "reset" in rf:
                self._reset_pending = True
            if "status" in rf:
                raise HTTPErr(rf["status"]["status"], rf["status"]["body"])
            self._check_dc()
            auth, token_src = self._auth()
            with fake._cond:
                fake._expire_sessions_locked()
            self._route(method, path, body, auth)
        except HTTPErr as e:
            try:
                self._send(e.status, e.body, headers=e.headers)
            except OSError:
                pass
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception:
            tb = traceback.format_exc()
            fake.internal_errors.append(tb)
            sys.stderr.write("fake_consul: internal error:\n%s" % tb)
            try:
                if self._status is None:
                    self._send(500, "fake_consul internal error (see stderr)")
            except OSError:
                pass
            self.close_connection = True
        finally:
            with fake._lock:
                if len(fake.requests) < 10000:
                    fake.requests.append({"method": method, "path": self.path,
                                          "status": self._status, "token_source": token_src})

    def _check_dc(self):
        dc = self._params.get("dc", [""])[0]
        if dc and dc != self.server.fake.datacenter:
            raise HTTPErr(500, "No path to datacenter")
        if "stale" in self._params:
            self._consistency = "stale"
        elif "consistent" in self._params:
            self._consistency = "consistent"

    def _auth(self):
        """[docs api-structure] token via X-Consul-Token, Authorization: Bearer, or ?token=
        (query first, then X-Consul-Token, then Bearer, like Consul's parseToken).
        Returns ('ok'|'anon', source)."""
        fake = self.server.fake
        tok, src = "", None
        q = self._params.get("token", [""])[0]
        h = self.headers.get("X-Consul-Token") or ""
        a = self.headers.get("Authorization") or ""
        if q:
            tok, src = q, "query"
        elif h:
            tok, src = h, "header"
        elif a:
            parts = a.split(None, 1)
            if len(parts) == 2 and parts[0].lower() == "bearer":
                tok, src = parts[1].strip(), "bearer"
        if fake.token is None:
            return "ok", src
        if tok == fake.token:
            return "ok", src
        if tok:
            raise HTTPErr(403, "ACL not found")    # [src acl/errors.go] errNotFound -> 403
        return "anon", src

    def _query_opts(self):
        """[src agent/http.go parseWait] -> (min_index, wait_seconds|None)."""
        wait = None
        w = self._params.get("wait", [""])[0]
        if w:
            try:
                wait = parse_go_duration(w) / NS
            except ValueError:
                raise HTTPErr(400, "Invalid wait time")
        idx = 0
        i = self._params.get("index", [""])[0]
        if i:
            try:
                idx = go_parse_uint(i)
            except ValueError:
                raise HTTPErr(400, "Invalid index")
        return idx, wait

    def _route(self, method, path, body, auth):
        if path.startswith("/v1/kv/") or path == "/v1/kv":
            key = path[len("/v1/kv/"):] if path.startswith("/v1/kv/") else ""
            return self._kv(method, path, key, body, auth)
        if path == "/v1/txn":
            if method != "PUT":
                raise HTTPErr(405, "method %s not allowed" % method, [("Allow", "PUT")])
            return self._txn(body, auth)
        if path.startswith("/v1/session/"):
            return self._session(method, path[len("/v1/session/"):], body, auth)
        if path == "/v1/status/leader":
            return self._json(200, "127.0.0.1:8300")
        if path == "/v1/status/peers":
            return self._json(200, ["127.0.0.1:8300"])
        raise HTTPErr(404, "fake_consul: endpoint not implemented: %s" % path)

    # ----- KV --------------------------------------------------------------
    def _kv(self, method, path, key, body, auth):
        fake = self.server.fake
        p = self._params
        # [src agent/kvs_endpoint.go KVSEndpoint] traversal checks on the (decoded) path
        if "../" in path or "..\\" in path:
            raise HTTPErr(400, "URL path contains invalid traversal sequence")
        for pat in ("%2e%2e%2f", "%2e%2e/", "..%2f", "%2e%2e%5c", "%252e%252e%252f"):
            if pat in path:
                raise HTTPErr(400, "URL path contains encoded traversal sequence")
        if key != "":
            err = validate_kv_key(key)
            if err:
                raise HTTPErr(400, err)
        if method == "GET":
            if "keys" in p:
                return self._kv_keys(key, auth)
            return self._kv_get(key, auth)
        if method == "PUT":
            return self._kv_put(key, body, auth)
        if method == "DELETE":
            return self._kv_delete(key, auth)
        raise HTTPErr(405, "method %s not allowed" % method, [("Allow", "GET,PUT,DELETE")])

    def _kv_get(self, key, auth):
        fake = self.server.fake
        recurse = "recurse" in self._params
        if not recurse and key == "":
            raise HTTPErr(400, "Missing key name")
        min_index, wait = self._query_opts()
        if auth == "anon" and not recurse:
            raise HTTPErr(403, "Permission denied")   # KVS.Get -> acl.ErrPermissionDenied
        d_ref = fake

        if recurse:
            def compute():
                idx, ents = kvs_list(d_ref.data, key)
                if auth == "anon":
                    ents = []                      # filtered by ACLs (anonymous: flag masked)
                return max(idx, 1), [dict(e) for e in ents]
        else:
            def compute():
                d = d_ref.data
                e = d.kv.get(key)
                if e is None:
                    return max(d.kv_table_index(), 1), []
                return e["ModifyIndex"], [dict(e)]

        index, ents = fake.blocking(min_index, wait, compute)
        if not ents:
            return self._send(404, b"", index=index)
        if "raw" in self._params and not recurse:
            return self._send(200, ents[0].get("Value") or b"", "text/plain", index=index,
                              headers=[("X-Content-Type-Options", "nosniff"),
                                       ("Content-Security-Policy", "sandbox")])
        return self._json(200, [render_entry(e) for e in ents], index=index)

    def _kv_keys(self, prefix, auth):
        fake = self.server.fake
        sep = ""
        if "seperator" in self._params:       # historic misspelling still accepted
            sep = self._params["seperator"][0]
        if "separator" in self._params:
            sep = self._params["separator"][0]
        min_index, wait = self._query_opts()

        def compute():
            idx, ents = kvs_list(fake.data, prefix)
            if auth == "anon":
                ents = []
            keys, seen = [], set()
            for e in ents:
                if not sep:
                    keys.append(e["Key"])
                    continue
                after = e["Key"][len(prefix):]
                i = after.find(sep)
                if i > -1:
                    k = e["Key"][: len(prefix) + i + len(sep)]
                    if k not in seen:
                        keys.append(k)
                        seen.add(k)
                else:
                    keys.append(e["Key"])
            return max(idx, 1), keys

        index, keys = fake.blocking(min_index, wait, compute)
        if not keys and prefix != "":
            return self._send(404, b"", index=index)
        return self._json(200, keys, index=index)

    def _conflicting(self, *flags):
        found = False
        for f in flags:
            if f in self._params:
                if found:
                    enc = urlencode(sorted((k, v) for k, vs in self._params.items() for v in vs))
                    raise HTTPErr(400, "Conflicting flags: %s\n" % enc)
                found = True

    def _kv_put(self, key, body, auth):
        fake = self.server.fake
        p = self._params
        if key == "":
            raise HTTPErr(400, "Missing key name")
        self._conflicting("cas", "acquire", "release")
        ent = {"Key": key, "Flags": 0, "Value": None}
        op = "set"
        try:
            if "flags" in p:
                ent["Flags"] = go_parse_uint(p["flags"][0])
            if "cas" in p:
                ent["ModifyIndex"] = go_parse_uint(p["cas"][0])
                op = "cas"
        except ValueError as e:
            raise HTTPErr(500, str(e))      # Consul returns the raw strconv error -> 500
        if "acquire" in p:
            ent["Session"] = p["acquire"][0]
            op = "lock"
        if "release" in p:
            ent["Session"] = p["release"][0]
            op = "unlock"
        if len(body) > KV_MAX_VALUE_SIZE:
            raise HTTPErr(413, "Request body(%d bytes) too large, max size: %d bytes. See %s." % (
                len(body), KV_MAX_VALUE_SIZE,
                "https://developer.hashicorp.com/docs/agent/config/config-files#kv_max_value_size"))
        ent["Value"] = body if body else None
        if auth == "anon":
            raise HTTPErr(403, "Permission denied")
        with fake._cond:
            if op == "lock" and fake._lock_delayed_locked(key):
                # [src kvsPreApply] lock-delay: reply false, nothing goes to raft
                result = False
            else:
                idx = fake._next_index_locked()
                d = fake.data
                try:
                    if op == "set":
                        kvs_set(d, idx, ent, False)
                        result = True
                    elif op == "cas":
                        result, _ = kvs_set_cas(d, idx, ent)
                    elif op == "lock":
                        result, _ = kvs_lock(d, idx, ent)
                    else:
                        result, _ = kvs_unlock(d, idx, ent)
                except ValueError as e:
                    raise HTTPErr(500, str(e))
                fake._cond.notify_all()
        return self._json(200, bool(result))

    def _kv_delete(self, key, auth):
        fake = self.server.fake
        p = self._params
        self._conflicting("recurse", "cas")
        recurse = "recurse" in p
        if not recurse and key == "":
            raise HTTPErr(400, "Missing key name")
        cas = None
        if "cas" in p:
            try:
                cas = go_parse_uint(p["cas"][0])
            except ValueError as e:
                raise HTTPErr(500, str(e))
        if auth == "anon":
            raise HTTPErr(403, "Permission denied")
        with fake._cond:
            idx = fake._next_index_locked()
            d = fake.data
            result = True
            if recurse:
                kvs_delete_tree(d, idx, key)
            elif cas is not None:
                result = kvs_delete_cas(d, idx, cas, key)
            else:
                kvs_delete(d, idx, key)
            fake._cond.notify_all()
        return self._json(200, bool(result))

    # ----- txn -------------------------------------------------------------
    def _txn(self, body, auth):
        fake = self.server.fake
        if len(body) > TXN_MAX_REQ_LEN:
            raise HTTPErr(413, "Request body too large, max size: %d bytes" % TXN_MAX_REQ_LEN)
        try:
            ops = json.loads(body.decode("utf-8")) if body.strip() else None
        except (ValueError, UnicodeDecodeError) as e:
            raise HTTPErr(400, "Failed to parse body: %s" % e)
        if ops is None:
            ops = []
        if not isinstance(ops, list):
            raise HTTPErr(400, "Failed to parse body: json: cannot unmarshal %s into Go value of "
                               "type api.TxnOps" % type(ops).__name__)
        if len(ops) > fake.max_txn_ops:
            raise HTTPErr(413, "Transaction contains too many operations (%d > %d)" % (
                len(ops), fake.max_txn_ops))
        parsed = []
        for i, op in enumerate(ops):
            if not isinstance(op, dict):
                raise HTTPErr(400, "Failed to parse body: op %d is not an object" % i)
            lk = {k.lower(): v for k, v in op.items()}
            kv = lk.get("kv")
            if kv is None:
                if any(k in lk for k in ("node", "service", "check", "session")):
                    raise HTTPErr(400, "fake_consul: only KV txn operations are implemented "
                                       "(op %d)" % i)
                raise HTTPErr(400, "Failed to parse body: op %d has no KV member" % i)
            if not isinstance(kv, dict):
                raise HTTPErr(400, "Failed to parse body: op %d KV is not an object" % i)
            f = {k.lower(): v for k, v in kv.items()}
            verb = f.get("verb", "")
            key = f.get("key", "")
            sess = f.get("session", "")
            if not isinstance(verb, str) or not isinstance(key, str) or not isinstance(sess, str):
                raise HTTPErr(400, "Failed to parse body: op %d: Verb/Key/Session must be strings" % i)
            val = f.get("value")
            if val is not None:
                if not isinstance(val, str):
                    raise HTTPErr(400, "Failed to parse body: unexpected value type: %s" %
                                  type(val).__name__)
                try:
                    val = base64.b64decode(val.encode("ascii"), validate=True)
                except (binascii.Error, UnicodeEncodeError) as e:
                    raise HTTPErr(400, "Failed to parse body: failed to decode value: %s" % e)
                if len(val) > KV_MAX_VALUE_SIZE:
                    raise HTTPErr(413, "Value for key %s is too large (%d > %d bytes)" % (
                        go_quote(key), len(val), KV_MAX_VALUE_SIZE))
            nums = {}
            for name in ("flags", "index"):
                v = f.get(name, 0)
                if v is None:
                    v = 0
                if not isinstance(v, int) or isinstance(v, bool) or v < 0 or v >= 1 << 64:
                    raise HTTPErr(400, "Failed to parse body: op %d: %s must be a uint64" % (i, name))
                nums[name] = v
            # Deliberate strictness (see README): validate txn keys like /v1/kv keys.
            if fake.txn_key_validation and key != "":
                err = validate_kv_key(key)
                if err:
                    raise HTTPErr(400, "txn op %d: %s" % (i, err))
            parsed.append({"Verb": verb, "Key": key, "Value": val or None, "Flags": nums["flags"],
                           "ModifyIndex": nums["index"], "Session": sess})
        writes = sum(1 for o in parsed if o["Verb"] in _TXN_WRITE_VERBS)
        with fake._cond:
            # preCheck [src agent/consul/txn_endpoint.go, kvs_endpoint.go kvsPreApply]
            errors = []
            for i, o in enumerate(parsed):
                if o["Key"] == "" and o["Verb"] != "delete-tree":
                    errors.append({"OpIndex": i, "What": "Must provide key"})
                    continue
                if auth == "anon" and o["Verb"] not in ("get", "get-or-empty", "get-tree"):
                    errors.append({"OpIndex": i, "What": "Permission denied"})
                    continue
                if o["Verb"] == "lock" and fake._lock_delayed_locked(o["Key"]):
                    errors.append({"OpIndex": i, "What": "failed to lock key %s due to lock delay"
                                   % go_quote(o["Key"])})
            if errors:
                return self._json(409, {"Results": None, "Errors": errors},
                                  leader_meta=(writes == 0))
            if writes:
                idx = fake._next_index_locked()
            else:
                idx = 0
            scratch = fake.data.copy_kv()
            results, errors = self._txn_dispatch(scratch, idx, parsed)
            if errors:
                return self._json(409, {"Results": None, "Errors": errors},
                                  leader_meta=(writes == 0))
            if writes:
                fake.data.adopt_kv(scratch)
                fake._cond.notify_all()
        if auth == "anon":
            results = []      # read-only results filtered by ACLs
        return self._json(200, {"Results": results, "Errors": None}, leader_meta=(writes == 0))

    @staticmethod
    def _txn_dispatch(d, idx, ops):
        """[src agent/consul/state/txn.go txnKVS/txnDispatch]: every op runs, all errors
        are collected, any error rolls everything back."""
        results, errors = [], []
        for i, o in enumerate(ops):
            verb, key = o["Verb"], o["Key"]
            entry, err, many = None, None, None
            ent = {"Key": key, "Value": o["Value"], "Flags": o["Flags"], "Session": o["Session"],
                   "ModifyIndex": o["ModifyIndex"], "LockIndex": 0}
            try:
                if verb == "set":
                    entry = kvs_set(d, idx, ent, False)
                elif verb == "delete":
                    kvs_delete(d, idx, key)
                elif verb == "delete-cas":
                    if not kvs_delete_cas(d, idx, o["ModifyIndex"], key):
                        err = "failed to delete key %s, index is stale" % go_quote(key)
                elif verb == "delete-tree":
                    kvs_delete_tree(d, idx, key)
                elif verb == "cas":
                    ok, entry = kvs_set_cas(d, idx, ent)
                    if not ok:
                        err = "failed to set key %s, index is stale" % go_quote(key)
                elif verb == "lock":
                    ok, entry = kvs_lock(d, idx, ent)
                    if not ok:
                        err = "failed to lock key %s, lock is already held" % go_quote(key)
                elif verb == "unlock":
                    ok, entry = kvs_unlock(d, idx, ent)
                    if not ok:
                        err = ("failed to unlock key %s, lock isn't held, or is held by another "
                               "session" % go_quote(key))
                elif verb == "get":
                    e = d.kv.get(key)
                    if e is None:
                        err = "key %s doesn't exist" % go_quote(key)
                    else:
                        entry = dict(e)
                elif verb == "get-or-empty":
                    e = d.kv.get(key)
                    entry = dict(e) if e else dict(ent, Value=None, ModifyIndex=0, CreateIndex=0)
                elif verb == "get-tree":
                    _, ents = kvs_list(d, key)
                    many = [{"KV": render_entry(e)} for e in ents]
                elif verb == "check-session":
                    e = d.kv.get(key)
                    if e is None:
                        err = "failed to check session, key %s doesn't exist" % go_quote(key)
                    elif e["Session"] != o["Session"]:
                        err = "failed session check for key %s, current session %s != %s" % (
                            go_quote(key), go_quote(e["Session"]), go_quote(o["Session"]))
                    else:
                        entry = dict(e)
                elif verb == "check-index":
                    e = d.kv.get(key)
                    if e is None:
                        err = "failed to check index, key %s doesn't exist" % go_quote(key)
                    elif e["ModifyIndex"] != o["ModifyIndex"]:
                        err = "failed index check for key %s, current modify index %d != %d" % (
                            go_quote(key), e["ModifyIndex"], o["ModifyIndex"])
                    else:
                        entry = dict(e)
                elif verb == "check-not-exists":
                    if key in d.kv:
                        err = "key %s exists" % go_quote(key)
                else:
                    err = "unknown KV verb %s" % go_quote(verb)
            except ValueError as e:
                err = str(e)
            if err is not None:
                errors.append({"OpIndex": i, "What": err})
                continue
            if many is not None:
                results.extend(many)
            elif entry is not None:
                keep_value = verb in ("get", "get-or-empty")
                results.append({"KV": render_entry(entry, with_value=keep_value)})
        return results, errors

    # ----- sessions ----------------------------------------------------------
    def _session(self, method, sub, body, auth):
        fake = self.server.fake
        parts = sub.split("/", 1)
        op = parts[0]
        arg = parts[1] if len(parts) > 1 else ""
        write_ops = {"create", "destroy", "renew"}
        read_ops = {"info", "list", "node"}
        if op in write_ops and method != "PUT":
            raise HTTPErr(405, "method %s not allowed" % method, [("Allow", "PUT")])
        if op in read_ops and method != "GET":
            raise HTTPErr(405, "method %s not allowed" % method, [("Allow", "GET")])
        if op == "create":
            return self._session_create(body, auth)
        if op in ("destroy", "renew", "info") and arg == "":
            raise HTTPErr(400, "Missing session")
        if op == "node" and arg == "":
            raise HTTPErr(400, "Missing node name")
        if op == "destroy":
            if auth == "anon":
                raise HTTPErr(403, "Permission denied")
            with fake._cond:
                try:
                    s = session_lookup(fake.data, arg)
                except ValueError as e:
                    raise HTTPErr(500, str(e))
                idx = fake._next_index_locked()     # destroy goes through raft either way
                if s is not None:
                    fake._invalidate_session_locked(arg, idx)
            return self._json(200, True)
        if op == "renew":
            if auth == "anon":
                raise HTTPErr(403, "Permission denied")
            with fake._cond:
                fake._expire_sessions_locked()
                try:
                    s = session_lookup(fake.data, arg)
                except ValueError as e:
                    raise HTTPErr(500, str(e))
                if s is None:
                    raise HTTPErr(404, "Session id '%s' not found" % arg)
                if fake.faults["renew_ttl"]:
                    # [docs session] "Consul may return a TTL value higher than the one
                    # specified" -- adopt it so the timer matches what the client is told.
                    s["TTL"] = fake.faults["renew_ttl"]
                ttl_ns = parse_go_duration(s["TTL"]) if s["TTL"] else 0
                if ttl_ns > 0:
                    s["deadline"] = fake.now() + ttl_ns * SESSION_TTL_MULTIPLIER / NS
                out = [render_session(s)]
            return self._json(200, out)
        if op in read_ops:
            min_index, wait = self._query_opts()
            if op == "info":
                try:
                    with fake._lock:
                        session_lookup(fake.data, arg)
                except ValueError as e:
                    raise HTTPErr(500, str(e))

            def compute():
                d = fake.data
                if op == "info":
                    ss = [d.sessions[arg]] if arg in d.sessions else []
                elif op == "node":
                    ss = [s for s in d.sessions.values() if s["Node"] == arg]
                else:
                    ss = list(d.sessions.values())
                if auth == "anon":
                    ss = []
                ss = sorted(ss, key=lambda s: s["ID"])
                return max(d.sessions_index, 1), [render_session(s) for s in ss]

            index, out = fake.blocking(min_index, wait, compute)
            return self._json(200, out, index=index)
        raise HTTPErr(404, "fake_consul: endpoint not implemented: /v1/session/%s" % sub)

    def _session_create(self, body, auth):
        fake = self.server.fake
        name, node, behavior, ttl = "", fake.node_name, "", ""
        lock_delay = DEFAULT_LOCK_DELAY_NS
        checks = [SERF_CHECK]
        node_checks = []
        service_checks = []
        if body:
            try:
                raw = json.loads(body.decode("utf-8"))
            except (ValueError, UnicodeDecodeError) as e:
                raise HTTPErr(400, "Request decode failed: %s" % e)
            if raw is not None and not isinstance(raw, dict):
                raise HTTPErr(400, "Request decode failed: body must be a JSON object")
            raw = raw or {}
            f = {k.lower(): v for k, v in raw.items()}

            def want_str(k):
                v = f.get(k, "")
                if v is None:
                    return ""
                if not isinstance(v, str):
                    raise HTTPErr(400, "Request decode failed: %s must be a string" % k)
                return v

            def want_list(k):
                v = f.get(k)
                if v is None:
                    return []
                if not isinstance(v, list):
                    raise HTTPErr(400, "Request decode failed: %s must be an array" % k)
                return v

            name = want_str("name")
            node = want_str("node") or fake.node_name
            behavior = want_str("behavior")
            ttl = want_str("ttl")
            if "lockdelay" in f:
                v = f["lockdelay"]
                try:
                    if isinstance(v, str):
                        lock_delay = parse_go_duration(v)
                    elif isinstance(v, (int, float)) and not isinstance(v, bool):
                        lock_delay = int(v)
                    elif v is None:
                        lock_delay = 0
                    else:
                        raise ValueError("LockDelay must be a duration")
                except ValueError as e:
                    raise HTTPErr(400, "Request decode failed: %s" % e)
                if lock_delay < LOCK_DELAY_MIN_THRESHOLD:
                    lock_delay *= NS
            if "checks" in f:               # FixupChecks: explicit list replaces serfHealth
                checks = want_list("checks")
            node_checks = want_list("nodechecks")
            service_checks = want_list("servicechecks")
        if auth == "anon":
            raise HTTPErr(403, "Permission denied")
        # [src agent/consul/session_endpoint.go Apply] behaviour + TTL validated before raft;
        # RPC errors surface as HTTP 500 with the error text (see README: not 400).
        if behavior == "":
            behavior = "release"
        if behavior not in ("release", "delete"):
            raise HTTPErr(500, "Invalid Behavior setting '%s'" % behavior)
        ttl_ns = 0
        if ttl != "":
            try:
                ttl_ns = parse_go_duration(ttl)
            except ValueError as e:
                raise HTTPErr(500, "Session TTL '%s' invalid: %s" % (ttl, e))
            if ttl_ns != 0 and (ttl_ns < SESSION_TTL_MIN_NS or ttl_ns > SESSION_TTL_MAX_NS):
                raise HTTPErr(500, "Invalid Session TTL '%d', must be between [10s=24h0m0s]" % ttl_ns)
        if node != fake.node_name:
            raise HTTPErr(500, "Missing node registration")
        all_checks = []
        for c in list(checks) + list(node_checks):
            if not isinstance(c, str):
                raise HTTPErr(400, "Request decode failed: check ids must be strings")
            if c != SERF_CHECK:
                raise HTTPErr(500, "Missing check '%s' registration" % c)
            if c not in all_checks:
                all_checks.append(c)
        for sc in service_checks:
            cid = sc.get("ID", "") if isinstance(sc, dict) else sc
            raise HTTPErr(500, "Missing check '%s' registration" % cid)
        with fake._cond:
            idx = fake._next_index_locked()
            sid = str(uuid.uuid4())
            s = {"ID": sid, "Name": name, "Node": node, "LockDelay": lock_delay,
                 "Behavior": behavior, "TTL": ttl, "NodeChecks": all_checks, "ServiceChecks": [],
                 "CreateIndex": idx, "ModifyIndex": idx, "deadline": None}
            if ttl_ns > 0:
                s["deadline"] = fake.now() + ttl_ns * SESSION_TTL_MULTIPLIER / NS
            fake.data.sessions[sid] = s
            fake.data.sessions_index = idx
            fake._cond.notify_all()
        return self._json(200, {"ID": sid})

    # ----- admin -------------------------------------------------------------
    def _admin(self, method, path, body):
        fake = self.server.fake
        try:
            spec = json.loads(body.decode("utf-8")) if body.strip() else {}
        except (ValueError, UnicodeDecodeError) as e:
            raise HTTPErr(400, "bad JSON body: %s" % e)
        if method == "GET" and path == "/_fake/state":
            return self._json(200, fake.state())
        if method == "GET" and path == "/_fake/requests":
            with fake._lock:
                return self._json(200, list(fake.requests))
        if method == "GET" and path == "/_fake/clock":
            with fake._lock:
                return self._json(200, {"now": fake.now(), "offset": fake._clock_offset})
        if method != "POST":
            raise HTTPErr(405, "admin endpoints: POST (GET for state/requests/clock)")
        if not isinstance(spec, dict):
            raise HTTPErr(400, "body must be a JSON object")
        if path == "/_fake/clock/advance":
            s = spec.get("seconds")
            if not isinstance(s, (int, float)) or isinstance(s, bool) or s < 0:
                raise HTTPErr(400, "seconds must be a non-negative number")
            return self._json(200, {"now": fake.advance_clock(s)})
        if path == "/_fake/fault":
            try:
                fake.set_fault(spec)
            except (ValueError, KeyError) as e:
                raise HTTPErr(400, "bad fault spec: %s" % e)
            return self._json(200, True)
        if path == "/_fake/fault/clear":
            fake.clear_faults()
            return self._json(200, True)
        if path == "/_fake/reset":
            fake.reset()
            return self._json(200, True)
        if path == "/_fake/reap_tombstones":
            upto = spec.get("index")
            if upto is not None and (not isinstance(upto, int) or isinstance(upto, bool)):
                raise HTTPErr(400, "index must be an integer")
            fake.reap_tombstones(upto)
            return self._json(200, True)
        if path == "/_fake/session/invalidate":
            sid = spec.get("id")
            if not isinstance(sid, str):
                raise HTTPErr(400, "id must be a string")
            return self._json(200, fake.invalidate_session(sid))
        raise HTTPErr(404, "unknown admin endpoint %s" % path)


# ---------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------
def main(argv=None):
    ap = argparse.ArgumentParser(description="Protocol-faithful fake Consul HTTP API (test tool)")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0, help="0 = ephemeral")
    ap.add_argument("--token", default=None, help="require this ACL token")
    ap.add_argument("--port-file", default=None, help="write the bound port here")
    ap.add_argument("--no-jitter", action="store_true", help="no wait/16 jitter on blocking queries")
    ap.add_argument("--max-txn-ops", type=int, default=MAX_TXN_OPS)
    ap.add_argument("--node-name", default="fake-consul-node")
    ap.add_argument("--no-txn-key-validation", action="store_true")
    ap.add_argument("--verbose", action="store_true")
    ap.add_argument("--tls-cert", default=None, help="serve HTTPS with this PEM certificate (chain)")
    ap.add_argument("--tls-key", default=None, help="the PEM private key of --tls-cert")
    a = ap.parse_args(argv)
    if bool(a.tls_cert) != bool(a.tls_key):
        ap.error("--tls-cert and --tls-key go together")
    fc = FakeConsul(host=a.host, port=a.port, token=a.token, jitter=not a.no_jitter,
                    max_txn_ops=a.max_txn_ops, node_name=a.node_name,
                    txn_key_validation=not a.no_txn_key_validation, verbose=a.verbose,
                    tls_cert=a.tls_cert, tls_key=a.tls_key)
    port = fc.start()
    if a.port_file:
        tmp = a.port_file + ".tmp"
        with open(tmp, "w") as f:
            f.write("%d\n" % port)
        os.replace(tmp, a.port_file)
    else:
        sys.stdout.write("LISTENING %d\n" % port)
        sys.stdout.flush()
    done = threading.Event()

    def on_signal(signum, frame):
        done.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    while not done.wait(0.5):
        pass
    fc.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
