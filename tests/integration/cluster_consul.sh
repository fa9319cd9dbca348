#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Two overpassd on the in-tree fake Consul with an ACL token (--store-token-file) in a
# management namespace: (a) network across hosts, (b) names, (c) 5 + 5 concurrent
# attaches, (e) a 30 s store outage, (d) kill -9 of a daemon. The body, shared by both
# stores, is cluster_store.sh.
# Usage: cluster_consul.sh BUILD_DIR   Exit: 0 pass, 1 fail, 77 skip.
exec "$(dirname "${BASH_SOURCE[0]}")/cluster_store.sh" consul "$@"
