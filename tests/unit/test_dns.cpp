// SPDX-License-Identifier: Apache-2.0
// runs on: init only (test)
//
// The embedded resolver's codec, against DNS messages written byte by byte here.
#include <gtest/gtest.h>

#include <arpa/inet.h>

#include "control/dns.hpp"

using namespace overpass::ctl;

namespace {

using bytes = std::vector<uint8_t>;

/// A query as glibc sends it: id, RD, one question, optional EDNS OPT record.
bytes query(uint16_t id, const std::vector<std::string>& labels, uint16_t qtype, bool edns = false) {
    bytes m = {static_cast<uint8_t>(id >> 8), static_cast<uint8_t>(id), 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0,
               static_cast<uint8_t>(edns ? 1 : 0)};
    for (const auto& l : labels) {
        m.push_back(static_cast<uint8_t>(l.size()));
        m.insert(m.end(), l.begin(), l.end());
    }
    m.push_back(0);
    m.insert(m.end(), {static_cast<uint8_t>(qtype >> 8), static_cast<uint8_t>(qtype), 0, 1});
    if (edns)
        m.insert(m.end(), {0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 0});
    return m;
}

} // namespace

TEST(dns, parses_a_query_case_insensitively) {
    const bytes m = query(0xbeef, {"App1"}, dns::type_a, true);
    const auto q = dns::parse_query(m);
    ASSERT_TRUE(q);
    EXPECT_EQ(q->id, 0xbeef);
    EXPECT_TRUE(q->recursion_desired);
    EXPECT_EQ(q->name, "app1");
    EXPECT_EQ(q->qtype, dns::type_a);
    EXPECT_EQ(q->qclass, dns::class_in);
    EXPECT_EQ(q->end, 12u + 6u + 4u);
}

TEST(dns, answer_with_one_a_record) {
    const bytes m = query(0x1234, {"app1", "overlay-net"}, dns::type_a, true);
    const auto q = dns::parse_query(m);
    ASSERT_TRUE(q);
    in_addr a{};
    inet_pton(AF_INET, "10.0.2.2", &a);
    const bytes r = dns::build_response(m, *q, dns::rcode::no_error, a.s_addr, 0);
    const bytes expect_header = {0x12, 0x34, 0x85, 0x00, 0, 1, 0, 1, 0, 0, 0, 0};   // QR AA RD, no OPT echoed
    ASSERT_GE(r.size(), q->end + 16);
    EXPECT_EQ(bytes(r.begin(), r.begin() + 12), expect_header);
    EXPECT_EQ(bytes(r.begin() + 12, r.begin() + static_cast<long>(q->end)),
              bytes(m.begin() + 12, m.begin() + static_cast<long>(q->end)));
    const bytes rr = {0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 0, 0, 4, 10, 0, 2, 2};
    EXPECT_EQ(bytes(r.begin() + static_cast<long>(q->end), r.end()), rr);
}

TEST(dns, nxdomain_and_nodata) {
    const bytes m = query(7, {"nope"}, dns::type_a);
    const auto q = dns::parse_query(m);
    ASSERT_TRUE(q);
    const bytes r = dns::build_response(m, *q, dns::rcode::nx_domain);
    EXPECT_EQ(r.size(), q->end);
    EXPECT_EQ(r[3] & 0x0f, 3);
    EXPECT_EQ(r[7], 0);

    const bytes m6 = query(8, {"app1"}, dns::type_aaaa);
    const auto q6 = dns::parse_query(m6);
    ASSERT_TRUE(q6);
    const bytes r6 = dns::build_response(m6, *q6, dns::rcode::no_error);
    EXPECT_EQ(r6[3] & 0x0f, 0);
    EXPECT_EQ(r6[7], 0);   // no answer: NODATA
}

TEST(dns, rejects_what_is_not_a_plain_query) {
    bytes m = query(1, {"app1"}, dns::type_a);
    EXPECT_FALSE(dns::parse_query(bytes(m.begin(), m.begin() + 11)));   // short header
    for (std::size_t n = 12; n < m.size(); n++)
        EXPECT_FALSE(dns::parse_query(bytes(m.begin(), m.begin() + static_cast<long>(n)))) << n;   // truncated
    bytes resp = m;
    resp[2] |= 0x80;   // a response
    EXPECT_FALSE(dns::parse_query(resp));
    bytes two = m;
    two[5] = 2;   // two questions
    EXPECT_FALSE(dns::parse_query(two));
    bytes ptr = m;
    ptr[12] = 0xc0;   // compression pointer in the question
    EXPECT_FALSE(dns::parse_query(ptr));
    bytes update = m;
    update[2] = 0x28;   // opcode 5 (UPDATE)
    EXPECT_FALSE(dns::parse_query(update));
    const bytes longest = query(1, {std::string(64, 'a')}, dns::type_a);
    EXPECT_FALSE(dns::parse_query(longest));
}
