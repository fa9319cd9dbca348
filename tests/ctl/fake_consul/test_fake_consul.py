#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Self-test of the fake Consul server (stdlib unittest + urllib only).

Runs the fake in-process on 127.0.0.1:0. Each assertion names the Consul
rule it checks; see fake_consul.py for the sources of the rules.
"""

import base64
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import fake_consul  # noqa: E402
from fake_consul import FakeConsul  # noqa: E402


class _Resp:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body

    @property
    def json(self):
        return json.loads(self.body.decode("utf-8"))

    @property
    def text(self):
        return self.body.decode("utf-8", "replace")

    def index(self):
        return int(self.headers["X-Consul-Index"])


class Base(unittest.TestCase):
    token = None
    jitter = False

    def setUp(self):
        self.fc = FakeConsul(token=self.token, jitter=self.jitter)
        self.fc.start()
        self.base = self.fc.url

    def tearDown(self):
        errs = list(self.fc.internal_errors)
        self.fc.stop()
        self.assertEqual(errs, [], "fake raised internal errors")

    def req(self, method, path, body=None, headers=None, timeout=30):
        if isinstance(body, str):
            body = body.encode("utf-8")
        elif body is not None and not isinstance(body, bytes):
            body = json.dumps(body).encode("utf-8")
        if body is None and method in ("PUT", "POST"):
            body = b""
        r = urllib.request.Request(self.base + path, data=body, method=method,
                                   headers=headers or {})
        try:
            with urllib.request.urlopen(r, timeout=timeout) as resp:
                return _Resp(resp.status, resp.headers, resp.read())
        except urllib.error.HTTPError as e:
            return _Resp(e.code, e.headers, e.read())

    # helpers
    def put(self, key, value=b"", query=""):
        return self.req("PUT", "/v1/kv/" + key + query, value)

    def get(self, key, query="", **kw):
        return self.req("GET", "/v1/kv/" + key + query, **kw)

    def session(self, **body):
        r = self.req("PUT", "/v1/session/create", body)
        self.assertEqual(r.status, 200, r.text)
        return r.json["ID"]

    def admin(self, path, body=None):
        r = self.req("POST", "/_fake/" + path, body if body is not None else {})
        self.assertEqual(r.status, 200, r.text)
        return r.json

    def wait_parked(self, n=1, timeout=10.0):
        """Waits until n blocking queries are parked in the fake's wait (bounded)."""
        deadline = time.monotonic() + timeout
        while True:
            with self.fc._lock:
                if self.fc.waiting >= n:
                    return
            if time.monotonic() >= deadline:
                self.fail("%d blocking queries parked after %.0f s, wanted %d"
                          % (self.fc.waiting, timeout, n))
            time.sleep(0.01)

    def in_thread(self, fn):
        out = {}

        def run():
            t0 = time.monotonic()
            try:
                out["r"] = fn()
            except Exception as e:   # surfaced by the caller
                out["e"] = e
            out["elapsed"] = time.monotonic() - t0

        t = threading.Thread(target=run, daemon=True)
        t.start()
        return t, out


