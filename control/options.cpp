// SPDX-License-Identifier: Apache-2.0
// runs on: init only
#include "control/options.hpp"

#include <arpa/inet.h>
#include <sched.h>

#include <cstring>
#include <fstream>
#include <regex>
#include <sstream>

#include <nlohmann/json.hpp>
#include <rte_log.h>

namespace overpass::ctl {

namespace {

const std::regex host_id_re("[A-Za-z0-9][A-Za-z0-9_.-]{0,62}");
const std::regex cpus_re("[0-9]+(-[0-9]+)?(,[0-9]+(-[0-9]+)?)*");

unsigned parse_uint(const std::string& what, const std::string& v, unsigned lo, unsigned hi) {
    std::size_t used = 0;
    unsigned long n = 0;
    try {
        n = std::stoul(v, &used, 10);
    } catch (const std::exception&) {
        used = 0;
    }
    if (used == 0 || used != v.size() || n < lo || n > hi)
        throw options_error(what + ": '" + v + "' is not a number from " + std::to_string(lo) + " to " +
                            std::to_string(hi));
    return static_cast<unsigned>(n);
}

void set_key(daemon_options& o, const std::string& key, const std::string& v) {
    if (key == "host-id") o.host_id = v;
    else if (key == "vtep-ip") o.vtep_ip = v;
    else if (key == "uplink") o.uplink = v;
    else if (key == "store") o.store = v;
    else if (key == "store-token-file") o.store_token_file = v;
    else if (key == "store-ca-file") o.store_ca_file = v;
    else if (key == "api") o.api = v;
    else if (key == "workers") o.workers = parse_uint("--workers", v, 1, 16);
    else if (key == "vxlan-port") o.vxlan_port = static_cast<uint16_t>(parse_uint("--vxlan-port", v, 1, 65535));
    else if (key == "cpus") o.cpus = v;
    else if (key == "mbufs") o.mempool_mbufs = parse_uint("--mbufs", v, 1024, 1u << 24);
    else if (key == "memory") o.memory_mb = parse_uint("--memory", v, 64, 1u << 20);
    else if (key == "log-level") o.log_level = v;
    else if (key == "metrics") o.metrics = v;
    else if (key == "bum-rate") o.bum_rate = parse_uint("--bum-rate", v, 0, 100000000);
    else throw options_error("unknown option --" + key);
}

bool is_flag(const std::string& key) {
    return key == "no-huge" || key == "no-endpoint-cache" || key == "replace" || key == "help";
}

bool takes_value(const std::string& key) {
    static const char* keys[] = {"host-id", "vtep-ip", "uplink", "store", "api", "workers", "vxlan-port",
                                 "cpus", "mbufs", "memory", "log-level", "config", "bum-rate",
                                 "store-token-file", "store-ca-file", "metrics"};
    for (const char* k : keys)
        if (key == k)
            return true;
    return false;
}

void set_flag(daemon_options& o, const std::string& key, bool v) {
    if (key == "no-huge") o.no_huge = v;
    else if (key == "no-endpoint-cache") o.no_endpoint_cache = v;
    else if (key == "replace") o.replace = v;
    else o.help = v;
}

void apply_config_file(daemon_options& o, const std::string& path) {
    std::ifstream in(path);
    if (!in)
        throw options_error("--config: cannot open " + path + ": " + std::strerror(errno));
    nlohmann::json j;
    try {
        j = nlohmann::json::parse(in);
    } catch (const nlohmann::json::parse_error& e) {
        throw options_error("--config " + path + ": not valid JSON (" + e.what() + ")");
    }
    if (!j.is_object())
        throw options_error("--config " + path + ": must be a JSON object");
    for (const auto& [key, val] : j.items()) {
        if (key == "config" || key == "eal-args") {
            if (key == "eal-args") {
                if (!val.is_array())
                    throw options_error("--config " + path + ": eal-args must be an array of strings");
                for (const auto& a : val) {
                    if (!a.is_string())
                        throw options_error("--config " + path + ": eal-args must be an array of strings");
                    o.eal_extra.push_back(a.get<std::string>());
                }
                continue;
            }
            throw options_error("--config " + path + ": unknown key 'config'");
        }
        if (is_flag(key)) {
            if (!val.is_boolean())
                throw options_error("--config " + path + ": " + key + " must be true or false");
            set_flag(o, key, val.get<bool>());
        } else if (val.is_string()) {
            set_key(o, key, val.get<std::string>());
        } else if (val.is_number_unsigned()) {
            set_key(o, key, std::to_string(val.get<uint64_t>()));
        } else {
            throw options_error("--config " + path + ": " + key + " must be a string or a number");
        }
    }
}

void validate(daemon_options& o) {
    if (o.help)
        return;
    if (o.host_id.empty())
        throw options_error("--host-id is required");
    if (!std::regex_match(o.host_id, host_id_re))
        throw options_error("--host-id '" + o.host_id + "': use letters, digits, '_', '.', '-' (at most 63)");
    if (o.vtep_ip.empty())
        throw options_error("--vtep-ip is required");
    in_addr a{};
    if (inet_pton(AF_INET, o.vtep_ip.c_str(), &a) != 1)
        throw options_error("--vtep-ip '" + o.vtep_ip + "' is not an IPv4 address");
    const uint32_t h = ntohl(a.s_addr);
    if (h == 0 || (h >> 24) == 127 || (h >> 28) >= 14)
        throw options_error("--vtep-ip '" + o.vtep_ip + "' must be a unicast address");
    o.vtep_ip_be = a.s_addr;
    if (o.uplink.empty())
        throw options_error("--uplink is required (a PCI address or a vdev such as net_af_packet0,iface=eth1)");
    const std::string dev = o.uplink.substr(0, o.uplink.find(','));
    if (!is_pci_address(dev) && dev.rfind("net_", 0) != 0)
        throw options_error("--uplink '" + o.uplink + "': expected a PCI address or a vdev name starting with net_");
    if (o.api.empty() || o.api.size() >= 108)
        throw options_error("--api: a unix socket path of 1 to 107 characters is required");
    if (!o.cpus.empty() && !std::regex_match(o.cpus, cpus_re))
        throw options_error("--cpus '" + o.cpus + "': expected a CPU list such as 0-1 or 0,2");
    if (o.store.find("://") == std::string::npos)
        throw options_error("--store '" + o.store + "': expected a URL such as file:///var/lib/overpass/store.json");
    if (log_level_value(o.log_level) == 0)
        throw options_error("--log-level '" + o.log_level + "': use error, warning, notice, info or debug");
    // IPv4 only: the exposer (prometheus-cpp's civetweb, as Debian builds it) cannot bind IPv6.
    static const std::regex listen_re(R"(^(\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}):(\d{1,5})$)");
    std::smatch m;
    if (o.metrics != "off" &&
        (!std::regex_match(o.metrics, m, listen_re) || std::stoul(m[2].str()) > 65535 ||
         inet_pton(AF_INET, m[1].str().c_str(), &a) != 1))
        throw options_error("--metrics '" + o.metrics + "': expected IPv4ADDR:PORT (127.0.0.1:9417) or off");
}

std::string affinity_cpus() {
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof(set), &set) != 0)
        return "0";
    std::string out;
    for (int c = 0; c < CPU_SETSIZE; c++) {
        if (CPU_ISSET(c, &set)) {
            if (!out.empty())
                out += ',';
            out += std::to_string(c);
        }
    }
    return out;
}

} // namespace

