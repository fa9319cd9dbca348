// SPDX-License-Identifier: Apache-2.0
// runs on: worker lcore
//
// The one's-complement sum of an option-less IPv4 header (20 bytes) in five 32-bit
// additions instead of rte_raw_cksum()'s loop over ten 16-bit words. Both sums fold
// to the same 16-bit value (2^16 = 1 modulo 0xffff), in memory order like
// rte_raw_cksum(): ~sum is the header checksum, and a header with a correct
// checksum sums to 0xffff.
#pragma once

#include <cstdint>
#include <cstring>

namespace overpass::dp {

inline constexpr uint16_t ipv4_hdr_min_len = 20;

/// rte_raw_cksum(hdr, 20) without the loop. `hdr` needs no particular alignment.
inline uint16_t ipv4_hdr20_sum(const void* hdr) noexcept {
    // Three scalar loads: an array here made GCC spill the header to the stack first.
    const auto* p = static_cast<const uint8_t*>(hdr);
    uint64_t a, b;
    uint32_t c;
    std::memcpy(&a, p, sizeof(a));
    std::memcpy(&b, p + 8, sizeof(b));
    std::memcpy(&c, p + 16, sizeof(c));
    uint64_t s = (a & 0xffffffff) + (a >> 32) + (b & 0xffffffff) + (b >> 32) + c;   // < 5 * 2^32
    s = (s & 0xffffffff) + (s >> 32);
    s = (s & 0xffff) + (s >> 16);
    s = (s & 0xffff) + (s >> 16);
    s = (s & 0xffff) + (s >> 16);
    return static_cast<uint16_t>(s);
}

/// Adds a 16-bit word (in memory order) to a folded sum.
inline uint16_t cksum_add16(uint16_t sum, uint16_t word) noexcept {
    const uint32_t s = uint32_t{sum} + word;
    return static_cast<uint16_t>((s & 0xffff) + (s >> 16));
}

} // namespace overpass::dp