# ---------------------------------------------------------------------------
class KVTest(Base):
    def test_put_raw_body_and_get_json(self):
        r = self.put("a/b", b"hello")
        self.assertEqual((r.status, r.json), (200, True))
        r = self.get("a/b")
        self.assertEqual(r.status, 200)
        self.assertEqual(r.headers["Content-Type"], "application/json")
        [e] = r.json
        self.assertEqual(set(e), {"LockIndex", "Key", "Flags", "Value", "CreateIndex", "ModifyIndex"})
        self.assertEqual(e["Key"], "a/b")
        self.assertEqual(base64.b64decode(e["Value"]), b"hello")  # value is base64 in JSON
        self.assertEqual(e["Flags"], 0)
        self.assertEqual(e["LockIndex"], 0)
        self.assertEqual(e["CreateIndex"], e["ModifyIndex"])
        # the PUT body is raw: a base64-looking body is stored verbatim
        self.put("a/c", b"aGVsbG8=")
        self.assertEqual(self.get("a/c", "?raw").body, b"aGVsbG8=")

    def test_binary_and_empty_values_and_flags(self):
        blob = bytes(range(256))
        self.put("bin", blob, "?flags=18446744073709551615")
        [e] = self.get("bin").json
        self.assertEqual(base64.b64decode(e["Value"]), blob)
        self.assertEqual(e["Flags"], 2 ** 64 - 1)
        self.put("empty", b"")
        [e] = self.get("empty").json
        self.assertIsNone(e["Value"])
        r = self.get("empty", "?raw")
        self.assertEqual((r.status, r.body), (200, b""))

    def test_raw(self):
        self.put("k", b'{"x":1}')
        r = self.get("k", "?raw")
        self.assertEqual(r.body, b'{"x":1}')
        self.assertEqual(r.headers["Content-Type"], "text/plain")
        self.assertIn("X-Consul-Index", r.headers)
        self.assertEqual(self.get("nope", "?raw").status, 404)

    def test_missing_key_404_with_index(self):
        self.put("x", b"1")
        r = self.get("missing")
        self.assertEqual(r.status, 404)
        self.assertEqual(r.body, b"")
        self.assertGreaterEqual(r.index(), 1)

    def test_recurse_sorted_and_index(self):
        for k in ("p/c", "p/a", "p/b/x", "q/z", "p"):
            self.put(k, k.encode())
        r = self.get("p/", "?recurse")
        keys = [e["Key"] for e in r.json]
        self.assertEqual(keys, ["p/a", "p/b/x", "p/c"])
        self.assertEqual(r.index(), max(e["ModifyIndex"] for e in r.json))
        # prefix without slash also matches "p" itself
        self.assertEqual([e["Key"] for e in self.get("p", "?recurse").json],
                         ["p", "p/a", "p/b/x", "p/c"])
        # root listing
        self.assertEqual(len(self.req("GET", "/v1/kv/?recurse").json), 5)
        self.assertEqual(self.get("none/", "?recurse").status, 404)

    def test_keys_and_separator(self):
        for k in ("n/1/a", "n/1/b", "n/2/a", "n/3"):
            self.put(k, b"v")
        self.assertEqual(self.get("n/", "?keys").json, ["n/1/a", "n/1/b", "n/2/a", "n/3"])
        self.assertEqual(self.get("n/", "?keys&separator=/").json, ["n/1/", "n/2/", "n/3"])
        self.assertEqual(self.get("n/", "?keys&seperator=/").json, ["n/1/", "n/2/", "n/3"])
        r = self.get("zzz/", "?keys")
        self.assertEqual(r.status, 404)
        self.fc.reset()
        r = self.req("GET", "/v1/kv/?keys")
        self.assertEqual((r.status, r.json), (200, []))    # root: [] not 404

    def test_cas(self):
        self.assertTrue(self.put("c", b"1", "?cas=0").json)       # create-only succeeds
        self.assertFalse(self.put("c", b"2", "?cas=0").json)      # ... once
        mi = self.get("c").json[0]["ModifyIndex"]
        self.assertFalse(self.put("c", b"3", "?cas=%d" % (mi + 100)).json)
        self.assertTrue(self.put("c", b"3", "?cas=%d" % mi).json)
        self.assertFalse(self.put("c", b"4", "?cas=%d" % mi).json)  # stale now
        self.assertFalse(self.put("nokey", b"4", "?cas=5").json)    # non-zero cas on missing key
        self.assertEqual(self.get("c", "?raw").body, b"3")

    def test_identical_write_keeps_modify_index(self):
        self.put("same", b"v")
        mi = self.get("same").json[0]["ModifyIndex"]
        self.put("other", b"x")
        self.assertTrue(self.put("same", b"v").json)
        self.assertEqual(self.get("same").json[0]["ModifyIndex"], mi)
        self.put("same", b"w")
        self.assertGreater(self.get("same").json[0]["ModifyIndex"], mi)

    def test_delete(self):
        self.put("d/1", b"1")
        self.put("d/2", b"2")
        self.put("e", b"3")
        r = self.req("DELETE", "/v1/kv/d/1")
        self.assertEqual((r.status, r.json), (200, True))
        self.assertEqual(self.get("d/1").status, 404)
        self.assertTrue(self.req("DELETE", "/v1/kv/d/1").json)     # deleting a missing key: true
        mi = self.get("d/2").json[0]["ModifyIndex"]
        self.assertFalse(self.req("DELETE", "/v1/kv/d/2?cas=%d" % (mi + 1)).json)
        self.assertFalse(self.req("DELETE", "/v1/kv/d/2?cas=0").json)  # cas=0 never deletes
        self.assertTrue(self.req("DELETE", "/v1/kv/d/2?cas=%d" % mi).json)
        self.assertTrue(self.req("DELETE", "/v1/kv/gone?cas=7").json)  # CAS delete of missing: true
        self.put("t/a", b"1")
        self.put("t/b/c", b"1")
        self.assertTrue(self.req("DELETE", "/v1/kv/t/?recurse").json)
        self.assertEqual(self.get("t/", "?recurse").status, 404)
        self.assertEqual(self.get("e", "?raw").body, b"3")

    def test_conflicting_flags(self):
        r = self.put("k", b"v", "?cas=0&acquire=x")
        self.assertEqual(r.status, 400)
        self.assertIn("Conflicting flags", r.text)
        r = self.put("k", b"v", "?acquire=x&release=x")
        self.assertEqual(r.status, 400)
        r = self.req("DELETE", "/v1/kv/k?recurse&cas=1")
        self.assertEqual(r.status, 400)
        self.assertIn("Conflicting flags", r.text)

    def test_value_size_limit(self):
        self.assertTrue(self.put("big", b"x" * (512 * 1024)).json)
        r = self.put("big2", b"x" * (512 * 1024 + 1))
        self.assertEqual(r.status, 413)
        self.assertIn("too large", r.text)
        self.assertEqual(self.get("big2").status, 404)

    def test_key_validation(self):
        cases = {
            "/v1/kv//lead": "must not begin with a '/'",
            "/v1/kv/a%3Ab": "invalid character ':'",
            "/v1/kv/a b": None,                                    # urllib won't send a space
            "/v1/kv/host.example.com": "suspicious file extension '.com'",
            "/v1/kv/x/conf.JSON": "suspicious file extension '.json'",
            "/v1/kv/a/../b": "traversal",
            "/v1/kv/a%40b": "invalid character '@'",
        }
        for path, msg in cases.items():
            if msg is None:
                continue
            for method in ("GET", "PUT", "DELETE"):
                r = self.req(method, path, b"v" if method == "PUT" else None)
                self.assertEqual(r.status, 400, (method, path, r.text))
                self.assertIn(msg, r.text, (method, path))
        for ok in ("overpass/v1/nets/n1/eps/10.0.2.5", "a,b-c_d.e/f/", "subnets/10.0.2.0_24",
                   "macs/02-42-0a-00-02-05"):
            self.assertEqual(self.put(ok, b"v").status, 200, ok)
        self.assertEqual(self.req("GET", "/v1/kv/").status, 400)      # Missing key name
        self.assertEqual(self.req("PUT", "/v1/kv/", b"x").status, 400)
        self.assertEqual(self.req("DELETE", "/v1/kv/").status, 400)
        r = self.req("GET", "/v1/kv/a%0ab")
        self.assertEqual(r.status, 400)                             # encoded linefeed

    def test_method_not_allowed(self):
        r = self.req("POST", "/v1/kv/k", b"v")
        self.assertEqual(r.status, 405)
        self.assertIn("GET", r.headers["Allow"])

    def test_bad_numbers(self):
        self.assertEqual(self.put("k", b"v", "?flags=abc").status, 500)   # Consul: raw strconv err
        self.assertEqual(self.put("k", b"v", "?cas=-1").status, 500)
        self.assertEqual(self.get("k", "?index=abc").status, 400)          # "Invalid index"
        self.assertEqual(self.get("k", "?index=1&wait=5x").status, 400)    # "Invalid wait time"