uint32_t log_level_value(const std::string& name) {
    static const std::pair<const char*, uint32_t> levels[] = {
        {"emerg", RTE_LOG_EMERG},     {"alert", RTE_LOG_ALERT}, {"crit", RTE_LOG_CRIT}, {"error", RTE_LOG_ERR},
        {"warning", RTE_LOG_WARNING}, {"notice", RTE_LOG_NOTICE}, {"info", RTE_LOG_INFO}, {"debug", RTE_LOG_DEBUG}};
    for (const auto& [n, v] : levels)
        if (name == n)
            return v;
    return 0;
}

bool is_pci_address(const std::string& s) {
    static const std::regex pci("([0-9a-fA-F]{4}:)?[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\\.[0-7]");
    return std::regex_match(s, pci);
}

daemon_options parse_options(int argc, char** argv) {
    daemon_options o;
    std::vector<std::string> args(argv + 1, argv + argc);
    // The config file first, so that the command line overrides it.
    for (std::size_t i = 0; i < args.size() && args[i] != "--"; i++) {
        if (args[i] == "--config") {
            if (i + 1 >= args.size())
                throw options_error("--config needs a file name");
            apply_config_file(o, args[i + 1]);
        } else if (args[i].rfind("--config=", 0) == 0) {
            apply_config_file(o, args[i].substr(9));
        }
    }
    for (std::size_t i = 0; i < args.size(); i++) {
        const std::string& a = args[i];
        if (a == "--") {
            o.eal_extra.insert(o.eal_extra.end(), args.begin() + static_cast<long>(i) + 1, args.end());
            break;
        }
        if (a == "-h") {
            o.help = true;
            continue;
        }
        if (a.rfind("--", 0) != 0)
            throw options_error("unexpected argument '" + a + "' (extra EAL arguments go after --)");
        std::string key = a.substr(2), val;
        const auto eq = key.find('=');
        const bool has_val = eq != std::string::npos;
        if (has_val) {
            val = key.substr(eq + 1);
            key.resize(eq);
        }
        if (is_flag(key)) {
            if (has_val)
                throw options_error("--" + key + " takes no value");
            set_flag(o, key, true);
            continue;
        }
        if (!takes_value(key))
            throw options_error("unknown option --" + key);
        if (!has_val) {
            if (i + 1 >= args.size())
                throw options_error("--" + key + " needs a value");
            val = args[++i];
        }
        if (key == "config")
            continue;   // applied above
        set_key(o, key, val);
    }
    validate(o);
    return o;
}

