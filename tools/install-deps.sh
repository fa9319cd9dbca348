#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Installs the Debian packages overpass needs to build, test and run its demo.
# Idempotent: installs only what is missing, and says nothing when nothing is.
set -euo pipefail

pkgs=(
  build-essential g++ pkg-config meson ninja-build
  dpdk dpdk-dev libdpdk-dev
  libboost-dev libboost-system-dev nlohmann-json3-dev prometheus-cpp-dev
  libgtest-dev libgmock-dev libpcap-dev libbpf-dev libxdp-dev libelf-dev libnuma-dev libssl-dev openssl
  iproute2 iputils-ping tcpdump tshark procps psmisc curl python3
  etcd-server etcd-client ethtool prometheus gnuplot-nox
)
[ "${OVERPASS_EXTRA_PKGS:-}" ] && read -r -a extra <<<"$OVERPASS_EXTRA_PKGS" && pkgs+=("${extra[@]}")

missing=()
for p in "${pkgs[@]}"; do
  st=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
  [ "$st" = installed ] || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps: missing packages (${missing[*]}); run as root" >&2
  exit 1
fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
# tshark asks whether non-root users may capture; answer once, non-interactively.
echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
