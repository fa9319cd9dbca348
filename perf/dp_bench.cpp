// SPDX-License-Identifier: Apache-2.0
// runs on: init only (benchmark binary). The main lcore plays overpassd's control thread
// (store -> sync engine -> table_writer); worker lcores run the real dp::worker_main.
//
// Data-plane benchmark. Tables come from a file_store file, read with the same backend,
// sync engine (build_desired/apply_diff) and table_writer overpassd uses; this host's
// endpoints are bound to the bench's container ports with upsert_local_endpoint, and
// every remote VTEP is resolved to a made-up next-hop MAC (overpassd learns it by ARP).
// Traffic is replayed from memory by net_pcap (infinite_rx=1) and drained by
// net_null (no-rx=1); with --vhost-container the first local endpoint's port is a
// vhost-user server port (net_vhost) fed by an external virtio-user generator
// (perf/vhost_bench.sh). Each run alternates the harness floor (io-forward through the same
// ports: rx burst -> tx burst, untouched) with the worker, and reports medians of busy
// TSC cycles per packet (lcore_stats::busy_cycles / packets) and packets per second.
//
// Port ids are fixed for the bench's life: port 0 is the uplink, ports 1..L the local
// endpoints (store order). For each run the vdevs are re-created in that order (a pcap
// where traffic enters, net_null elsewhere), so the bindings never change.
#include <malloc.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <csignal>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <new>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>   // std::exchange, used but not included by Boost 1.74's awaitable.hpp
#include <vector>

#include <functional>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>
#include <nlohmann/json.hpp>

#include <rte_dev.h>
#include <rte_cycles.h>
#include <rte_eal.h>
#include <rte_ethdev.h>
#include <rte_launch.h>
#include <rte_lcore.h>
#include <rte_malloc.h>
#include <rte_mbuf.h>
#include <rte_ring.h>
#include <rte_version.h>

#include "control/publish/table_writer.hpp"
#include "control/store/file_store.hpp"
#include "control/store/keys.hpp"
#include "control/sync/sync.hpp"
#include "overpass/dataplane.hpp"

using namespace overpass;
using json = nlohmann::json;

