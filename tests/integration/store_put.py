#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
# runs on: integration test scripts (root namespace)
"""Edits an overpass file store (file:///path/store.json) the way overpassd does.

Used by kernel_interop.sh to register a non-overpass VTEP (a Linux kernel VXLAN host)
and its container as persistent records, so that overpassd learns them like any peer.

Matches control/store/file_store.cpp exactly:
  - file: {"format": "overpass-file-store/1", "revision": N,
           "keys": {KEY: {"value": STR, "create_rev": N, "mod_rev": N[, "session": ID]}},
           "sessions": {ID: {"host": STR, "ttl": N, "expiry": SECONDS}}}
  - every mutation holds flock(LOCK_EX) on "<path>.lock", re-reads the file, purges
    expired sessions and their keys, applies, and writes "<path>.tmp" + fsync + rename;
  - a change of keys (including purged ones) bumps the revision once; created keys get
    create_rev = mod_rev = the new revision, updated keys keep create_rev;
  - keys written here are persistent (no session).
Record values are compact JSON with sorted keys, like nlohmann::json::dump().

Usage:
  store_put.py STORE get KEY
  store_put.py STORE list [PREFIX]
  store_put.py STORE put KEY VALUE            (VALUE: the raw string, usually JSON)
  store_put.py STORE create KEY VALUE         (fails with exit 3 if KEY exists)
  store_put.py STORE delete KEY
  store_put.py STORE host HOST_ID VTEP [VXLAN_PORT]
  store_put.py STORE endpoint NETWORK_NAME IP NAME HOST_ID VTEP [MAC] [KIND]
  store_put.py STORE net-id NETWORK_NAME
STORE is a path or a file:// URL. KEY is relative to "overpass/v1/" unless it starts
with "overpass/". Errors: one line on stderr, exit 1 (3: create on an existing key).
"""

import fcntl
import ipaddress
import json
import os
import re
import sys
import time

FORMAT_TAG = "overpass-file-store/1"
ROOT = "overpass/v1/"
KEY_RE = re.compile(r"^[A-Za-z0-9,\-_./]+$")


class StoreError(Exception):
    pass


def store_path(arg):
    if arg.startswith("file://"):
        arg = arg[len("file://"):]
    if "://" in arg or not arg.startswith("/"):
        raise StoreError(f"store must be an absolute path or file:///path, not {arg!r}")
    return arg


def full_key(key):
    k = key if key.startswith("overpass/") else ROOT + key
    if not KEY_RE.match(k) or "//" in k or k.startswith("/"):
        raise StoreError(f"invalid store key {k!r}")
    return k