# ---------------------------------------------------------------------------
class IndexTest(Base):
    def test_headers_on_reads(self):
        self.put("h", b"1")
        for r in (self.get("h"), self.get("", "?recurse"), self.get("nope"),
                  self.req("GET", "/v1/session/list")):
            self.assertIn("X-Consul-Index", r.headers)
            self.assertEqual(r.headers["X-Consul-KnownLeader"], "true")
            self.assertEqual(r.headers["X-Consul-LastContact"], "0")
            self.assertGreaterEqual(r.index(), 1)
        self.assertEqual(self.get("h", "?stale").headers["X-Consul-Effective-Consistency"], "stale")
        # writes carry no index
        self.assertNotIn("X-Consul-Index", self.put("h", b"2").headers)

    def test_index_values(self):
        self.assertEqual(self.get("x").index(), 1)           # empty store: 1, never 0
        self.put("a/1", b"1")
        self.put("a/2", b"2")
        self.put("b/1", b"3")
        e1 = self.get("a/1").json[0]
        self.assertEqual(self.get("a/1").index(), e1["ModifyIndex"])   # single: own ModifyIndex
        e3 = self.get("b/1").json[0]
        self.assertEqual(self.get("a/", "?recurse").index(),
                         self.get("a/2").json[0]["ModifyIndex"])       # prefix: max of entries
        self.assertEqual(self.get("missing").index(), e3["ModifyIndex"])  # missing: table index
        # global index: strictly increasing over writes
        self.assertLess(e1["ModifyIndex"], e3["ModifyIndex"])

    def test_tombstones_and_reap_backwards(self):
        self.put("p/a", b"1")
        self.put("p/b", b"2")
        ia = self.get("p/a").json[0]["ModifyIndex"]
        self.req("DELETE", "/v1/kv/p/b")
        after_delete = self.get("p/", "?recurse").index()
        self.assertGreater(after_delete, ia)          # tombstone keeps the index from sliding back
        self.put("zz", b"unrelated")
        self.assertEqual(self.get("p/", "?recurse").index(), after_delete)
        self.admin("reap_tombstones")
        self.assertEqual(self.get("p/", "?recurse").index(), ia)   # reaped: index went backwards
        # empty prefix after everything deleted -> table index, 404
        self.req("DELETE", "/v1/kv/p/?recurse")
        r = self.get("p/", "?recurse")
        self.assertEqual(r.status, 404)
        self.assertGreater(r.index(), ia)


# ---------------------------------------------------------------------------
class BlockingTest(Base):
    def test_wakes_on_write(self):
        self.put("w/a", b"1")
        idx = self.get("w/", "?recurse").index()
        t, out = self.in_thread(lambda: self.get("w/", "?recurse&index=%d&wait=30s" % idx))
        time.sleep(0.3)
        self.assertTrue(t.is_alive(), "blocking query returned early")
        self.put("w/b", b"2")
        t.join(5)
        r = out["r"]
        self.assertEqual(r.status, 200)
        self.assertGreater(r.index(), idx)
        self.assertEqual([e["Key"] for e in r.json], ["w/a", "w/b"])
        self.assertLess(out["elapsed"], 5)

    def test_single_key_wakes_on_delete_and_404(self):
        self.put("sk", b"1")
        idx = self.get("sk").index()
        t, out = self.in_thread(lambda: self.get("sk", "?index=%d&wait=30s" % idx))
        time.sleep(0.2)
        self.req("DELETE", "/v1/kv/sk")
        t.join(5)
        self.assertEqual(out["r"].status, 404)
        self.assertGreater(out["r"].index(), idx)

    def test_unrelated_write_does_not_return(self):
        self.put("u/a", b"1")
        idx = self.get("u/", "?recurse").index()
        t, out = self.in_thread(lambda: self.get("u/", "?recurse&index=%d&wait=800ms" % idx))
        time.sleep(0.2)
        self.put("other/x", b"1")
        self.put("u", b"not under u/")
        t.join(5)
        r = out["r"]
        self.assertGreaterEqual(out["elapsed"], 0.75)
        self.assertEqual(r.index(), idx)             # timeout: same index, same data
        self.assertEqual(r.status, 200)

    def test_timeout_returns_current_index(self):
        idx = self.get("none").index()
        t0 = time.monotonic()
        r = self.get("none", "?index=%d&wait=300ms" % idx)
        el = time.monotonic() - t0
        self.assertEqual(r.status, 404)
        self.assertEqual(r.index(), idx)
        self.assertGreaterEqual(el, 0.28)
        self.assertLess(el, 2.0)

    def test_index_below_current_returns_immediately(self):
        self.put("i", b"1")
        t0 = time.monotonic()
        r = self.get("i", "?index=1&wait=30s")
        self.assertLess(time.monotonic() - t0, 1.0)
        self.assertGreater(r.index(), 1)

    def test_default_and_max_wait_follow_fake_clock(self):
        idx = self.get("dw").index()
        # no wait -> default 5 min
        t, out = self.in_thread(lambda: self.get("dw", "?index=%d" % idx))
        # The query's deadline is fixed when it parks: advancing the clock before that
        # would only move its start (then 15 s more do not end it).
        self.wait_parked()
        self.admin("clock/advance", {"seconds": 290})
        time.sleep(0.3)
        self.assertTrue(t.is_alive(), "returned before the 5 min default")
        self.admin("clock/advance", {"seconds": 15})
        t.join(5)
        self.assertFalse(t.is_alive())
        self.assertEqual(out["r"].index(), idx)
        # wait=20m is capped at 10 min
        t, out = self.in_thread(lambda: self.get("dw", "?index=%d&wait=20m" % idx))
        self.wait_parked()
        self.admin("clock/advance", {"seconds": 590})
        time.sleep(0.3)
        self.assertTrue(t.is_alive())
        self.admin("clock/advance", {"seconds": 15})
        t.join(5)
        self.assertFalse(t.is_alive(), "wait not capped at 10 min")

    def test_concurrent_blocking_queries(self):
        self.put("cc/x", b"0")
        idx = self.get("cc/", "?recurse").index()
        threads = [self.in_thread(lambda: self.get("cc/", "?recurse&index=%d&wait=30s" % idx))
                   for _ in range(20)]
        time.sleep(0.3)
        self.put("cc/y", b"1")
        for t, out in threads:
            t.join(5)
            self.assertEqual(out["r"].status, 200)
            self.assertGreater(out["r"].index(), idx)

    def test_session_endpoints_block(self):
        idx = self.req("GET", "/v1/session/list").index()
        t, out = self.in_thread(lambda: self.req("GET", "/v1/session/list?index=%d&wait=30s" % idx))
        time.sleep(0.2)
        sid = self.session(TTL="10s")
        t.join(5)
        self.assertEqual([s["ID"] for s in out["r"].json], [sid])
        self.assertGreater(out["r"].index(), idx)


class JitterTest(Base):
    jitter = True

    def test_jitter_bounded(self):
        idx = self.get("j").index()
        t0 = time.monotonic()
        self.get("j", "?index=%d&wait=800ms" % idx)
        el = time.monotonic() - t0
        self.assertGreaterEqual(el, 0.78)
        self.assertLess(el, 0.8 + 0.8 / 16 + 0.5)


