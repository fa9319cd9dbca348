// SPDX-License-Identifier: Apache-2.0
// runs on: init only
//
// overpassd's command line and JSON config file. Parsing throws options_error with a
// one-line message naming what is wrong; main prints it and exits non-zero before
// anything is started.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace overpass::ctl {

struct options_error : std::runtime_error {
    using std::runtime_error::runtime_error;
};

struct daemon_options {
    std::string host_id;
    std::string vtep_ip;                 ///< dotted quad
    uint32_t vtep_ip_be = 0;
    std::string uplink;                  ///< devargs: PCI address or vdev
    std::string store = "file:///var/lib/overpass/store.json";
    std::string api = "/run/overpass/overpass.sock";
    std::string store_token_file;        ///< consul:// ACL token (else CONSUL_HTTP_TOKEN)
    std::string store_ca_file;           ///< consul+https:// CA bundle (else the system's)
    unsigned workers = 1;
    bool no_huge = false;
    bool no_endpoint_cache = false;      ///< workers' encap endpoint cache off
    bool replace = false;                ///< take over a host id another VTEP holds
    uint16_t vxlan_port = 4789;
    std::string cpus;                    ///< CPUs the lcores may run on ("0-1"); empty: our affinity
    unsigned mempool_mbufs = 16384;
    unsigned memory_mb = 256;            ///< with --no-huge
    unsigned bum_rate = 200000;          ///< head-end replication frames per second per worker; 0 = no limit
    std::string log_level = "info";
    std::string metrics = "127.0.0.1:9417";   ///< Prometheus listener, or "off"
    std::vector<std::string> eal_extra;  ///< after "--"
    bool help = false;
};

/// Parses argv (argv[0] ignored). A --config FILE is applied first, then the other
/// command-line options override it.
daemon_options parse_options(int argc, char** argv);

/// Usage text.
const char* usage();

/// EAL argument vector built from the options: never probes PCI unless the uplink is
/// a PCI address (then only that one), file prefix unique per host id.
std::vector<std::string> eal_args(const daemon_options& o);

/// The uplink's devargs as given to EAL (queue counts filled in where a PMD needs them).
std::string uplink_devargs(const daemon_options& o);

/// rte_log level (RTE_LOG_ERR...) of a --log-level name; 0 if unknown.
uint32_t log_level_value(const std::string& name);

/// True when s looks like a PCI address (0000:00:04.0 or 00:04.0).
bool is_pci_address(const std::string& s);

} // namespace overpass::ctl