def compact(obj):
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def read_state(path):
    try:
        with open(path, "r", encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        return {"format": FORMAT_TAG, "revision": 0, "keys": {}, "sessions": {}}
    try:
        st = json.loads(text)
        if not isinstance(st, dict) or st.get("format") != FORMAT_TAG:
            raise ValueError(f'missing "format": "{FORMAT_TAG}"')
        if not isinstance(st["revision"], int) or not isinstance(st["keys"], dict) \
                or not isinstance(st["sessions"], dict):
            raise ValueError("bad revision/keys/sessions")
        for k, e in st["keys"].items():
            if not isinstance(e.get("value"), str) or not isinstance(e.get("create_rev"), int) \
                    or not isinstance(e.get("mod_rev"), int):
                raise ValueError(f"bad entry {k}")
    except (ValueError, KeyError, AttributeError) as e:
        raise StoreError(f"store file {path} is unreadable ({e}); not touching it")
    return st


def write_state(path, st):
    tmp = path + ".tmp"
    text = json.dumps(st, indent=1)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    try:
        os.write(fd, text.encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(tmp, path)


def purge(st, now):
    """Drops expired sessions and their keys; True if a key went away."""
    gone = [sid for sid, s in st["sessions"].items() if not s.get("expiry", 0) > now]
    keys_changed = False
    for sid in gone:
        for k in [k for k, e in st["keys"].items() if e.get("session", "") == sid]:
            del st["keys"][k]
            keys_changed = True
        del st["sessions"][sid]
    return keys_changed


def mutate(path, fn):
    """fn(state, next_rev) -> (keys_changed: bool, result). Same protocol as file_store."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    lock_fd = os.open(path + ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(lock_fd, fcntl.LOCK_EX)
        st = read_state(path)
        purged = purge(st, time.time())
        sessions_before = len(st["sessions"])
        changed, result = fn(st, st["revision"] + 1)
        if purged or changed:
            st["revision"] += 1
        if purged or changed or sessions_before != len(st["sessions"]):
            write_state(path, st)
        return result
    finally:
        os.close(lock_fd)   # releases the flock


def put(path, key, value, create_only=False):
    k = full_key(key)

    def fn(st, rev):
        e = st["keys"].get(k)
        if e is not None and create_only:
            return False, False
        if e is not None and e["value"] == value and not e.get("session"):
            return False, True          # unchanged: no new revision
        create_rev = e["create_rev"] if e is not None and not e.get("session") else rev
        st["keys"][k] = {"value": value, "create_rev": create_rev, "mod_rev": rev}
        return True, True

    return mutate(path, fn)


def delete(path, key):
    k = full_key(key)
    return mutate(path, lambda st, rev: (st["keys"].pop(k, None) is not None, True))


def net_id(path, name):
    st = read_state(path)
    e = st["keys"].get(ROOT + "names/" + name)
    if e is None:
        raise StoreError(f'network "{name}" not found in {path}')
    return e["value"]


def mac_for_ip(ip):
    return "02:42:" + ":".join(f"{b:02x}" for b in ipaddress.IPv4Address(ip).packed)


def main(argv):
    if len(argv) < 3 or argv[1] in ("-h", "--help"):
        print(__doc__.strip(), file=sys.stderr)
        return 1
    path = store_path(argv[1])
    cmd, args = argv[2], argv[3:]
    if cmd == "get" and len(args) == 1:
        e = read_state(path)["keys"].get(full_key(args[0]))
        if e is None:
            raise StoreError(f"key {full_key(args[0])} not found")
        print(e["value"])
    elif cmd == "list" and len(args) <= 1:
        prefix = full_key(args[0]) if args else ROOT
        st = read_state(path)
        for k in sorted(st["keys"]):
            if k.startswith(prefix):
                e = st["keys"][k]
                sess = f' session={e["session"]}' if e.get("session") else ""
                print(f'{k} {e["value"]} (create_rev={e["create_rev"]} mod_rev={e["mod_rev"]}{sess})')
        print(f'revision {st["revision"]}')
    elif cmd in ("put", "create") and len(args) == 2:
        if not put(path, args[0], args[1], create_only=(cmd == "create")):
            print(f"key {full_key(args[0])} already exists", file=sys.stderr)
            return 3
    elif cmd == "delete" and len(args) == 1:
        delete(path, args[0])
    elif cmd == "host" and len(args) in (2, 3):
        host_id, vtep = args[0], args[1]
        port = int(args[2]) if len(args) == 3 else 4789
        ipaddress.IPv4Address(vtep)
        put(path, "hosts/" + host_id, compact({"vtep": vtep, "vxlan_port": port}))
    elif cmd == "endpoint" and 5 <= len(args) <= 7:
        net_name, ip, name, host_id, vtep = args[:5]
        ipaddress.IPv4Address(ip)
        ipaddress.IPv4Address(vtep)
        mac = args[5] if len(args) > 5 and args[5] else mac_for_ip(ip)
        kind = args[6] if len(args) > 6 else "tap"
        nid = net_id(path, net_name)
        value = compact({"name": name, "mac": mac.lower(), "host": host_id, "vtep": vtep, "kind": kind})
        put(path, f"nets/{nid}/eps/{ip}", value)
    elif cmd == "net-id" and len(args) == 1:
        print(net_id(path, args[0]))
    else:
        print(f"store_put.py: bad command line: {' '.join(argv[2:])} (see --help)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv))
    except (StoreError, ValueError, OSError) as e:
        print(f"store_put.py: {e}", file=sys.stderr)
        sys.exit(1)
