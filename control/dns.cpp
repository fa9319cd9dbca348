// SPDX-License-Identifier: Apache-2.0
// runs on: control thread
#include "control/dns.hpp"

#include <cctype>
#include <cstring>

namespace overpass::ctl::dns {

namespace {

constexpr std::size_t header_len = 12;

uint16_t rd16(std::span<const uint8_t> m, std::size_t at) {
    return static_cast<uint16_t>(m[at] << 8 | m[at + 1]);
}

void put16(std::vector<uint8_t>& out, uint16_t v) {
    out.push_back(static_cast<uint8_t>(v >> 8));
    out.push_back(static_cast<uint8_t>(v));
}

} // namespace

std::optional<question> parse_query(std::span<const uint8_t> msg) {
    if (msg.size() < header_len)
        return std::nullopt;
    const uint16_t flags = rd16(msg, 2);
    const bool is_response = (flags & 0x8000) != 0;
    const unsigned opcode = (flags >> 11) & 0xf;
    if (is_response || opcode != 0 || rd16(msg, 4) != 1)   // standard query, one question
        return std::nullopt;
    question q;
    q.id = rd16(msg, 0);
    q.recursion_desired = (flags & 0x0100) != 0;
    std::size_t at = header_len;
    for (;;) {
        if (at >= msg.size())
            return std::nullopt;
        const uint8_t len = msg[at++];
        if (len == 0)
            break;
        if (len > 63 || at + len > msg.size())   // 0xc0 pointers are > 63 too
            return std::nullopt;
        if (!q.name.empty())
            q.name += '.';
        for (std::size_t i = 0; i < len; i++)
            q.name += static_cast<char>(std::tolower(msg[at + i]));
        at += len;
        if (q.name.size() > 253)
            return std::nullopt;
    }
    if (at + 4 > msg.size())
        return std::nullopt;
    q.qtype = rd16(msg, at);
    q.qclass = rd16(msg, at + 2);
    q.end = at + 4;
    return q;
}

std::vector<uint8_t> build_response(std::span<const uint8_t> query, const question& q, rcode rc,
                                    std::optional<uint32_t> a_record_be, uint32_t ttl) {
    std::vector<uint8_t> out(query.begin(), query.begin() + static_cast<std::ptrdiff_t>(q.end));
    // QR=1, opcode 0, AA=1, TC=0, RD copied, RA=0, Z=0, RCODE.
    const uint16_t flags = static_cast<uint16_t>(0x8000 | 0x0400 | (q.recursion_desired ? 0x0100 : 0) |
                                                 static_cast<uint8_t>(rc));
    out[2] = static_cast<uint8_t>(flags >> 8);
    out[3] = static_cast<uint8_t>(flags);
    out[6] = out[7] = 0;                          // ANCOUNT
    out[8] = out[9] = out[10] = out[11] = 0;      // NSCOUNT, ARCOUNT (EDNS OPT is dropped)
    if (a_record_be) {
        out[7] = 1;
        put16(out, 0xc000 | header_len);          // name: pointer to the question's name
        put16(out, type_a);
        put16(out, class_in);
        put16(out, static_cast<uint16_t>(ttl >> 16));
        put16(out, static_cast<uint16_t>(ttl));
        put16(out, 4);
        uint8_t ip[4];
        std::memcpy(ip, &*a_record_be, 4);
        out.insert(out.end(), ip, ip + 4);
    }
    return out;
}

} // namespace overpass::ctl::dns
