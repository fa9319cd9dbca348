// SPDX-License-Identifier: Apache-2.0
// runs on: init only (test binaries)
#include "tests/dp/dp_support.hpp"

#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <stdexcept>

#include <rte_eal.h>
#include <rte_eth_ring.h>
#include <rte_ethdev.h>
#include <rte_errno.h>
#include <rte_mbuf.h>

namespace overpass::test {

namespace {

class eal_env : public ::testing::Environment {
public:
    explicit eal_env(std::string prog) : prog_(std::move(prog)) {}
    void SetUp() override {
        const std::string base = prog_.substr(prog_.find_last_of('/') + 1);
        const std::string prefix = "--file-prefix=" + base + "-" + std::to_string(getpid());
        std::vector<std::string> args = {base, "--no-huge", "--no-pci", "--no-shconf", "-m", "256",
                                         prefix, "-l", "0-1", "--log-level=*:warning"};
        std::vector<char*> argv;
        for (auto& a : args)
            argv.push_back(a.data());
        if (rte_eal_init(static_cast<int>(argv.size()), argv.data()) < 0)
            throw std::runtime_error(std::string("rte_eal_init: ") + rte_strerror(rte_errno));
    }
    void TearDown() override { rte_eal_cleanup(); }

private:
    std::string prog_;
};

} // namespace

int run_dp_tests(int argc, char** argv, ::testing::Environment* after_eal) {
    ::testing::InitGoogleTest(&argc, argv);
    ::testing::AddGlobalTestEnvironment(new eal_env(argv[0]));
    if (after_eal != nullptr)
        ::testing::AddGlobalTestEnvironment(after_eal);
    return RUN_ALL_TESTS();
}

rte_mempool* make_pool(const char* name, unsigned n) {
    // No per-lcore cache: rte_mempool_full() is then an exact leak check.
    rte_mempool* p = rte_pktmbuf_pool_create(name, n, 0, 0, RTE_MBUF_DEFAULT_BUF_SIZE, SOCKET_ID_ANY);
    if (p == nullptr)
        throw std::runtime_error(std::string("pool ") + name + ": " + rte_strerror(rte_errno));
    return p;
}

ring_port make_ring_port(const char* name, unsigned ring_size, rte_mempool* pool) {
    rte_ring* r = rte_ring_create(name, ring_size, SOCKET_ID_ANY, 0);
    if (r == nullptr)
        throw std::runtime_error(std::string("ring ") + name + ": " + rte_strerror(rte_errno));
    const int port = rte_eth_from_ring(r);
    if (port < 0)
        throw std::runtime_error(std::string("rte_eth_from_ring ") + name + ": " + rte_strerror(rte_errno));
    const auto pid = static_cast<uint16_t>(port);
    rte_eth_conf conf{};
    if (rte_eth_dev_configure(pid, 1, 1, &conf) != 0 ||
        rte_eth_rx_queue_setup(pid, 0, 64, SOCKET_ID_ANY, nullptr, pool) != 0 ||
        rte_eth_tx_queue_setup(pid, 0, 64, SOCKET_ID_ANY, nullptr) != 0 || rte_eth_dev_start(pid) != 0)
        throw std::runtime_error(std::string("ring port set-up ") + name);
    return {pid, r};
}

rte_ether_addr mac(uint8_t a, uint8_t b, uint8_t c, uint8_t d, uint8_t e, uint8_t f) {
    return rte_ether_addr{{a, b, c, d, e, f}};
}

rte_be32_t ip4(uint8_t a, uint8_t b, uint8_t c, uint8_t d) {
    const uint8_t v[4] = {a, b, c, d};
    rte_be32_t r;
    std::memcpy(&r, v, 4);
    return r;
}

uint16_t inet_csum(const uint8_t* p, size_t n) {
    uint32_t sum = 0;
    for (size_t i = 0; i + 1 < n; i += 2)
        sum += static_cast<uint32_t>(p[i] << 8 | p[i + 1]);
    if (n & 1)
        sum += static_cast<uint32_t>(p[n - 1] << 8);
    while (sum >> 16)
        sum = (sum & 0xffff) + (sum >> 16);
    return static_cast<uint16_t>(~sum);
}

namespace {
void put16(bytes& b, uint16_t v) {
    b.push_back(static_cast<uint8_t>(v >> 8));
    b.push_back(static_cast<uint8_t>(v));
}
void put_raw(bytes& b, const void* p, size_t n) {
    const auto* c = static_cast<const uint8_t*>(p);
    b.insert(b.end(), c, c + n);
}
void put_mac(bytes& b, const rte_ether_addr& m) { put_raw(b, m.addr_bytes, 6); }
} // namespace

bytes eth(const rte_ether_addr& dst, const rte_ether_addr& src, uint16_t type, const bytes& payload) {
    bytes b;
    put_mac(b, dst);
    put_mac(b, src);
    put16(b, type);
    b.insert(b.end(), payload.begin(), payload.end());
    return b;
}

bytes arp(uint16_t op, const rte_ether_addr& sha, rte_be32_t sip, const rte_ether_addr& tha, rte_be32_t tip) {
    bytes b;
    put16(b, 1);        // Ethernet
    put16(b, 0x0800);   // IPv4
    b.push_back(6);
    b.push_back(4);
    put16(b, op);
    put_mac(b, sha);
    put_raw(b, &sip, 4);
    put_mac(b, tha);
    put_raw(b, &tip, 4);
    return b;
}

bytes ipv4(rte_be32_t src, rte_be32_t dst, uint8_t proto, const bytes& payload, uint16_t frag, uint8_t ttl,
           uint16_t id) {
    bytes b;
    b.push_back(0x45);
    b.push_back(0);
    put16(b, static_cast<uint16_t>(20 + payload.size()));
    put16(b, id);
    put16(b, frag);
    b.push_back(ttl);
    b.push_back(proto);
    put16(b, 0);
    put_raw(b, &src, 4);
    put_raw(b, &dst, 4);
    const uint16_t c = inet_csum(b.data(), 20);
    b[10] = static_cast<uint8_t>(c >> 8);
    b[11] = static_cast<uint8_t>(c);
    b.insert(b.end(), payload.begin(), payload.end());
    return b;
}

bytes udp(uint16_t sport, uint16_t dport, const bytes& payload) {
    bytes b;
    put16(b, sport);
    put16(b, dport);
    put16(b, static_cast<uint16_t>(8 + payload.size()));
    put16(b, 0);
    b.insert(b.end(), payload.begin(), payload.end());
    return b;
}

bytes vxlan(uint32_t vni, const bytes& inner, uint8_t flags) {
    bytes b = {flags, 0, 0, 0, static_cast<uint8_t>(vni >> 16), static_cast<uint8_t>(vni >> 8),
               static_cast<uint8_t>(vni), 0};
    b.insert(b.end(), inner.begin(), inner.end());
    return b;
}

bytes icmp_echo(uint8_t type, uint16_t id, uint16_t seq, const bytes& data) {
    bytes b = {type, 0, 0, 0};
    put16(b, id);
    put16(b, seq);
    b.insert(b.end(), data.begin(), data.end());
    const uint16_t c = inet_csum(b.data(), b.size());
    b[2] = static_cast<uint8_t>(c >> 8);
    b[3] = static_cast<uint8_t>(c);
    return b;
}

bytes pattern(size_t n, uint8_t seed) {
    bytes b(n);
    for (size_t i = 0; i < n; i++)
        b[i] = static_cast<uint8_t>(seed + i * 7);
    return b;
}

rte_mbuf* to_mbuf(rte_mempool* pool, const bytes& b) {
    rte_mbuf* m = rte_pktmbuf_alloc(pool);
    if (m == nullptr)
        return nullptr;
    char* p = rte_pktmbuf_append(m, static_cast<uint16_t>(b.size()));
    if (p == nullptr && !b.empty()) {
        rte_pktmbuf_free(m);
        return nullptr;
    }
    if (!b.empty())
        std::memcpy(p, b.data(), b.size());
    return m;
}

bytes from_mbuf(const rte_mbuf* m) {
    bytes b(rte_pktmbuf_pkt_len(m));
    const void* p = rte_pktmbuf_read(m, 0, b.size(), b.data());
    if (p != b.data() && !b.empty())
        std::memcpy(b.data(), p, b.size());
    return b;
}

std::string hex(const bytes& b) {
    std::string s;
    char buf[4];
    for (size_t i = 0; i < b.size(); i++) {
        std::snprintf(buf, sizeof(buf), "%02x", b[i]);
        s += buf;
        if (i % 2 == 1)
            s += ' ';
    }
    return s;
}

} // namespace overpass::test
