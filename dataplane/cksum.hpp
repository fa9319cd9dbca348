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
    uint32_t w[5];
    std::memcpy(w, hdr, sizeof(w));
    uint64_t s = uint64_t{w[0]} + w[1] + w[2] + w[3] + w[4];   // < 5 * 2^32: no overflow
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