# ---------------------------------------------------------------------------
class LockTest(Base):
    def test_acquire_release(self):
        s1 = self.session(TTL="15s", Checks=[])
        s2 = self.session(TTL="15s", Checks=[])
        self.assertTrue(self.put("l", b"v1", "?acquire=" + s1).json)   # key need not exist
        e = self.get("l").json[0]
        self.assertEqual((e["LockIndex"], e["Session"]), (1, s1))
        self.assertEqual(base64.b64decode(e["Value"]), b"v1")
        self.assertFalse(self.put("l", b"x", "?acquire=" + s2).json)   # held by another session
        self.assertTrue(self.put("l", b"v2", "?acquire=" + s1).json)   # re-acquire by holder
        self.assertEqual(self.get("l").json[0]["LockIndex"], 1)        # not a new acquisition
        self.assertFalse(self.put("l", b"x", "?release=" + s2).json)   # only holder releases
        self.assertTrue(self.put("l", b"plain").json)                  # advisory: plain PUT works
        self.assertEqual(self.get("l").json[0].get("Session"), s1)     # ... and keeps the Session
        mi = self.get("l").json[0]["ModifyIndex"]
        self.assertTrue(self.put("l", b"rel", "?release=" + s1).json)
        e = self.get("l").json[0]
        self.assertNotIn("Session", e)
        self.assertGreater(e["ModifyIndex"], mi)
        self.assertEqual(base64.b64decode(e["Value"]), b"rel")         # release writes the body
        self.assertTrue(self.put("l", b"again", "?acquire=" + s2).json)
        self.assertEqual(self.get("l").json[0]["LockIndex"], 1 + e["LockIndex"])
        self.assertFalse(self.put("nolock", b"x", "?release=" + s1).json)

    def test_acquire_invalid_session(self):
        r = self.put("l", b"v", "?acquire=0b6d6d3e-0000-4000-8000-000000000000")
        self.assertEqual(r.status, 500)
        self.assertIn("invalid session", r.text)
        r = self.put("l", b"v", "?acquire=not-a-uuid")
        self.assertEqual(r.status, 500)
        self.assertIn("UUID must be 36 characters", r.text)


# ---------------------------------------------------------------------------
class SessionTest(Base):
    def test_create_info_list_defaults(self):
        sid = self.req("PUT", "/v1/session/create").json["ID"]       # empty body: defaults
        [s] = self.req("GET", "/v1/session/info/" + sid).json
        self.assertEqual(s["ID"], sid)
        self.assertEqual(s["Behavior"], "release")
        self.assertEqual(s["LockDelay"], 15 * 10 ** 9)                # ns in responses
        self.assertEqual(s["NodeChecks"], ["serfHealth"])
        self.assertEqual(s["TTL"], "")
        sid2 = self.session(Name="n", TTL="30s", Behavior="delete", LockDelay="5s", Checks=[])
        [s2] = self.req("GET", "/v1/session/info/" + sid2).json
        self.assertEqual((s2["Name"], s2["TTL"], s2["Behavior"], s2["LockDelay"]),
                         ("n", "30s", "delete", 5 * 10 ** 9))
        self.assertIsNone(s2["NodeChecks"])
        ids = sorted(x["ID"] for x in self.req("GET", "/v1/session/list").json)
        self.assertEqual(ids, sorted([sid, sid2]))
        node = s["Node"]
        self.assertEqual(len(self.req("GET", "/v1/session/node/" + node).json), 2)
        self.assertEqual(self.req("GET", "/v1/session/info/" + "0" * 8 + "-0000-4000-8000-"
                                  + "0" * 12).json, [])                # unknown: []

    def test_lock_delay_number_means_seconds(self):
        sid = self.session(LockDelay=5)
        [s] = self.req("GET", "/v1/session/info/" + sid).json
        self.assertEqual(s["LockDelay"], 5 * 10 ** 9)

    def test_ttl_validation(self):
        for ttl in ("9s", "86401s", "25h", "1ms"):
            r = self.req("PUT", "/v1/session/create", {"TTL": ttl})
            self.assertEqual(r.status, 500, ttl)         # RPC error -> 500 in real Consul
            self.assertIn("Invalid Session TTL", r.text)
        r = self.req("PUT", "/v1/session/create", {"TTL": "abc"})
        self.assertEqual(r.status, 500)
        self.assertIn("invalid", r.text)
        for ttl in ("10s", "86400s", "1m", "24h", "0"):
            self.assertEqual(self.req("PUT", "/v1/session/create", {"TTL": ttl}).status, 200, ttl)
        r = self.req("PUT", "/v1/session/create", {"Behavior": "nuke"})
        self.assertEqual(r.status, 500)
        self.assertIn("Invalid Behavior", r.text)
        r = self.req("PUT", "/v1/session/create", {"Checks": ["custom"]})
        self.assertEqual(r.status, 500)
        r = self.req("PUT", "/v1/session/create", {"Node": "elsewhere"})
        self.assertEqual(r.status, 500)
        r = self.req("PUT", "/v1/session/create", b"{not json")
        self.assertEqual(r.status, 400)
        self.assertIn("Request decode failed", r.text)
        r = self.req("PUT", "/v1/session/create", {"LockDelay": "soon"})
        self.assertEqual(r.status, 400)
        r = self.req("GET", "/v1/session/create")
        self.assertEqual(r.status, 405)

    def test_renew_destroy(self):
        sid = self.session(TTL="10s")
        r = self.req("PUT", "/v1/session/renew/" + sid)
        self.assertEqual(r.status, 200)
        self.assertEqual(r.json[0]["ID"], sid)
        self.assertEqual(r.json[0]["TTL"], "10s")
        r = self.req("PUT", "/v1/session/destroy/" + sid)
        self.assertEqual((r.status, r.json), (200, True))
        r = self.req("PUT", "/v1/session/destroy/" + sid)             # idempotent
        self.assertEqual((r.status, r.json), (200, True))
        r = self.req("PUT", "/v1/session/renew/" + sid)
        self.assertEqual(r.status, 404)
        self.assertIn("not found", r.text)
        self.assertEqual(self.req("PUT", "/v1/session/destroy/garbage").status, 500)  # malformed
        self.assertEqual(self.req("PUT", "/v1/session/renew/garbage").status, 500)
        self.assertEqual(self.req("PUT", "/v1/session/destroy/").status, 400)

    def test_ttl_expiry_x2_delete_behavior(self):
        sid = self.session(TTL="10s", Behavior="delete", LockDelay="0s", Checks=[])
        self.assertTrue(self.put("eph/a", b"1", "?acquire=" + sid).json)
        self.put("eph/keep", b"persistent")
        idx = self.get("eph/", "?recurse").index()
        t, out = self.in_thread(lambda: self.get("eph/", "?recurse&index=%d&wait=60s" % idx))
        self.admin("clock/advance", {"seconds": 15})    # > TTL but < 2*TTL: still alive
        self.assertEqual(self.req("GET", "/v1/session/info/" + sid).json[0]["ID"], sid)
        self.assertEqual(self.get("eph/a").status, 200)
        self.assertTrue(t.is_alive())
        self.admin("clock/advance", {"seconds": 5.5})   # > 2*TTL since create: invalidated
        self.assertEqual(self.req("GET", "/v1/session/info/" + sid).json, [])
        self.assertEqual(self.get("eph/a").status, 404)    # Behavior=delete removed held key
        self.assertEqual(self.get("eph/keep").status, 200)
        self.assertEqual(self.req("PUT", "/v1/session/renew/" + sid).status, 404)
        t.join(5)
        self.assertEqual([e["Key"] for e in out["r"].json], ["eph/keep"])
        self.assertGreater(out["r"].index(), idx)

    def test_renew_resets_timer(self):
        sid = self.session(TTL="10s")
        for _ in range(5):
            self.admin("clock/advance", {"seconds": 15})
            self.assertEqual(self.req("PUT", "/v1/session/renew/" + sid).status, 200)
        self.admin("clock/advance", {"seconds": 21})
        self.assertEqual(self.req("PUT", "/v1/session/renew/" + sid).status, 404)

    def test_release_behavior_and_lock_delay(self):
        sid = self.session(TTL="10s", LockDelay="5s", Checks=[])
        other = self.session(TTL="100s", Checks=[])
        self.assertTrue(self.put("rl", b"v", "?acquire=" + sid).json)
        mi = self.get("rl").json[0]["ModifyIndex"]
        self.admin("clock/advance", {"seconds": 21})
        e = self.get("rl").json[0]
        self.assertNotIn("Session", e)                      # released, not deleted
        self.assertGreater(e["ModifyIndex"], mi)
        self.assertEqual(e["LockIndex"], 1)
        # lock-delay: acquire returns false, txn lock fails with 409
        self.assertFalse(self.put("rl", b"v", "?acquire=" + other).json)
        r = self.req("PUT", "/v1/txn", [{"KV": {"Verb": "lock", "Key": "rl", "Session": other}}])
        self.assertEqual(r.status, 409)
        self.assertEqual(r.json["Errors"][0]["OpIndex"], 0)
        self.assertIn("due to lock delay", r.json["Errors"][0]["What"])
        self.assertTrue(self.put("rl", b"plain").json)       # plain writes are not blocked
        self.admin("clock/advance", {"seconds": 5.1})
        self.assertTrue(self.put("rl", b"v", "?acquire=" + other).json)

    def test_lock_delay_after_destroy_and_delete(self):
        sid = self.session(Behavior="delete", LockDelay="15s")
        other = self.session()
        self.assertTrue(self.put("dd", b"v", "?acquire=" + sid).json)
        self.req("PUT", "/v1/session/destroy/" + sid)
        self.assertEqual(self.get("dd").status, 404)
        self.assertFalse(self.put("dd", b"v", "?acquire=" + other).json)
        self.admin("clock/advance", {"seconds": 14})
        self.assertFalse(self.put("dd", b"v", "?acquire=" + other).json)
        self.admin("clock/advance", {"seconds": 1.5})
        self.assertTrue(self.put("dd", b"v", "?acquire=" + other).json)

    def test_lock_delay_clamped_to_60s(self):
        sid = self.session(LockDelay="5m")
        other = self.session()
        self.put("cl", b"v", "?acquire=" + sid)
        self.req("PUT", "/v1/session/destroy/" + sid)
        self.admin("clock/advance", {"seconds": 61})
        self.assertTrue(self.put("cl", b"v", "?acquire=" + other).json)

    def test_admin_invalidate(self):
        sid = self.session(Behavior="delete")
        self.put("ai", b"v", "?acquire=" + sid)
        self.assertTrue(self.admin("session/invalidate", {"id": sid}))
        self.assertEqual(self.get("ai").status, 404)


