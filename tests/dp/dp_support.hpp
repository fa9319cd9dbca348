// SPDX-License-Identifier: Apache-2.0
// runs on: init only (test binaries)
//
// Shared helpers of the dp suite: EAL set-up once per binary, ring-backed ethdevs,
// and a frame builder that writes every header byte by hand (checksums included), so
// that expected frames never come from the code under test.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <rte_ether.h>
#include <rte_mbuf.h>
#include <rte_ring.h>

namespace overpass::test {

using bytes = std::vector<uint8_t>;

/// Runs the gtest main with an Environment that initialises EAL with
/// --no-huge --no-pci --no-shconf -m 256 --file-prefix=<binary>-<pid> -l 0-1.
/// `after_eal` (optional, owned by gtest) is set up after EAL and torn down before it.
int run_dp_tests(int argc, char** argv, ::testing::Environment* after_eal = nullptr);

/// An ethdev on top of one rte_ring (net_ring): what is sent on it can be received
/// back from it, or read directly from `ring`. Configured with one queue pair, started.
struct ring_port {
    uint16_t port_id;
    rte_ring* ring;
};
ring_port make_ring_port(const char* name, unsigned ring_size, rte_mempool* pool);

rte_mempool* make_pool(const char* name, unsigned n);

// --- frame builder ---
rte_ether_addr mac(uint8_t a, uint8_t b, uint8_t c, uint8_t d, uint8_t e, uint8_t f);
rte_be32_t ip4(uint8_t a, uint8_t b, uint8_t c, uint8_t d);
inline const rte_ether_addr bcast{{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}};

/// One's-complement Internet checksum (RFC 1071), independent of DPDK's.
uint16_t inet_csum(const uint8_t* p, size_t n);

bytes eth(const rte_ether_addr& dst, const rte_ether_addr& src, uint16_t type, const bytes& payload);
bytes arp(uint16_t op, const rte_ether_addr& sha, rte_be32_t sip, const rte_ether_addr& tha, rte_be32_t tip);
/// IPv4 header (20 bytes, correct checksum) + payload. `frag` is the host-order
/// flags/offset word (0x4000 = DF).
bytes ipv4(rte_be32_t src, rte_be32_t dst, uint8_t proto, const bytes& payload, uint16_t frag = 0,
           uint8_t ttl = 64, uint16_t id = 0);
bytes udp(uint16_t sport, uint16_t dport, const bytes& payload);   // checksum 0
bytes vxlan(uint32_t vni, const bytes& inner, uint8_t flags = 0x08);
bytes icmp_echo(uint8_t type, uint16_t id, uint16_t seq, const bytes& data);
bytes pattern(size_t n, uint8_t seed = 0);

rte_mbuf* to_mbuf(rte_mempool* pool, const bytes& b);
bytes from_mbuf(const rte_mbuf* m);

std::string hex(const bytes& b);

} // namespace overpass::test
