// SPDX-License-Identifier: Apache-2.0
// runs on: control thread and the CLI
#include "control/addressing.hpp"

#include <charconv>
#include <cstdio>
#include <random>
#include <stdexcept>

namespace overpass::ctl {

namespace {

bool parse_uint(std::string_view s, uint32_t& out, uint32_t max) {
    if (s.empty() || s.size() > 10)
        return false;
    uint64_t v = 0;
    for (char c : s) {
        if (c < '0' || c > '9')
            return false;
        v = v * 10 + static_cast<uint64_t>(c - '0');
    }
    if (v > max)
        return false;
    out = static_cast<uint32_t>(v);
    return true;
}

} // namespace

std::optional<uint32_t> parse_ipv4(std::string_view s) {
    uint32_t addr = 0;
    for (int i = 0; i < 4; i++) {
        const size_t dot = s.find('.');
        const std::string_view part = i < 3 ? s.substr(0, dot) : s;
        if (i < 3 && dot == std::string_view::npos)
            return std::nullopt;
        // No leading zeros: "010" is octal to some tools and decimal to others.
        if (part.size() > 1 && part[0] == '0')
            return std::nullopt;
        uint32_t b = 0;
        if (!parse_uint(part, b, 255))
            return std::nullopt;
        addr = addr << 8 | b;
        if (i < 3)
            s.remove_prefix(dot + 1);
    }
    return addr;
}

std::string format_ipv4(uint32_t a) {
    return std::to_string(a >> 24) + '.' + std::to_string((a >> 16) & 0xff) + '.' +
           std::to_string((a >> 8) & 0xff) + '.' + std::to_string(a & 0xff);
}

std::string ipv4_prefix::str() const { return format_ipv4(addr) + '/' + std::to_string(len); }
std::string ipv4_prefix::key_str() const { return format_ipv4(addr) + '_' + std::to_string(len); }

ipv4_prefix parse_prefix(std::string_view s) {
    const std::string shown(s);
    const size_t slash = s.find('/');
    if (slash == std::string_view::npos)
        throw std::invalid_argument("invalid subnet \"" + shown + "\": expected a.b.c.d/len");
    const auto addr = parse_ipv4(s.substr(0, slash));
    uint32_t len = 0;
    if (!addr || !parse_uint(s.substr(slash + 1), len, 32) || len == 0)
        throw std::invalid_argument("invalid subnet \"" + shown + "\": expected a.b.c.d/len");
    ipv4_prefix p{*addr, static_cast<uint8_t>(len)};
    if ((p.addr & p.mask()) != p.addr)
        throw std::invalid_argument("invalid subnet \"" + shown + "\": host bits set (did you mean " +
                                    ipv4_prefix{p.addr & p.mask(), p.len}.str() + "?)");
    return p;
}

const char* unusable_subnet(const ipv4_prefix& p) noexcept {
    struct reserved {
        ipv4_prefix block;
        const char* why;
    };
    static constexpr reserved blocks[] = {
        {{0x00000000, 8}, "0.0.0.0/8 is \"this network\", not host addresses"},
        {{0x7f000000, 8}, "127.0.0.0/8 is loopback"},
        {{0xe0000000, 4}, "224.0.0.0/4 is multicast"},
        {{0xf0000000, 4}, "240.0.0.0/4 is reserved"},
    };
    for (const reserved& r : blocks)
        if (r.block.overlaps(p))
            return r.why;
    return nullptr;
}

std::string fold_case(std::string_view name) {
    std::string s(name);
    for (char& c : s)
        if (c >= 'A' && c <= 'Z')
            c = static_cast<char>(c - 'A' + 'a');
    return s;
}

bool valid_name(std::string_view name) {
    if (name.empty() || name.size() > 64)
        return false;
    auto alnum = [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
    };
    if (!alnum(name[0]))
        return false;
    for (char c : name)
        if (!alnum(c) && c != '_' && c != '.' && c != '-')
            return false;
    return true;
}

std::string format_mac(const std::array<uint8_t, 6>& m) {
    char buf[18];
    std::snprintf(buf, sizeof(buf), "%02x:%02x:%02x:%02x:%02x:%02x", m[0], m[1], m[2], m[3], m[4], m[5]);
    return buf;
}

std::optional<std::array<uint8_t, 6>> parse_mac(std::string_view s) {
    if (s.size() != 17)
        return std::nullopt;
    std::array<uint8_t, 6> m{};
    for (size_t i = 0; i < 6; i++) {
        if (i < 5 && s[i * 3 + 2] != ':')
            return std::nullopt;
        uint8_t b = 0;
        const char* first = s.data() + i * 3;
        auto [ptr, ec] = std::from_chars(first, first + 2, b, 16);
        if (ec != std::errc() || ptr != first + 2)
            return std::nullopt;
        m[i] = b;
    }
    return m;
}

std::string random_id() {
    static std::mt19937_64 gen{std::random_device{}()};
    char buf[17];
    std::snprintf(buf, sizeof(buf), "%016llx", static_cast<unsigned long long>(gen()));
    return buf;
}

} // namespace overpass::ctl