# ---------------------------------------------------------------------------
def b64(s):
    return base64.b64encode(s.encode() if isinstance(s, str) else s).decode()


class TxnTest(Base):
    def txn(self, ops, **kw):
        return self.req("PUT", "/v1/txn", ops, **kw)

    def test_success_results(self):
        self.put("t/old", b"o")
        sid = self.session()
        r = self.txn([
            {"KV": {"Verb": "set", "Key": "t/a", "Value": b64("A"), "Flags": 7}},
            {"KV": {"Verb": "check-not-exists", "Key": "t/b"}},
            {"KV": {"Verb": "lock", "Key": "t/b", "Value": b64("B"), "Session": sid}},
            {"KV": {"Verb": "get", "Key": "t/old"}},
            {"KV": {"Verb": "delete", "Key": "t/old"}},
            {"KV": {"Verb": "get-tree", "Key": "t/"}},
        ])
        self.assertEqual(r.status, 200, r.text)
        self.assertIsNone(r.json["Errors"])
        res = [x["KV"] for x in r.json["Results"]]
        # set, lock, get, and 2 entries of get-tree (t/a, t/b); check-not-exists/delete: none
        self.assertEqual([x["Key"] for x in res], ["t/a", "t/b", "t/old", "t/a", "t/b"])
        self.assertIsNone(res[0]["Value"])                  # non-get verbs: Value null
        self.assertEqual(res[0]["Flags"], 7)
        self.assertEqual(res[1]["Session"], sid)
        self.assertEqual(res[1]["LockIndex"], 1)
        self.assertEqual(base64.b64decode(res[2]["Value"]), b"o")
        self.assertEqual(base64.b64decode(res[3]["Value"]), b"A")
        self.assertEqual(res[0]["ModifyIndex"], res[1]["ModifyIndex"])   # one raft index
        self.assertEqual(self.get("t/old").status, 404)
        self.assertEqual(self.get("t/b", "?raw").body, b"B")

    def test_atomic_rollback_409(self):
        self.put("x/exists", b"1")
        before = self.req("GET", "/_fake/state").json
        r = self.txn([
            {"KV": {"Verb": "set", "Key": "x/new", "Value": b64("n")}},
            {"KV": {"Verb": "delete", "Key": "x/exists"}},
            {"KV": {"Verb": "check-not-exists", "Key": "x/exists"}},
            {"KV": {"Verb": "cas", "Key": "x/exists", "Index": 99999, "Value": b64("z")}},
        ])
        self.assertEqual(r.status, 409)
        self.assertIsNone(r.json["Results"])
        # delete earlier in the same txn is visible to the check: the check passes; the cas fails
        self.assertEqual([e["OpIndex"] for e in r.json["Errors"]], [3])
        self.assertIn("index is stale", r.json["Errors"][0]["What"])
        self.assertEqual(self.get("x/new").status, 404)
        self.assertEqual(self.get("x/exists", "?raw").body, b"1")
        after = self.req("GET", "/_fake/state").json
        self.assertEqual(before["kv"], after["kv"])
        # all errors are reported
        r = self.txn([
            {"KV": {"Verb": "check-not-exists", "Key": "x/exists"}},
            {"KV": {"Verb": "get", "Key": "x/nope"}},
            {"KV": {"Verb": "check-index", "Key": "x/exists", "Index": 1}},
            {"KV": {"Verb": "bogus", "Key": "x/exists"}},
        ])
        self.assertEqual(r.status, 409)
        self.assertEqual([e["OpIndex"] for e in r.json["Errors"]], [0, 1, 2, 3])
        self.assertIn("exists", r.json["Errors"][0]["What"])
        self.assertIn("doesn't exist", r.json["Errors"][1]["What"])
        self.assertIn("unknown KV verb", r.json["Errors"][3]["What"])

    def test_cas_delete_cas_check_index_check_session(self):
        self.put("c/k", b"1")
        mi = self.get("c/k").json[0]["ModifyIndex"]
        r = self.txn([{"KV": {"Verb": "check-index", "Key": "c/k", "Index": mi}},
                      {"KV": {"Verb": "cas", "Key": "c/k", "Index": mi, "Value": b64("2")}}])
        self.assertEqual(r.status, 200, r.text)
        mi2 = self.get("c/k").json[0]["ModifyIndex"]
        r = self.txn([{"KV": {"Verb": "delete-cas", "Key": "c/k", "Index": mi}}])
        self.assertEqual(r.status, 409)
        r = self.txn([{"KV": {"Verb": "delete-cas", "Key": "c/k", "Index": mi2}}])
        self.assertEqual((r.status, r.json["Results"]), (200, []))
        sid = self.session()
        self.put("c/l", b"v", "?acquire=" + sid)
        self.assertEqual(self.txn([{"KV": {"Verb": "check-session", "Key": "c/l",
                                           "Session": sid}}]).status, 200)
        self.assertEqual(self.txn([{"KV": {"Verb": "check-session", "Key": "c/l",
                                           "Session": ""}}]).status, 409)
        r = self.txn([{"KV": {"Verb": "unlock", "Key": "c/l", "Session": sid}}])
        self.assertEqual(r.status, 200)
        self.assertNotIn("Session", r.json["Results"][0]["KV"])
        r = self.txn([{"KV": {"Verb": "lock", "Key": "c/m",
                              "Session": "0b6d6d3e-0000-4000-8000-000000000000"}}])
        self.assertEqual(r.status, 409)
        self.assertIn("invalid session", r.json["Errors"][0]["What"])
        self.put("c/t/1", b"1")
        self.put("c/t/2", b"1")
        self.assertEqual(self.txn([{"KV": {"Verb": "delete-tree", "Key": "c/t/"}}]).status, 200)
        self.assertEqual(self.get("c/t/", "?recurse").status, 404)

    def test_lock_held_and_create_if_absent(self):
        s1, s2 = self.session(), self.session()
        claim = lambda s: self.txn([{"KV": {"Verb": "check-not-exists", "Key": "ip/10.0.2.5"}},
                                    {"KV": {"Verb": "lock", "Key": "ip/10.0.2.5",
                                            "Value": b64("{}"), "Session": s}}])
        self.assertEqual(claim(s1).status, 200)
        r = claim(s2)
        self.assertEqual(r.status, 409)
        self.assertEqual(r.json["Errors"][0]["OpIndex"], 0)
        self.assertIn("failed to lock key", r.json["Errors"][1]["What"])

    def test_read_only_txn_headers(self):
        self.put("ro", b"1")
        r = self.txn([{"KV": {"Verb": "get", "Key": "ro"}}])
        self.assertEqual(r.status, 200)
        self.assertEqual(r.headers["X-Consul-KnownLeader"], "true")
        self.assertNotIn("X-Consul-Index", r.headers)
        r = self.txn([{"KV": {"Verb": "set", "Key": "ro", "Value": b64("2")}}])
        self.assertNotIn("X-Consul-KnownLeader", r.headers)

    def test_limits_and_malformed(self):
        ops = [{"KV": {"Verb": "set", "Key": "lim/%d" % i, "Value": b64("v")}} for i in range(64)]
        self.assertEqual(self.txn(ops).status, 200)
        ops.append({"KV": {"Verb": "set", "Key": "lim/64", "Value": b64("v")}})
        r = self.txn(ops)
        self.assertEqual(r.status, 413)
        self.assertIn("too many operations (65 > 64)", r.text)
        self.assertEqual(self.get("lim/64").status, 404)
        self.assertEqual(self.txn(b"[{").status, 400)
        self.assertEqual(self.txn({"KV": {}}).status, 400)
        r = self.txn([{"KV": {"Verb": "set", "Key": "k", "Value": "!!notbase64"}}])
        self.assertEqual(r.status, 400)
        r = self.txn([{"KV": {"Verb": "set", "Key": "k", "Value": b64(b"x" * (512 * 1024 + 1))}}])
        self.assertEqual(r.status, 413)
        r = self.txn([{"KV": {"Verb": "set", "Key": "", "Value": b64("v")}}])
        self.assertEqual(r.status, 409)
        self.assertEqual(r.json["Errors"][0]["What"], "Must provide key")
        r = self.txn([{"KV": {"Verb": "set", "Key": "a:b", "Value": b64("v")}}])
        self.assertEqual(r.status, 400)                 # fake's deliberate strictness
        self.assertEqual(self.req("GET", "/v1/txn").status, 405)
        self.assertEqual(self.txn([{"Node": {"Verb": "get"}}]).status, 400)  # not implemented

    def test_txn_wakes_blocking_query(self):
        idx = self.get("tw/", "?recurse").index()
        t, out = self.in_thread(lambda: self.get("tw/", "?recurse&index=%d&wait=30s" % idx))
        time.sleep(0.2)
        self.txn([{"KV": {"Verb": "set", "Key": "tw/a", "Value": b64("1")}}])
        t.join(5)
        self.assertEqual(out["r"].status, 200)


