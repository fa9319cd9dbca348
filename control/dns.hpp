// SPDX-License-Identifier: Apache-2.0
// runs on: control thread
//
// The small part of DNS (RFC 1035) the embedded resolver needs: parse one question,
// build the answer to it. Pure functions on byte buffers; no sockets.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace overpass::ctl::dns {

inline constexpr uint16_t type_a = 1;
inline constexpr uint16_t type_aaaa = 28;
inline constexpr uint16_t class_in = 1;

enum class rcode : uint8_t { no_error = 0, format_error = 1, server_failure = 2, nx_domain = 3, not_implemented = 4 };

struct question {
    uint16_t id = 0;
    bool recursion_desired = false;
    std::string name;          ///< lower case, labels joined by '.', no trailing dot
    uint16_t qtype = 0;
    uint16_t qclass = 0;
    std::size_t end = 0;       ///< offset just past the question section
};

/// Parses a query with exactly one question. nullopt for anything that is not a
/// well-formed standard query (a response, a truncated message, compression pointers in
/// the question, labels longer than 63, names longer than 255).
std::optional<question> parse_query(std::span<const uint8_t> msg);

/// The response to `q` (taken from `query`): the header and question copied, QR and AA
/// set, RA clear, with `rcode` and, if given, one A record (IPv4 in network byte order).
std::vector<uint8_t> build_response(std::span<const uint8_t> query, const question& q, rcode rc,
                                    std::optional<uint32_t> a_record_be = std::nullopt, uint32_t ttl = 0);

} // namespace overpass::ctl::dns