namespace {

constexpr uint16_t uplink_port_id = 0;
constexpr uint16_t first_container_port = 1;
constexpr uint16_t max_local_endpoints = 16;
constexpr unsigned pool_mbufs = 131071;

struct options {
    std::string store;
    std::string host_id = "bench";
    std::string vtep_mac = "02:c6:12:00:00:01";
    struct run_spec {
        std::string label;
        std::string container_pcap;
        std::string uplink_pcap;
        std::string container2_pcap;   ///< second local endpoint's port (2-worker runs)
        std::string container_vhost;   ///< vhost-user socket: the first local endpoint's port is
                                       ///< net_vhost (server) and a virtio-user driver sends into it
    };
    std::vector<run_spec> runs;
    double seconds = 2.0;
    double warmup = 0.3;
    int repeat = 3;
    bool quick = false;
    bool no_huge = false;
    bool endpoint_cache = true;
    bool check = false;
    unsigned workers = 1;
    double updates_seconds = 0;   ///< table updates under traffic (0: not measured)
    uint32_t max_endpoints = 0;   ///< 0: endpoints in the store + slack
    std::string json_path;
    std::string lcores;
    std::string file_prefix;
};

[[noreturn]] void usage(int rc) {
    std::puts(
        "usage: dp_bench --store FILE [RUN...] [options]\n"
        "runs (each replays its pcaps through the worker; repeat for several runs):\n"
        "  --scenario DIR           a directory written by perf/gen_bench.py traffic (traffic.json)\n"
        "  --pcap FILE              one capture; container or uplink side guessed from its first frame\n"
        "  --container-pcap FILE    frames entering on the first local endpoint's port\n"
        "  --uplink-pcap FILE       frames entering on the uplink (same run as the last --container-pcap)\n"
        "  --vhost-container SOCK   frames entering on the first local endpoint's port, which is a\n"
        "                           vhost-user server port (net_vhost,iface=SOCK) instead of a pcap;\n"
        "                           the generator (e.g. dpdk-testpmd with net_virtio_user) connects to\n"
        "                           SOCK; samples start once it is connected (at most 60 s)\n"
        "  --label NAME             name of the last run in the output\n"
        "options:\n"
        "  --host-id ID             this host in the store (default bench)\n"
        "  --vtep-mac MAC           uplink MAC (default 02:c6:12:00:00:01, what gen_bench.py uses)\n"
        "  --seconds S              measured seconds per sample (default 2)\n"
        "  --repeat R               floor/worker sample pairs per run, medians reported (default 3)\n"
        "  --workers 1|2            2: each RX port on its own worker (needs 3 lcores)\n"
        "  --updates S              also measure table updates under traffic for S seconds\n"
        "  --max-endpoints N        table size (default: endpoints in the store + slack)\n"
        "  --quick                  smoke mode: --no-huge, short samples, one repeat, --check\n"
        "  --check                  exit 1 when a run drops or mis-forwards a packet\n"
        "  --no-huge                EAL without hugepages\n"
        "  --no-endpoint-cache      encap asks the endpoints table for every frame\n"
        "  --lcores LIST            EAL -l (default 0-1, 0-2 with --workers 2)\n"
        "  --file-prefix P          EAL --file-prefix (default dp_bench-<pid>)\n"
        "  --json FILE              write the results as JSON");
    std::exit(rc);
}

options parse_args(int argc, char** argv) {
    options o;
    auto need = [&](int& i) -> std::string {
        if (i + 1 >= argc) {
            std::cerr << "dp_bench: " << argv[i] << " needs a value\n";
            usage(2);
        }
        return argv[++i];
    };
    for (int i = 1; i < argc; i++) {
        const std::string a = argv[i];
        if (a == "--store") o.store = need(i);
        else if (a == "--host-id") o.host_id = need(i);
        else if (a == "--vtep-mac") o.vtep_mac = need(i);
        else if (a == "--scenario") {
            const std::string dir = need(i);
            std::ifstream f(dir + "/traffic.json");
            if (!f) {
                std::cerr << "dp_bench: no " << dir << "/traffic.json\n";
                std::exit(2);
            }
            const json t = json::parse(f);
            options::run_spec r;
            r.label = t.value("scenario", dir);
            const json& p = t.at("pcaps");
            r.container_pcap = p.value("container", "");
            r.uplink_pcap = p.value("uplink", "");
            r.container2_pcap = p.value("container2", "");
            o.runs.push_back(r);
        } else if (a == "--pcap") {
            o.runs.push_back({"pcap", need(i), "", "", ""});
            o.runs.back().label = o.runs.back().container_pcap;
        } else if (a == "--container-pcap") {
            o.runs.push_back({"custom", need(i), "", "", ""});
        } else if (a == "--vhost-container") {
            o.runs.push_back({"vhost", "", "", "", need(i)});
        } else if (a == "--uplink-pcap") {
            const std::string f = need(i);
            if (!o.runs.empty() && o.runs.back().uplink_pcap.empty() && o.runs.back().label == "custom")
                o.runs.back().uplink_pcap = f;
            else
                o.runs.push_back({"custom", "", f, "", ""});
        } else if (a == "--label") {
            const std::string l = need(i);
            if (o.runs.empty())
                usage(2);
            o.runs.back().label = l;
        } else if (a == "--seconds") o.seconds = std::stod(need(i));
        else if (a == "--repeat") o.repeat = std::stoi(need(i));
        else if (a == "--workers") o.workers = static_cast<unsigned>(std::stoul(need(i)));
        else if (a == "--updates") o.updates_seconds = std::stod(need(i));
        else if (a == "--max-endpoints") o.max_endpoints = static_cast<uint32_t>(std::stoul(need(i)));
        else if (a == "--quick") o.quick = true;
        else if (a == "--check") o.check = true;
        else if (a == "--no-huge") o.no_huge = true;
        else if (a == "--no-endpoint-cache") o.endpoint_cache = false;
        else if (a == "--lcores") o.lcores = need(i);
        else if (a == "--file-prefix") o.file_prefix = need(i);
        else if (a == "--json") o.json_path = need(i);
        else if (a == "-h" || a == "--help") usage(0);
        else {
            std::cerr << "dp_bench: unknown argument " << a << '\n';
            usage(2);
        }
    }
    if (o.store.empty() || (o.runs.empty() && o.updates_seconds == 0))
        usage(2);
    if (o.workers < 1 || o.workers > 2) {
        std::cerr << "dp_bench: --workers is 1 or 2\n";
        std::exit(2);
    }
    if (o.quick) {
        o.no_huge = true;
        o.check = true;
        o.seconds = 0.3;
        o.warmup = 0.1;
        o.repeat = 1;
    }
    return o;
}

/// Reads the first frame of a classic pcap: is it VXLAN (goes to the uplink)? Its length?
struct pcap_info {
    bool vxlan = false;
    bool broadcast = false;
    uint32_t first_len = 0;
    uint32_t frames = 0;
};

pcap_info inspect_pcap(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    if (!f)
        throw std::runtime_error("cannot open " + path);
    char gh[24];
    if (!f.read(gh, sizeof(gh)))
        throw std::runtime_error(path + ": not a pcap file");
    uint32_t magic;
    std::memcpy(&magic, gh, 4);
    if (magic != 0xa1b2c3d4 && magic != 0xa1b23c4d)
        throw std::runtime_error(path + ": only little-endian classic pcap is read here");
    pcap_info info;
    std::vector<unsigned char> frame;
    for (;;) {
        char rh[16];
        if (!f.read(rh, sizeof(rh)))
            break;
        uint32_t caplen;
        std::memcpy(&caplen, rh + 8, 4);
        frame.resize(caplen);
        if (!f.read(reinterpret_cast<char*>(frame.data()), caplen))
            break;
        if (info.frames++ == 0) {
            info.first_len = caplen;
            info.broadcast = caplen >= 6 && std::all_of(frame.begin(), frame.begin() + 6, [](unsigned char c) { return c == 0xff; });
            // Ethernet / IPv4 (IHL 5) / UDP to 4789
            info.vxlan = caplen >= 42 && frame[12] == 0x08 && frame[13] == 0x00 && frame[23] == 17 &&
                         frame[36] == 0x12 && frame[37] == 0xb5;
        }
    }
    return info;
}

std::string cpu_model() {
    std::ifstream f("/proc/cpuinfo");
    std::string line;
    while (std::getline(f, line))
        if (line.rfind("model name", 0) == 0)
            return line.substr(line.find(':') + 2);
    return "unknown";
}

std::array<double, 3> load_average() {
    std::array<double, 3> l{};
    if (getloadavg(l.data(), 3) != 3)
        l = {-1, -1, -1};
    return l;
}

uint64_t heap_bytes() { return mallinfo2().uordblks; }

uint64_t huge_bytes() {
    rte_malloc_socket_stats s{};
    uint64_t total = 0;
    for (unsigned i = 0; i < rte_socket_count(); i++)
        if (rte_malloc_get_socket_stats(rte_socket_id_by_idx(i), &s) == 0)
            total += s.heap_allocsz_bytes;
    return total;
}

double median(std::vector<double> v) {
    if (v.empty())
        return 0;
    std::sort(v.begin(), v.end());
    const size_t n = v.size();
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

// ------------------------------------------------------------------ tables

struct local_ep {
    uint32_t vni;
    rte_be32_t ip_be;
    rte_ether_addr mac;
};

struct loaded_tables {
    std::unique_ptr<ctl::table_writer> tw;
    ctl::desired_state applied;       ///< what the sync engine keeps in overpassd
    std::vector<local_ep> locals;
    config_snapshot cfg{};
    uint64_t endpoints = 0;           ///< local + remote endpoints programmed
    double load_seconds = 0;
    uint64_t huge_bytes = 0, heap_bytes = 0;
    uint32_t max_endpoints = 0;
};

loaded_tables load_tables(const options& o) {
    const auto t0 = std::chrono::steady_clock::now();
    boost::asio::io_context io(1);
    ctl::file_store st(io, o.store);
    auto fut = boost::asio::co_spawn(io, st.list(std::string(ctl::keys::root)), boost::asio::use_future);
    io.run();
    const ctl::kv_snapshot snap = fut.get();

    loaded_tables lt;
    std::optional<ctl::host_record> self;
    uint64_t n_eps = 0;
    for (const auto& it : snap.items) {
        const ctl::keys::parsed k = ctl::keys::parse(it.key);
        if (k.what == ctl::keys::parsed::kind::host && k.id == o.host_id)
            self = ctl::host_record_from_value(it.value);
        n_eps += k.what == ctl::keys::parsed::kind::endpoint;
    }
    if (!self)
        throw std::runtime_error("store " + o.store + " has no host '" + o.host_id + "' (--host-id)");
    const uint32_t vtep_ip = *ctl::parse_ipv4(self->vtep);
    lt.max_endpoints = o.max_endpoints != 0 ? o.max_endpoints
                                            : static_cast<uint32_t>(n_eps + n_eps / 16 + 2048);

    const uint64_t heap0 = heap_bytes(), huge0 = huge_bytes();
    ctl::table_limits lim;
    lim.max_endpoints = lt.max_endpoints;
    lt.tw = ctl::table_writer::create("bench", lim);
    if (lt.tw == nullptr)
        throw std::runtime_error("table_writer::create failed (hugepage memory?)");

    config_snapshot& cfg = lt.cfg;
    cfg.uplink_port = uplink_port_id;
    const auto mac = ctl::parse_mac(o.vtep_mac);
    if (!mac)
        throw std::runtime_error("bad --vtep-mac");
    cfg.vtep_mac = ctl::to_ether(*mac);
    cfg.vtep_ip_be = rte_cpu_to_be_32(vtep_ip);
    cfg.vxlan_port_be = rte_cpu_to_be_16(self->vxlan_port != 0 ? self->vxlan_port : default_vxlan_port);
    cfg.uplink_mtu = 1500;
    cfg.bum_frames_per_sec = 0;   // measure replication, not the rate limiter
    if (int rc = lt.tw->set_config(cfg); rc < 0)
        throw std::runtime_error("set_config: " + std::string(std::strerror(-rc)));

    std::vector<std::string> problems;
    {
        ctl::store_view kv;
        for (const auto& it : snap.items)
            kv.emplace(it.key, it);
        ctl::desired_state want = build_desired(kv, ctl::sync_identity{o.host_id, cfg.vtep_ip_be}, problems);
        if (unsigned failed = apply_diff(lt.applied, want, *lt.tw); failed != 0)
            throw std::runtime_error(std::to_string(failed) + " table updates failed (table_limits too small?)");
        // The sync engine keeps the store view and the names too; the bench keeps only
        // what the tables are made of.
        lt.applied.names.clear();
        // This host's endpoints (overpassd: the agent, with the ports it attached).
        std::map<uint32_t, uint32_t> vni_of_net;
        for (const auto& [key, item] : kv) {
            const ctl::keys::parsed k = ctl::keys::parse(key);
            if (k.what == ctl::keys::parsed::kind::net_meta)
                vni_of_net[std::hash<std::string>{}(k.id)] = ctl::net_meta_from_value(k.id, item.value).vni;
        }
        for (const auto& [key, item] : kv) {
            const ctl::keys::parsed k = ctl::keys::parse(key);
            if (k.what != ctl::keys::parsed::kind::endpoint)
                continue;
            const ctl::endpoint_record e = ctl::endpoint_record_from_value(item.value);
            if (e.host != o.host_id)
                continue;
            auto net = vni_of_net.find(std::hash<std::string>{}(k.id));
            if (net == vni_of_net.end())
                continue;
            if (lt.locals.size() >= max_local_endpoints)
                throw std::runtime_error("more than " + std::to_string(max_local_endpoints) + " endpoints of this host");
            lt.locals.push_back({net->second, rte_cpu_to_be_32(k.ip), ctl::to_ether(*ctl::parse_mac(e.mac))});
        }
    }
    for (const auto& p : problems)
        std::cerr << "dp_bench: skipped store record " << p << '\n';
    std::sort(lt.locals.begin(), lt.locals.end(),
              [](const local_ep& a, const local_ep& b) { return rte_be_to_cpu_32(a.ip_be) < rte_be_to_cpu_32(b.ip_be); });
    for (size_t i = 0; i < lt.locals.size(); i++) {
        const local_ep& l = lt.locals[i];
        if (int rc = lt.tw->upsert_local_endpoint(l.vni, l.ip_be, l.mac, static_cast<uint16_t>(first_container_port + i));
            rc < 0)
            throw std::runtime_error("upsert_local_endpoint: " + std::string(std::strerror(-rc)));
    }
    // Next hops: overpassd learns them by ARP; here every VTEP gets a made-up MAC.
    for (rte_be32_t v : lt.applied.vteps) {
        rte_ether_addr m{{0x02, 0xc6, 0x12, 0xee, 0, 0}};
        std::memcpy(&m.addr_bytes[2], &v, 4);
        if (int rc = lt.tw->resolve_vtep(v, m); rc < 0)
            throw std::runtime_error("resolve_vtep: " + std::string(std::strerror(-rc)));
    }
    lt.tw->synchronize();
    lt.endpoints = lt.applied.endpoints.size() + lt.locals.size();
    lt.heap_bytes = heap_bytes() - heap0;
    lt.huge_bytes = huge_bytes() - huge0;
    lt.load_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return lt;
}

// ------------------------------------------------------------------ ports

struct run_ports {
    std::vector<std::string> names;            ///< vdev names, in port id order
    std::vector<uint16_t> rx_ports;            ///< ports with traffic (pcap)
};

void configure_port(uint16_t port, rte_mempool* pool, uint16_t n_txq) {
    rte_eth_conf conf{};
    rte_eth_dev_info info;
    if (rte_eth_dev_info_get(port, &info) != 0)
        throw std::runtime_error("dev_info_get failed");
    if (info.tx_offload_capa & RTE_ETH_TX_OFFLOAD_MBUF_FAST_FREE)   // as overpassd's port_manager
        conf.txmode.offloads |= RTE_ETH_TX_OFFLOAD_MBUF_FAST_FREE;
    // net_pcap without tx_pcap has one (dropping) TX queue: the scenarios for two
    // workers never send to a capture port.
    n_txq = std::min(n_txq, info.max_tx_queues);
    if (rte_eth_dev_configure(port, 1, n_txq, &conf) != 0)
        throw std::runtime_error("configure port " + std::to_string(port) + " failed");
    const int s = rte_eth_dev_socket_id(port);
    const unsigned sock = s < 0 ? 0 : static_cast<unsigned>(s);
    if (rte_eth_rx_queue_setup(port, 0, 1024, sock, nullptr, pool) != 0)
        throw std::runtime_error("rx queue setup failed on port " + std::to_string(port));
    rte_eth_txconf txconf = info.default_txconf;
    txconf.offloads = conf.txmode.offloads;
    for (uint16_t q = 0; q < n_txq; q++)
        if (rte_eth_tx_queue_setup(port, q, 1024, sock, &txconf) != 0)
            throw std::runtime_error("tx queue setup failed on port " + std::to_string(port));
    if (rte_eth_dev_start(port) != 0)
        throw std::runtime_error("start failed on port " + std::to_string(port));
}

run_ports open_ports(const options::run_spec& r, size_t n_locals, unsigned run_no, rte_mempool* pool,
                     uint16_t n_txq) {
    run_ports rp;
    auto add = [&](const std::string& kind, const std::string& args) {
        const std::string name = kind + "_r" + std::to_string(run_no) + "p" + std::to_string(rp.names.size());
        if (rte_dev_probe((name + "," + args).c_str()) != 0)
            throw std::runtime_error("cannot create " + name + "," + args);
        uint16_t port;
        if (rte_eth_dev_get_port_by_name(name.c_str(), &port) != 0 || port != rp.names.size())
            throw std::runtime_error(name + ": expected port id " + std::to_string(rp.names.size()));
        rp.names.push_back(name);
        configure_port(port, pool, n_txq);
        if (kind == "net_pcap" || kind == "net_vhost")
            rp.rx_ports.push_back(port);
    };
    if (!r.uplink_pcap.empty())
        add("net_pcap", "rx_pcap=" + r.uplink_pcap + ",infinite_rx=1");
    else
        add("net_null", "no-rx=1");
    for (size_t i = 0; i < n_locals; i++) {
        if (i == 0 && !r.container_vhost.empty())
            add("net_vhost", "iface=" + r.container_vhost + ",queues=1");
        else if (i == 0 && !r.container_pcap.empty())
            add("net_pcap", "rx_pcap=" + r.container_pcap + ",infinite_rx=1");
        else if (i == 1 && !r.container2_pcap.empty())
            add("net_pcap", "rx_pcap=" + r.container2_pcap + ",infinite_rx=1");
        else
            add("net_null", "no-rx=1");
    }
    return rp;
}

/// A net_vhost port is down until a virtio-user driver connects and starts its queues.
void wait_vhost(const std::string& sock, uint16_t port) {
    std::printf("vhost: waiting for a virtio-user driver on %s\n", sock.c_str());
    std::fflush(stdout);
    const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    for (;;) {
        rte_eth_link link{};
        if (rte_eth_link_get_nowait(port, &link) == 0 && link.link_status == RTE_ETH_LINK_UP)
            break;
        if (std::chrono::steady_clock::now() > end)
            throw std::runtime_error("no virtio-user driver connected to " + sock + " within 60 s");
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    std::printf("vhost: connected\n");
    std::fflush(stdout);
}

void close_ports(const run_ports& rp) {
    for (size_t i = rp.names.size(); i-- > 0;) {
        const auto port = static_cast<uint16_t>(i);
        rte_eth_dev_stop(port);
        rte_eth_dev_close(port);
        rte_eal_hotplug_remove("vdev", rp.names[i].c_str());
    }
}

// ------------------------------------------------------------------ floor

/// The harness floor: what the same ports cost with nothing in between. Packets from
/// the uplink go to the first container port, packets from a container port to the
/// uplink, untouched; busy cycles are counted exactly as worker_main counts them.
struct floor_worker {
    unsigned lcore = 0;
    uint16_t txq = 0;
    std::vector<uint16_t> rx;
    std::atomic<bool> stop{false};
    lcore_stats* stats = nullptr;   ///< packets, busy_cycles, ports[].tx_packets, drops
};

int floor_main(void* arg) noexcept {
    auto& f = *static_cast<floor_worker*>(arg);
    uint64_t last = rte_rdtsc();
    while (!f.stop.load(std::memory_order_relaxed)) {
        uint32_t received = 0;
        for (uint16_t port : f.rx) {
            rte_mbuf* pkts[max_burst];
            const uint16_t n = rte_eth_rx_burst(port, 0, pkts, max_burst);
            if (n == 0)
                continue;
            received += n;
            const uint16_t out = port == uplink_port_id ? first_container_port : uplink_port_id;
            const uint16_t sent = rte_eth_tx_burst(out, f.txq, pkts, n);
            if (sent < n) {
                rte_pktmbuf_free_bulk(&pkts[sent], n - sent);
                f.stats->drop(drop_reason::tx_full, n - sent);
            }
            f.stats->ports[out].tx_packets.add(sent);
        }
        const uint64_t now = rte_rdtsc();
        if (received != 0) {
            f.stats->packets.add(received);
            f.stats->busy_cycles.add(now - last);
        } else {
            f.stats->idle_cycles.add(now - last);
        }
        last = now;
    }
    return 0;
}

// ------------------------------------------------------------------ samples

struct totals {
    uint64_t packets = 0, busy = 0, tx = 0, drops = 0, exceptions = 0;
    uint64_t cache_hits = 0, cache_misses = 0;   ///< encap's endpoint cache
};

totals read_totals(const std::vector<lcore_stats*>& stats) {
    totals t;
    for (const lcore_stats* s : stats) {
        t.packets += s->packets.get();
        t.busy += s->busy_cycles.get();
        t.exceptions += s->exceptions.get();
        t.cache_hits += s->endpoint_cache_hits.get();
        t.cache_misses += s->endpoint_cache_misses.get();
        for (const auto& p : s->ports)
            t.tx += p.tx_packets.get();
        for (const auto& d : s->drops)
            t.drops += d.get();
    }
    return t;
}

struct sample {
    double pps = 0;
    double cycles = 0;       ///< busy cycles per packet while the worker was on its CPU
    double wall_cycles = 0;  ///< busy cycles per packet as counted (includes time preempted)
    double on_cpu = 0;       ///< fraction of the measured time the lcore thread was on its CPU
    double cache_hit_rate = -1;   ///< encap endpoint lookups answered by the worker's cache; -1: none
    totals end;   ///< whole-life totals at the end (for the forwarding check)
    std::map<std::string, uint64_t> drops_by_reason;
};

/// Nanoseconds lcore `lcore` has spent on a CPU (/proc schedstat of its EAL thread,
/// named "rte-worker-N"): on a shared machine busy TSC cycles include time the thread
/// was preempted, which the scheduler knows about.
int64_t lcore_tid(unsigned lcore) {
    const std::string want = "rte-worker-" + std::to_string(lcore);
    for (const auto& e : std::filesystem::directory_iterator("/proc/self/task")) {
        std::ifstream f(e.path() / "comm");
        std::string comm;
        if (std::getline(f, comm) && comm == want)
            return std::stoll(e.path().filename().string());
    }
    return -1;
}

uint64_t on_cpu_ns(int64_t tid) {
    if (tid < 0)
        return 0;
    std::ifstream f("/proc/self/task/" + std::to_string(tid) + "/schedstat");
    uint64_t ns = 0;
    f >> ns;
    return ns;
}

/// Lets the lcores run for warmup + seconds; pps and cycles/packet over the measured part.
sample measure(const options& o, const std::vector<unsigned>& lcores, const std::vector<lcore_stats*>& stats,
               const std::function<void()>& stop_all, const std::function<void()>& during = {}) {
    std::this_thread::sleep_for(std::chrono::duration<double>(o.warmup));
    std::vector<int64_t> tids;
    for (unsigned l : lcores)
        tids.push_back(lcore_tid(l));
    std::vector<totals> a, b;
    std::vector<uint64_t> cpu_a, cpu_b;
    for (size_t i = 0; i < stats.size(); i++) {
        a.push_back(read_totals({stats[i]}));
        cpu_a.push_back(on_cpu_ns(tids[i]));
    }
    const auto t0 = std::chrono::steady_clock::now();
    if (during)
        during();
    else
        std::this_thread::sleep_for(std::chrono::duration<double>(o.seconds));
    for (size_t i = 0; i < stats.size(); i++) {
        b.push_back(read_totals({stats[i]}));
        cpu_b.push_back(on_cpu_ns(tids[i]));
    }
    const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    stop_all();
    sample s;
    uint64_t pk = 0, hits = 0, lookups = 0;
    double busy = 0, busy_on_cpu = 0, on_cpu = 0;
    for (size_t i = 0; i < stats.size(); i++) {
        pk += b[i].packets - a[i].packets;
        hits += b[i].cache_hits - a[i].cache_hits;
        lookups += b[i].cache_hits - a[i].cache_hits + b[i].cache_misses - a[i].cache_misses;
        const double frac = tids[i] < 0 ? 1.0 : std::min(1.0, static_cast<double>(cpu_b[i] - cpu_a[i]) / (dt * 1e9));
        busy += static_cast<double>(b[i].busy - a[i].busy);
        busy_on_cpu += static_cast<double>(b[i].busy - a[i].busy) * frac;
        on_cpu += frac / static_cast<double>(stats.size());
    }
    s.pps = static_cast<double>(pk) / dt;
    s.cycles = pk != 0 ? busy_on_cpu / static_cast<double>(pk) : 0;
    s.wall_cycles = pk != 0 ? busy / static_cast<double>(pk) : 0;
    s.on_cpu = on_cpu;
    if (lookups != 0)
        s.cache_hit_rate = static_cast<double>(hits) / static_cast<double>(lookups);
    s.end = read_totals(stats);
    for (const lcore_stats* st : stats)
        for (size_t i = 0; i < drop_reason_count; i++)
            if (uint64_t v = st->drops[i].get(); v != 0)
                s.drops_by_reason[drop_reason_names[i]] += v;
    return s;
}

std::vector<unsigned> worker_lcores(unsigned n) {
    std::vector<unsigned> l;
    unsigned lc;
    RTE_LCORE_FOREACH_WORKER(lc) {
        if (l.size() < n)
            l.push_back(lc);
    }
    if (l.size() < n)
        throw std::runtime_error("needs " + std::to_string(n) + " worker lcores (--lcores)");
    return l;
}

sample run_floor(const options& o, const run_ports& rp) {
    const auto lcores = worker_lcores(o.workers);
    std::vector<std::unique_ptr<floor_worker>> fw;
    std::vector<std::unique_ptr<lcore_stats>> st;
    std::vector<lcore_stats*> sp;
    for (unsigned i = 0; i < o.workers; i++) {
        fw.push_back(std::make_unique<floor_worker>());
        st.push_back(std::make_unique<lcore_stats>());
        fw[i]->lcore = lcores[i];
        fw[i]->txq = static_cast<uint16_t>(i);
        fw[i]->stats = st[i].get();
        sp.push_back(st[i].get());
    }
    for (size_t i = 0; i < rp.rx_ports.size(); i++)
        fw[i % o.workers]->rx.push_back(rp.rx_ports[i]);
    for (auto& f : fw)
        if (rte_eal_remote_launch(floor_main, f.get(), f->lcore) != 0)
            throw std::runtime_error("launch failed");
    return measure(o, lcores, sp, [&] {
        for (auto& f : fw)
            f->stop.store(true, std::memory_order_relaxed);
        for (auto& f : fw)
            rte_eal_wait_lcore(f->lcore);
    });
}

struct worker_set {
    std::vector<worker*> w;
    ~worker_set() {
        for (worker* x : w) {
            x->~worker();
            rte_free(x);
        }
    }
};

sample run_worker(const options& o, const run_ports& rp, loaded_tables& lt, rte_mempool* pool,
                  rte_ring* exceptions, const std::function<void()>& during = {}) {
    const auto lcores = worker_lcores(o.workers);
    worker_set ws;
    std::vector<lcore_stats*> sp;
    for (unsigned i = 0; i < o.workers; i++) {
        void* mem = rte_zmalloc("bench_worker", sizeof(worker), RTE_CACHE_LINE_SIZE);
        if (mem == nullptr)
            throw std::runtime_error("rte_zmalloc(worker) failed");
        auto* w = new (mem) worker;
        ws.w.push_back(w);
        w->lcore_id = lcores[i];
        w->use_endpoint_cache = o.endpoint_cache;
        w->txq = static_cast<uint16_t>(i);
        w->tables = &lt.tw->tables();
        w->pool = pool;
        w->exception_ring = exceptions;
        sp.push_back(&w->stats);
    }
    for (size_t i = 0; i < rp.rx_ports.size(); i++) {
        worker& w = *ws.w[i % o.workers];
        w.rxqs[w.n_rxqs++] = rxq_ref{rp.rx_ports[i], 0};
    }
    for (worker* w : ws.w)
        if (rte_eal_remote_launch(dp::worker_main, w, w->lcore_id) != 0)
            throw std::runtime_error("launch failed");
    sample s = measure(o, lcores, sp, [&] {
        for (worker* w : ws.w)
            w->stop.store(true, std::memory_order_relaxed);
        for (worker* w : ws.w)
            rte_eal_wait_lcore(w->lcore_id);
    }, during);
    // Nothing is expected on the exception ring in these scenarios; empty it anyway.
    void* objs[64];
    unsigned n;
    while ((n = rte_ring_dequeue_burst(exceptions, objs, 64, nullptr)) != 0)
        rte_pktmbuf_free_bulk(reinterpret_cast<rte_mbuf**>(objs), n);
    return s;
}

/// Outputs per input for a broadcast from the first local endpoint: every other local
/// port and every remote VTEP of its network.
uint64_t bum_fanout(loaded_tables& lt) {
    if (lt.locals.empty())
        return 1;
    void* data = nullptr;
    const uint32_t vni = lt.locals[0].vni;
    if (rte_hash_lookup_data(lt.tw->tables().networks, &vni, &data) < 0)
        return 1;
    const auto* seg = static_cast<const segment*>(data);
    return seg->n_remote_vteps + seg->n_local_ports - 1u;
}

// ------------------------------------------------------------------ table updates under traffic

struct update_result {
    double updates_per_sec = 0;
    uint64_t updates = 0;
    sample traffic;
};

/// While the worker forwards the run's traffic, the main lcore (the control thread)
/// adds, moves and removes endpoints that carry no traffic, through the table_writer,
/// reclaiming as overpassd's timer does. Entries in use never change: no packet may be lost.
update_result run_updates(const options& o, const run_ports& rp, loaded_tables& lt, rte_mempool* pool,
                          rte_ring* exceptions) {
    update_result ur;
    const uint32_t vni = lt.locals.empty() ? 4096 : lt.locals[0].vni;
    std::vector<rte_be32_t> vteps(lt.applied.vteps.begin(), lt.applied.vteps.end());
    if (vteps.empty())
        throw std::runtime_error("--updates needs remote VTEPs in the store");
    constexpr uint32_t churn = 1024;   // endpoints cycled through (outside the traffic)
    auto ip_of = [](uint32_t k) { return rte_cpu_to_be_32((10u << 24) | (0xf0u << 16) | k); };   // 10.240.x.x
    auto mac_of = [](uint32_t k) {
        return rte_ether_addr{{0x02, 0x43, 0x0a, 0xf0, static_cast<uint8_t>(k >> 8), static_cast<uint8_t>(k)}};
    };
    ur.traffic = run_worker(o, rp, lt, pool, exceptions, [&] {
        const auto t0 = std::chrono::steady_clock::now();
        const auto end = t0 + std::chrono::duration<double>(o.updates_seconds);
        uint64_t n = 0;
        int failed = 0;
        std::vector<uint8_t> present(churn, 0);
        std::vector<uint32_t> where(churn, 0);
        while (std::chrono::steady_clock::now() < end) {
            for (int batch = 0; batch < 256; batch++, n++) {
                const uint32_t k = static_cast<uint32_t>(n % churn);
                const uint32_t step = static_cast<uint32_t>(n / churn);
                int rc;
                if (present[k] && step % 3 == 2) {
                    rc = lt.tw->remove_endpoint(vni, mac_of(k));   // delete
                    present[k] = 0;
                } else {
                    where[k] = (where[k] + 1) % static_cast<uint32_t>(vteps.size());   // add or move
                    rc = lt.tw->upsert_remote_endpoint(vni, ip_of(k), mac_of(k), vteps[where[k]]);
                    present[k] = rc == 0;
                }
                if (rc != 0 && failed++ == 0)
                    std::cerr << "dp_bench: table update " << n << " failed: " << std::strerror(-rc) << '\n';
            }
            lt.tw->reclaim();
        }
        ur.updates = n;
        ur.updates_per_sec = static_cast<double>(n) / std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        if (failed != 0)
            std::cerr << "dp_bench: " << failed << " table updates failed\n";
        for (uint32_t k = 0; k < churn; k++)
            if (present[k])
                lt.tw->remove_endpoint(vni, mac_of(k));
    });
    lt.tw->synchronize();
    return ur;
}

// ------------------------------------------------------------------ output

struct run_result {
    std::string label;
    std::string container_pcap, uplink_pcap;
    std::string container_vhost;      ///< vhost-user socket of the first container port, if any
    uint32_t frame_size = 0;          ///< on the wire, FCS included, of the first frame
    uint32_t frames = 0;              ///< frames in the capture(s)
    uint64_t fanout = 1;
    std::vector<sample> floor, work;
    bool ok = true;
    std::string problem;
    double floor_cycles() const { std::vector<double> v; for (auto& s : floor) v.push_back(s.cycles); return median(v); }
    double floor_pps() const { std::vector<double> v; for (auto& s : floor) v.push_back(s.pps); return median(v); }
    double cycles() const { std::vector<double> v; for (auto& s : work) v.push_back(s.cycles); return median(v); }
    double pps() const { std::vector<double> v; for (auto& s : work) v.push_back(s.pps); return median(v); }
    double cache_hit_rate() const { std::vector<double> v; for (auto& s : work) v.push_back(s.cache_hit_rate); return median(v); }
};

json sample_json(const sample& s) {
    return {{"pps", s.pps}, {"cycles_per_packet", s.cycles}, {"wall_cycles_per_packet", s.wall_cycles},
            {"on_cpu", s.on_cpu},
            {"endpoint_cache_hit_rate", s.cache_hit_rate >= 0 ? json(s.cache_hit_rate) : json(nullptr)},
            {"rx", s.end.packets}, {"tx", s.end.tx},
            {"drops", s.end.drops}, {"drops_by_reason", s.drops_by_reason}};
}

} // namespace

int main(int argc, char** argv) {
    options o = parse_args(argc, argv);
    if (o.file_prefix.empty())
        o.file_prefix = "dp_bench-" + std::to_string(getpid());
    if (o.lcores.empty())
        o.lcores = o.workers == 2 ? "0@0,1@0,2@1" : "0-1";
    std::vector<std::string> eal = {"dp_bench", "--no-pci", "--file-prefix=" + o.file_prefix,
                                    (o.lcores.find('@') != std::string::npos ? "--lcores=" : "-l") + o.lcores,
                                    "--log-level=*:warning", "--log-level=lib.eal:error", "--no-telemetry"};
    if (o.no_huge) {
        eal.push_back("--no-huge");
        eal.push_back("-m");
        eal.push_back("1024");
        eal.push_back("--no-shconf");
    } else {
        eal.push_back("--in-memory");   // no hugepage files left behind, even when killed
    }
    std::vector<char*> eal_argv;
    for (auto& a : eal)
        eal_argv.push_back(a.data());
    if (rte_eal_init(static_cast<int>(eal_argv.size()), eal_argv.data()) < 0) {
        std::cerr << "dp_bench: rte_eal_init: " << rte_strerror(rte_errno) << '\n';
        return 1;
    }
    int rc = 0;
    // A vhost-user peer that goes away must not kill the bench with SIGPIPE.
    std::signal(SIGPIPE, SIG_IGN);
    try {
        const auto load_before = load_average();
        rte_mempool* pool = rte_pktmbuf_pool_create("bench_pool", o.quick ? 32767 : pool_mbufs, 256, 0,
                                                    RTE_MBUF_DEFAULT_BUF_SIZE, static_cast<int>(rte_socket_id()));
        if (pool == nullptr)
            throw std::runtime_error(std::string("mbuf pool: ") + rte_strerror(rte_errno));
        rte_ring* exceptions = rte_ring_create("bench_exc", 1024, static_cast<int>(rte_socket_id()), RING_F_SC_DEQ);
        if (exceptions == nullptr)
            throw std::runtime_error("exception ring");
        loaded_tables lt = load_tables(o);
        std::printf("tables: %llu endpoints, %zu VTEPs, %zu local ports (table size %u), loaded in %.1f s; "
                    "%.0f hugepage + %.0f heap bytes per endpoint\n",
                    static_cast<unsigned long long>(lt.endpoints), lt.applied.vteps.size(), lt.locals.size(),
                    lt.max_endpoints, lt.load_seconds, static_cast<double>(lt.huge_bytes) / static_cast<double>(lt.endpoints),
                    static_cast<double>(lt.heap_bytes) / static_cast<double>(lt.endpoints));
        std::fflush(stdout);

        std::vector<run_result> results;
        std::optional<update_result> updates;
        unsigned run_no = 0;
        for (auto& spec : o.runs) {
            run_result r;
            r.label = spec.label;
            if (!spec.container_pcap.empty() && spec.uplink_pcap.empty() && spec.label == spec.container_pcap) {
                const pcap_info pi = inspect_pcap(spec.container_pcap);   // --pcap: which side?
                if (pi.vxlan)
                    std::swap(spec.container_pcap, spec.uplink_pcap);
            }
            r.container_pcap = spec.container_pcap;
            r.container_vhost = spec.container_vhost;
            r.uplink_pcap = spec.uplink_pcap;
            for (const std::string& p : {spec.container_pcap, spec.uplink_pcap, spec.container2_pcap}) {
                if (p.empty())
                    continue;
                const pcap_info pi = inspect_pcap(p);
                r.frames += pi.frames;
                if (r.frame_size == 0 || p == spec.container_pcap)
                    r.frame_size = (pi.vxlan ? pi.first_len - vxlan_overhead : pi.first_len) + 4;
                if (pi.broadcast && p == spec.container_pcap)
                    r.fanout = bum_fanout(lt);
            }
            if (!spec.container_pcap.empty() && lt.locals.empty())
                throw std::runtime_error("container traffic needs an endpoint of host " + o.host_id + " in the store");
            if (!spec.container_vhost.empty() && lt.locals.empty())
                throw std::runtime_error("--vhost-container needs an endpoint of host " + o.host_id + " in the store");
            const run_ports rp = open_ports(spec, lt.locals.size(), run_no++, pool, static_cast<uint16_t>(o.workers));
            if (!spec.container_vhost.empty())
                wait_vhost(spec.container_vhost, first_container_port);
            for (int i = 0; i < o.repeat; i++) {
                r.floor.push_back(run_floor(o, rp));
                r.work.push_back(run_worker(o, rp, lt, pool, exceptions));
            }
            if (!spec.container_vhost.empty()) {
                // No capture to read the size from: what the vhost port received, plus FCS.
                rte_eth_stats st{};
                if (rte_eth_stats_get(first_container_port, &st) == 0 && st.ipackets != 0)
                    r.frame_size = static_cast<uint32_t>(st.ibytes / st.ipackets) + 4;
            }
            for (const sample& s : r.work) {
                const uint64_t expect = s.end.packets * r.fanout;
                if (s.end.packets == 0) {
                    r.ok = false;
                    r.problem = "no packets received";
                } else if (s.end.drops != 0 || s.end.tx != expect) {
                    r.ok = false;
                    r.problem = "rx " + std::to_string(s.end.packets) + " x fanout " + std::to_string(r.fanout) +
                                " != tx " + std::to_string(s.end.tx) + " (drops " + std::to_string(s.end.drops) + ")";
                }
            }
            if (o.updates_seconds > 0 && !updates && !spec.container_pcap.empty() && spec.uplink_pcap.empty() &&
                r.fanout == 1)
                updates = run_updates(o, rp, lt, pool, exceptions);
            close_ports(rp);
            results.push_back(r);
        }
        const auto load_after = load_average();

        // ---- table
        std::printf("\n%-10s %6s %9s %7s | %8s %8s | %9s %8s | %6s %7s | %5s | %s\n", "run", "size", "endpoints",
                    "frames", "floor", "floor", "overpass", "overpass", "ratio", "above", "cache", "check");
        std::printf("%-10s %6s %9s %7s | %8s %8s | %9s %8s | %6s %7s | %5s |\n", "", "bytes", "", "", "cyc/pkt", "Mpps",
                    "cyc/pkt", "Mpps", "", "cyc/pkt", "hit%");
        for (const auto& r : results) {
            const double hit = r.cache_hit_rate();
            char cache[16] = "-";
            if (hit >= 0)
                std::snprintf(cache, sizeof(cache), "%.0f", hit * 100);
            std::printf("%-10s %6u %9llu %7u | %8.1f %8.2f | %9.1f %8.2f | %6.2f %7.1f | %5s | %s\n", r.label.c_str(),
                        r.frame_size, static_cast<unsigned long long>(lt.endpoints), r.frames, r.floor_cycles(),
                        r.floor_pps() / 1e6, r.cycles(), r.pps() / 1e6,
                        r.floor_cycles() > 0 ? r.cycles() / r.floor_cycles() : 0, r.cycles() - r.floor_cycles(),
                        cache, r.ok ? "ok" : r.problem.c_str());
        }
        if (updates)
            std::printf("table updates under traffic: %.0f updates/s (%llu), worker %.1f cyc/pkt, drops %llu, "
                        "rx %llu tx %llu\n",
                        updates->updates_per_sec, static_cast<unsigned long long>(updates->updates),
                        updates->traffic.cycles, static_cast<unsigned long long>(updates->traffic.end.drops),
                        static_cast<unsigned long long>(updates->traffic.end.packets),
                        static_cast<unsigned long long>(updates->traffic.end.tx));
        std::printf("cpu: %s, TSC %.3f GHz, %s, workers %u, load average %.2f -> %.2f\n", cpu_model().c_str(),
                    static_cast<double>(rte_get_tsc_hz()) / 1e9, rte_version(), o.workers, load_before[0], load_after[0]);

        bool all_ok = true;
        json runs = json::array();
        for (const auto& r : results) {
            all_ok = all_ok && r.ok;
            json fl = json::array(), wk = json::array();
            for (const auto& s : r.floor)
                fl.push_back(sample_json(s));
            for (const auto& s : r.work)
                wk.push_back(sample_json(s));
            runs.push_back({{"scenario", r.label},
                            {"container_pcap", r.container_pcap},
                            {"container_vhost", r.container_vhost},
                            {"uplink_pcap", r.uplink_pcap},
                            {"frame_size", r.frame_size},
                            {"frames", r.frames},
                            {"endpoints", lt.endpoints},
                            {"outputs_per_input", r.fanout},
                            {"floor", {{"pps", r.floor_pps()}, {"cycles_per_packet", r.floor_cycles()}, {"samples", fl}}},
                            {"overpass", {{"pps", r.pps()}, {"cycles_per_packet", r.cycles()}, {"samples", wk}}},
                            {"ratio_to_floor", r.floor_cycles() > 0 ? r.cycles() / r.floor_cycles() : 0},
                            {"cycles_above_floor", r.cycles() - r.floor_cycles()},
                            {"endpoint_cache_hit_rate",
                             r.cache_hit_rate() >= 0 ? json(r.cache_hit_rate()) : json(nullptr)},
                            {"ok", r.ok},
                            {"problem", r.problem}});
        }
        json out = {{"machine",
                     {{"cpu_model", cpu_model()},
                      {"tsc_hz", rte_get_tsc_hz()},
                      {"dpdk_version", rte_version()},
                      {"cpus", std::thread::hardware_concurrency()},
                      {"load_average_before", load_before},
                      {"load_average_after", load_after}}},
                    {"settings",
                     {{"store", o.store}, {"seconds", o.seconds}, {"repeat", o.repeat}, {"workers", o.workers},
                      {"hugepages", !o.no_huge}, {"lcores", o.lcores}, {"endpoint_cache", o.endpoint_cache}}},
                    {"tables",
                     {{"endpoints", lt.endpoints},
                      {"vteps", lt.applied.vteps.size()},
                      {"local_ports", lt.locals.size()},
                      {"table_size", lt.max_endpoints},
                      {"load_seconds", lt.load_seconds},
                      {"hugepage_bytes", lt.huge_bytes},
                      {"heap_bytes", lt.heap_bytes},
                      {"bytes_per_endpoint",
                       static_cast<double>(lt.huge_bytes + lt.heap_bytes) / static_cast<double>(lt.endpoints)}}},
                    {"runs", runs}};
        if (updates) {
            out["updates"] = {{"updates_per_sec", updates->updates_per_sec},
                              {"updates", updates->updates},
                              {"traffic", sample_json(updates->traffic)},
                              {"zero_loss", updates->traffic.end.drops == 0 &&
                                                updates->traffic.end.tx == updates->traffic.end.packets}};
            all_ok = all_ok && updates->traffic.end.drops == 0;
        }
        out["ok"] = all_ok;
        if (!o.json_path.empty()) {
            std::ofstream f(o.json_path);
            f << out.dump(1) << '\n';
            if (!f)
                throw std::runtime_error("cannot write " + o.json_path);
        }
        if (o.check && !all_ok) {
            std::cerr << "dp_bench: check failed\n";
            rc = 1;
        }
        lt.tw.reset();
        rte_ring_free(exceptions);
        rte_mempool_free(pool);
    } catch (const std::exception& e) {
        std::cerr << "dp_bench: " << e.what() << '\n';
        rc = 1;
    }
    rte_eal_cleanup();
    return rc;
}