# ---------------------------------------------------------------------------
class ACLTest(Base):
    token = "s3cr3t-token"

    def test_token_required(self):
        r = self.put("k", b"v")
        self.assertEqual(r.status, 403)
        self.assertEqual(r.text, "Permission denied")
        self.assertEqual(r.headers["X-Consul-Default-ACL-Policy"], "deny")
        for hdrs in ({"X-Consul-Token": self.token}, {"Authorization": "Bearer " + self.token}):
            r = self.req("PUT", "/v1/kv/k", b"v", headers=hdrs)
            self.assertEqual((r.status, r.json), (200, True), hdrs)
            r = self.req("GET", "/v1/kv/k", headers=hdrs)
            self.assertEqual(r.status, 200)
        self.assertEqual(self.get("k", "?token=" + self.token).status, 200)
        r = self.req("GET", "/v1/kv/k", headers={"X-Consul-Token": "wrong"})
        self.assertEqual((r.status, r.text), (403, "ACL not found"))
        r = self.req("GET", "/v1/kv/k")
        self.assertEqual((r.status, r.text), (403, "Permission denied"))
        for path, method in (("/v1/session/create", "PUT"), ("/v1/kv/k", "DELETE"),
                             ("/v1/session/renew/0b6d6d3e-0000-4000-8000-000000000000", "PUT")):
            self.assertEqual(self.req(method, path, b"" if method == "PUT" else None).status, 403)
        # anonymous listings are filtered, not refused (Consul filters list results by ACL)
        r = self.get("", "?recurse")
        self.assertEqual(r.status, 404)
        self.assertIn("X-Consul-Index", r.headers)
        self.assertEqual(self.req("GET", "/v1/session/list").json, [])
        r = self.req("PUT", "/v1/txn", [{"KV": {"Verb": "set", "Key": "k", "Value": b64("x")}}])
        self.assertEqual(r.status, 409)
        self.assertEqual(r.json["Errors"][0]["What"], "Permission denied")
        # admin endpoints are not ACL-protected
        self.assertEqual(self.req("GET", "/_fake/state").status, 200)
        log = self.req("GET", "/_fake/requests").json
        self.assertIn("bearer", [x["token_source"] for x in log])


