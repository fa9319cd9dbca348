// SPDX-License-Identifier: Apache-2.0
// runs on: control thread and the CLI (pure functions, no DPDK, no JSON)
//
// The overlay's addressing rules, shared by the store's records, the cluster agent, the
// API and the CLI: IPv4 addresses and prefixes, network and endpoint names, the MAC that
// an endpoint's address implies, the VNI range, and random ids.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace overpass::ctl {

// ---- IPv4 addresses and prefixes (host byte order) ----

/// "10.0.2.1" -> 0x0a000201. Strict dotted quad; nullopt on anything else.
std::optional<uint32_t> parse_ipv4(std::string_view s);
std::string format_ipv4(uint32_t addr);

struct ipv4_prefix {
    uint32_t addr = 0;   ///< network address (host bits are zero)
    uint8_t len = 0;

    uint32_t mask() const noexcept { return len == 0 ? 0 : ~uint32_t{0} << (32 - len); }
    uint32_t broadcast() const noexcept { return addr | ~mask(); }
    bool contains(uint32_t ip) const noexcept { return (ip & mask()) == addr; }
    bool overlaps(const ipv4_prefix& o) const noexcept {
        const uint32_t m = len < o.len ? mask() : o.mask();
        return (addr & m) == (o.addr & m);
    }
    std::string str() const;        ///< "10.0.2.0/24"
    std::string key_str() const;    ///< "10.0.2.0_24" (the subnets/ key component)
    bool operator==(const ipv4_prefix&) const = default;
};

/// "10.0.2.0/24". Rejects host bits set ("10.0.2.1/24"), lengths outside 1..32 and junk.
/// Throws std::invalid_argument with a one-line message.
ipv4_prefix parse_prefix(std::string_view s);

/// Why no container can have an address in `p`, or nullptr: 0.0.0.0/8 ("this network"),
/// 127.0.0.0/8 (loopback), 224.0.0.0/4 (multicast) and 240.0.0.0/4 (reserved, with the
/// limited broadcast address) are never unicast host addresses.
const char* unusable_subnet(const ipv4_prefix& p) noexcept;
/// `name` in lower case (ASCII): the form in which names are compared, as DNS does.
std::string fold_case(std::string_view name);
/// Docker-like network / endpoint names: [A-Za-z0-9][A-Za-z0-9_.-]*, at most 64 chars.
bool valid_name(std::string_view name);
/// Docker's MAC scheme: 02:42 followed by the four IPv4 bytes.
constexpr std::array<uint8_t, 6> mac_for_ip(uint32_t ip) noexcept {
    return {0x02, 0x42, static_cast<uint8_t>(ip >> 24), static_cast<uint8_t>(ip >> 16), static_cast<uint8_t>(ip >> 8),
            static_cast<uint8_t>(ip)};
}
std::string format_mac(const std::array<uint8_t, 6>& mac);
std::optional<std::array<uint8_t, 6>> parse_mac(std::string_view s);

/// Lowest VNI handed out by default (below it stays free for manual assignment).
inline constexpr uint32_t first_auto_vni = 4096;
inline constexpr uint32_t max_vni = (1u << 24) - 1;
/// VNI 0 is never a network's (it marks "none" in the tables); 24 bits at most.
constexpr bool valid_vni(uint32_t vni) noexcept { return vni != 0 && vni <= max_vni; }
/// A network's MTU: at least IPv4's minimum datagram that every host must take, at most
/// what fits a 16-bit IPv4 length once VXLAN's 50 bytes are added.
inline constexpr uint32_t min_network_mtu = 576;
inline constexpr uint32_t max_network_mtu = 65535 - 50;

/// 16 random hex characters, used for network ids and session ids.
std::string random_id();

} // namespace overpass::ctl