std::string uplink_devargs(const daemon_options& o) {
    // net_af_packet has one queue pair unless told otherwise; every worker needs its own.
    // (More queue pairs than workers would fan packets out to sockets nobody reads.)
    if (o.uplink.rfind("net_af_packet", 0) == 0 && o.uplink.find("qpairs=") == std::string::npos)
        return o.uplink + ",qpairs=" + std::to_string(o.workers);
    return o.uplink;
}

std::vector<std::string> eal_args(const daemon_options& o) {
    std::vector<std::string> a{"overpassd"};
    // One lcore per worker plus the main lcore, all free to float over the given CPUs:
    // instances that share a small machine then share it, and the idle back-off keeps
    // them polite. Production pins with --lcores after "--".
    bool has_lcores = false;
    for (const auto& e : o.eal_extra)
        has_lcores = has_lcores || e == "-l" || e.rfind("--lcores", 0) == 0 || e.rfind("-l", 0) == 0;
    if (!has_lcores) {
        const std::string cpus = o.cpus.empty() ? affinity_cpus() : o.cpus;
        a.push_back("--lcores=(0-" + std::to_string(o.workers) + ")@(" + cpus + ")");
    }
    a.push_back("--file-prefix=overpass-" + o.host_id);
    const std::string dev = o.uplink.substr(0, o.uplink.find(','));
    if (is_pci_address(dev)) {
        a.push_back("-a");
        a.push_back(o.uplink);
    } else {
        a.push_back("--no-pci");
        a.push_back("--vdev=" + uplink_devargs(o));
    }
    if (o.no_huge) {
        a.push_back("--no-huge");
        a.push_back("-m");
        a.push_back(std::to_string(o.memory_mb));
    }
    a.push_back("--log-level=" + o.log_level);
    a.insert(a.end(), o.eal_extra.begin(), o.eal_extra.end());
    return a;
}

const char* usage() {
    return "usage: overpassd --host-id ID --vtep-ip IPv4 --uplink DEVARGS [options] [-- EAL args]\n"
           "\n"
           "  --host-id ID        this host's name in the cluster (letters, digits, _ . -)\n"
           "  --vtep-ip IPv4      this host's VXLAN tunnel endpoint address on the underlay\n"
           "  --uplink DEVARGS    underlay port: a PCI address (0000:3b:00.0) or a vdev\n"
           "                      (net_af_packet0,iface=eth1 | net_af_xdp0,iface=eth1)\n"
           "  --store URL         cluster store: file:///PATH (default file:///var/lib/overpass/store.json),\n"
           "                      etcd://HOST:PORT[/NAMESPACE], consul[+https]://HOST:PORT[/PREFIX]\n"
           "  --store-token-file F  Consul ACL token (default: $CONSUL_HTTP_TOKEN; never in the URL)\n"
           "  --store-ca-file F   CA bundle for consul+https:// (default: the system's)\n"
           "  --api PATH          local API unix socket (default /run/overpass/overpass.sock)\n"
           "  --workers N         worker lcores (default 1)\n"
           "  --cpus LIST         CPUs the lcores may run on (default: all allowed)\n"
           "  --vxlan-port N      VXLAN UDP port (default 4789)\n"
           "  --no-huge           run without hugepages (--memory MB of heap, default 256)\n"
           "  --mbufs N           mbufs in the packet pool (default 16384)\n"
           "  --bum-rate N        frames per second a worker may send for broadcast/unknown\n"
           "                      traffic from one network's containers, copies included\n"
           "                      (default 200000; 0: no limit)\n"
           "  --replace           take over the host id even while a daemon with another VTEP\n"
           "                      holds it (default: refuse to start)\n"
           "  --no-endpoint-cache workers look every encap destination up in the endpoints\n"
           "                      table instead of their 65536-entry cache first\n"
           "  --log-level LEVEL   error, warning, notice, info (default) or debug: overpassd's\n"
           "                      messages and DPDK's (-- --log-level=pmd.net.tap:debug for one DPDK type)\n"
           "  --metrics ADDR:PORT Prometheus /metrics listener, IPv4 (default 127.0.0.1:9417; off: none)\n"
           "  --config FILE       JSON object with the same keys (\"host-id\": \"h1\", ...,\n"
           "                      \"eal-args\": [...]); command-line options override it\n";
}

} // namespace overpass::ctl