# ---------------------------------------------------------------------------
class FaultTest(Base):
    def test_index_backwards(self):
        self.put("f/a", b"1")
        self.put("f/b", b"1")
        idx = self.get("f/", "?recurse").index()
        self.admin("fault", {"index_backwards": True})
        t0 = time.monotonic()
        r = self.get("f/", "?recurse&index=%d&wait=30s" % idx)
        self.assertLess(time.monotonic() - t0, 2)
        self.assertLess(r.index(), idx)
        self.assertEqual(len(r.json), 2)
        self.admin("fault", {"index_backwards": 1})
        self.assertEqual(self.get("f/", "?recurse&index=%d&wait=30s" % idx).index(), 1)
        # one shot only
        r = self.get("f/", "?recurse&index=%d&wait=200ms" % idx)
        self.assertEqual(r.index(), idx)

    def test_index_zero(self):
        self.put("z", b"1")
        self.admin("fault", {"index_zero": True, "count": 2})
        self.assertEqual(self.get("z").index(), 0)
        self.assertEqual(self.get("z").index(), 0)
        self.assertGreater(self.get("z").index(), 0)

    def test_spurious_wakeup(self):
        self.put("s", b"1")
        idx = self.get("s").index()
        self.admin("fault", {"spurious_wakeup": 2})
        for _ in range(2):
            t0 = time.monotonic()
            r = self.get("s", "?index=%d&wait=30s" % idx)
            self.assertLess(time.monotonic() - t0, 2)
            self.assertEqual(r.index(), idx)
        t0 = time.monotonic()
        self.get("s", "?index=%d&wait=300ms" % idx)
        self.assertGreaterEqual(time.monotonic() - t0, 0.28)

    def test_status_faults(self):
        self.admin("fault", {"status": 503, "count": 2, "body": "boom"})
        for _ in range(2):
            r = self.put("k", b"v")
            self.assertEqual((r.status, r.text), (503, "boom"))
        self.assertEqual(self.get("k").status, 404)         # the failed PUTs were not applied
        self.assertEqual(self.put("k", b"v").status, 200)
        self.admin("fault", {"preset": "no_leader"})
        r = self.get("k")
        self.assertEqual((r.status, r.text), (500, "No cluster leader"))
        self.assertEqual(self.get("k").status, 200)
        # path filter
        self.admin("fault", {"status": 500, "path": "/v1/session/"})
        self.assertEqual(self.get("k").status, 200)
        self.assertEqual(self.req("GET", "/v1/session/list").status, 500)

    def test_reset_mid_body(self):
        self.put("big", b"x" * 5000)
        self.admin("fault", {"reset_mid_body": 1})
        s = socket.create_connection(("127.0.0.1", self.fc.port), timeout=5)
        s.sendall(b"GET /v1/kv/big HTTP/1.1\r\nHost: x\r\n\r\n")
        data = b""
        reset = False
        try:
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        except ConnectionResetError:
            reset = True
        s.close()
        head, _, body = data.partition(b"\r\n\r\n")
        self.assertIn(b"200 OK", head)
        cl = int([l for l in head.split(b"\r\n") if l.lower().startswith(b"content-length")][0]
                 .split(b":")[1])
        self.assertGreater(cl, 0)
        self.assertLess(len(body), cl)
        self.assertTrue(reset or len(body) == cl // 2)
        # urllib sees an error, the next request is fine
        self.admin("fault", {"reset_mid_body": 1})
        with self.assertRaises((http.client.IncompleteRead, ConnectionError, urllib.error.URLError)):
            self.get("big")
        self.assertEqual(self.get("big").status, 200)

    def test_reset_mid_body_write_is_applied(self):
        self.admin("fault", {"reset_mid_body": 1})
        try:
            self.put("applied", b"v")
        except Exception:
            pass
        self.assertEqual(self.get("applied", "?raw").body, b"v")

    def test_delay(self):
        self.admin("fault", {"delay_ms": 700, "count": 1})
        t0 = time.monotonic()
        self.get("k")
        self.assertGreaterEqual(time.monotonic() - t0, 0.68)
        t0 = time.monotonic()
        self.get("k")
        self.assertLess(time.monotonic() - t0, 0.5)

    def test_known_leader_false(self):
        self.admin("fault", {"known_leader": False})
        self.assertEqual(self.get("k").headers["X-Consul-KnownLeader"], "false")
        self.assertEqual(self.get("k").headers["X-Consul-KnownLeader"], "true")

    def test_renew_larger_ttl(self):
        sid = self.session(TTL="10s")
        self.admin("fault", {"renew_ttl": "60s"})
        r = self.req("PUT", "/v1/session/renew/" + sid)
        self.assertEqual(r.json[0]["TTL"], "60s")
        self.admin("clock/advance", {"seconds": 100})          # < 2 x 60s
        self.assertEqual(self.req("PUT", "/v1/session/renew/" + sid).status, 200)

    def test_bad_fault_specs(self):
        for spec in ({}, {"nope": 1}, {"status": "x"}, {"spurious_wakeup": 0},
                     {"preset": "weird"}, {"delay_ms": -1}):
            r = self.req("POST", "/_fake/fault", spec)
            self.assertEqual(r.status, 400, spec)
        self.assertEqual(self.req("POST", "/_fake/fault", b"{bad").status, 400)

    def test_reset_and_state(self):
        self.put("r", b"1")
        self.session(TTL="10s")
        self.admin("fault", {"status": 500, "count": 5})
        self.admin("reset")
        st = self.req("GET", "/_fake/state").json
        self.assertEqual((st["kv"], st["sessions"], st["faults"]["request"]), ([], [], []))
        self.assertEqual(self.get("r").status, 404)
        self.assertEqual(self.get("r").index(), 1)
        self.admin("fault", {"status": 500})
        self.admin("fault/clear")
        self.assertEqual(self.get("r").status, 404)

    def test_python_api(self):
        self.fc.set_fault({"status": 502})
        self.assertEqual(self.get("k").status, 502)
        self.fc.advance_clock(1)
        self.assertIn("kv", self.fc.state())


# ---------------------------------------------------------------------------
class RobustnessTest(Base):
    def test_malformed_requests(self):
        s = socket.create_connection(("127.0.0.1", self.fc.port), timeout=5)
        s.sendall(b"GARBAGE\r\n\r\n")
        data = s.recv(4096)
        s.close()
        self.assertIn(b" 400 ", data.split(b"\r\n")[0])
        s = socket.create_connection(("127.0.0.1", self.fc.port), timeout=5)
        s.sendall(b"PUT /v1/kv/x HTTP/1.1\r\nHost: x\r\nContent-Length: zz\r\n\r\n")
        self.assertIn(b" 400 ", s.recv(4096).split(b"\r\n")[0])
        s.close()
        self.assertEqual(self.req("GET", "/v2/whatever").status, 404)
        self.assertEqual(self.req("GET", "/v1/agent/self").status, 404)
        self.assertEqual(self.req("GET", "/v1/kv/k?dc=elsewhere").status, 500)

    def test_keep_alive_and_chunked(self):
        c = http.client.HTTPConnection("127.0.0.1", self.fc.port, timeout=5)
        for i in range(3):
            c.request("PUT", "/v1/kv/ka/%d" % i, body=b"v%d" % i)
            r = c.getresponse()
            self.assertEqual(r.read(), b"true")
        c.request("PUT", "/v1/kv/ka/chunked", body=iter([b"ab", b"cd"]),
                  headers={"Transfer-Encoding": "chunked"}, encode_chunked=True)
        self.assertEqual(c.getresponse().read(), b"true")
        c.request("GET", "/v1/kv/ka/chunked?raw")
        self.assertEqual(c.getresponse().read(), b"abcd")
        c.close()

    def test_stop_with_pending_blocking_query(self):
        idx = self.get("pend").index()
        t, out = self.in_thread(lambda: self.get("pend", "?index=%d&wait=5m" % idx))
        time.sleep(0.3)
        t0 = time.monotonic()
        self.fc.stop()
        self.assertLess(time.monotonic() - t0, 5)
        t.join(5)
        self.assertFalse(t.is_alive())


class CLITest(unittest.TestCase):
    def _run(self, extra):
        return subprocess.Popen([sys.executable, os.path.join(HERE, "fake_consul.py"), "--port", "0"]
                                + extra, stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def test_stdout_port_and_sigterm(self):
        p = self._run(["--token", "T"])
        try:
            line = p.stdout.readline().decode()
            self.assertTrue(line.startswith("LISTENING "), line)
            port = int(line.split()[1])
            r = urllib.request.Request("http://127.0.0.1:%d/v1/kv/x" % port, data=b"1",
                                       method="PUT", headers={"X-Consul-Token": "T"})
            with urllib.request.urlopen(r, timeout=5) as resp:
                self.assertEqual(resp.read(), b"true")
        finally:
            p.send_signal(signal.SIGTERM)
            p.communicate(timeout=10)
            self.assertEqual(p.returncode, 0)

    def test_port_file(self):
        with tempfile.TemporaryDirectory() as d:
            pf = os.path.join(d, "port")
            p = self._run(["--port-file", pf])
            try:
                deadline = time.monotonic() + 20   # python3 starting on a loaded machine
                while not os.path.exists(pf) and time.monotonic() < deadline:
                    time.sleep(0.05)
                with open(pf) as f:
                    port = int(f.read())
                with urllib.request.urlopen("http://127.0.0.1:%d/v1/status/leader" % port,
                                            timeout=5) as resp:
                    self.assertEqual(json.loads(resp.read()), "127.0.0.1:8300")
            finally:
                p.send_signal(signal.SIGINT)
                p.communicate(timeout=10)
                self.assertEqual(p.returncode, 0)


class HelperTest(unittest.TestCase):
    def test_go_duration(self):
        d = fake_consul.parse_go_duration
        self.assertEqual(d("10s"), 10 * 10 ** 9)
        self.assertEqual(d("1m30s"), 90 * 10 ** 9)
        self.assertEqual(d("1.5h"), 5400 * 10 ** 9)
        self.assertEqual(d("250ms"), 250 * 10 ** 6)
        self.assertEqual(d("0"), 0)
        for bad in ("", "10", "s", "1x", "1.2.3s"):
            with self.assertRaises(ValueError):
                d(bad)

    def test_validate_key(self):
        v = fake_consul.validate_kv_key
        self.assertIsNone(v("a/b/c/"))
        self.assertIsNotNone(v(""))
        self.assertIsNotNone(v("/a"))
        self.assertIsNotNone(v("a?b"))
        self.assertIsNotNone(v("a/../b"))
        self.assertIsNotNone(v("foo.TXT"))


if __name__ == "__main__":
    unittest.main(verbosity=2)
