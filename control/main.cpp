// SPDX-License-Identifier: Apache-2.0
// runs on: control thread (the DPDK main lcore); init and shutdown
//
// overpassd: parses options, brings up EAL, the tables, the workers and the uplink,
// then runs the control plane (store sync, local API, slow path) on one Asio
// io_context until SIGINT/SIGTERM, and tears everything down in reverse order.
#include <sys/stat.h>
#include <unistd.h>

#include <sys/resource.h>

#include <csignal>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <utility>   // std::exchange, used but not included by Boost 1.74's awaitable.hpp

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_ethdev.h>
#include <rte_lcore.h>
#include <rte_log.h>
#include <rte_mbuf.h>
#include <rte_pdump.h>
#include <rte_ring.h>
#include <rte_version.h>

#include "control/log.hpp"
#include "control/api/api_server.hpp"
#include "control/log.hpp"
#include "control/metrics/exporter.hpp"
#include "control/options.hpp"
#include "control/ports/port_manager.hpp"
#include "control/ports/worker_pool.hpp"
#include "control/publish/table_writer.hpp"
#include "control/slowpath.hpp"
#include "control/store/store.hpp"
#include "control/cluster/agent.hpp"

namespace asio = boost::asio;
using namespace overpass;
using namespace overpass::ctl;

namespace {


/// After rte_eal_cleanup(): removes what DPDK 22.11 leaves behind for this file prefix,
/// the hugepage files of memory still mapped at exit (<hugetlbfs>/<prefix>map_N) and the
/// runtime directory (/var/run/dpdk/<prefix>). Otherwise every run under a new host id
/// leaks hugepages until a process with the same prefix starts again.
void remove_runtime_files(const std::filesystem::path& runtime_dir) {
    const std::string prefix = runtime_dir.filename().string();
    std::error_code ec;
    if (prefix.empty())
        return;
    std::ifstream mounts("/proc/mounts");
    std::string dev, dir, type, rest;
    while (mounts >> dev >> dir >> type && std::getline(mounts, rest)) {
        if (type != "hugetlbfs")
            continue;
        for (const auto& e : std::filesystem::directory_iterator(dir, ec)) {
            const std::string name = e.path().filename().string();
            if (name.rfind(prefix + "map_", 0) == 0)
                std::filesystem::remove(e.path(), ec);
        }
    }
    std::filesystem::remove_all(runtime_dir, ec);
}

/// Fatal error after EAL initialisation.
[[noreturn]] void die(const std::string& msg) {
    std::fprintf(stderr, "overpassd: %s\n", msg.c_str());
    const std::filesystem::path runtime_dir = rte_eal_get_runtime_dir();
    rte_eal_cleanup();
    remove_runtime_files(runtime_dir);
    std::exit(1);
}

void prepare_api_dir(const std::string& api) {
    const auto dir = std::filesystem::path(api).parent_path();
    std::error_code ec;
    if (!dir.empty())
        std::filesystem::create_directories(dir, ec);
    if (ec)
        throw options_error("--api: cannot create " + dir.string() + ": " + ec.message());
}

/// What start-up built for the control plane: the store, the tables' writer, the running
/// workers and the ports, the exception ring and the packet pool.
struct data_plane {
    store& kv;
    table_writer& writer;
    worker_pool& workers;
    port_manager& ports;
    rte_ring* exceptions;
    rte_mempool* pool;
    config_snapshot cfg;
    double start_unix;   ///< for overpass_start_time_seconds
};

agent_config agent_config_of(const daemon_options& opt, uint16_t uplink_mtu) {
    agent_config a;
    a.host_id = opt.host_id;
    a.vtep_ip = opt.vtep_ip;
    a.vtep_be = opt.vtep_ip_be;
    a.vxlan_port = opt.vxlan_port;
    a.uplink_mtu = uplink_mtu;
    a.replace = opt.replace;
    return a;
}

/// Frees what the workers no longer see, every 10 ms, without blocking the control
/// thread, until the timer is cancelled.
void reclaim_periodically(asio::steady_timer& timer, table_writer& writer) {
    writer.reclaim();
    timer.expires_after(std::chrono::milliseconds(10));
    timer.async_wait([&timer, &writer](const boost::system::error_code& ec) {
        if (!ec)
            reclaim_periodically(timer, writer);
    });
}

/// The control plane proper: slow path, cluster agent (store sync), local API, until a
/// signal or a start-up failure. Everything created here is gone when it returns, before
/// the ports, workers and tables it uses are torn down.
int run_control_plane(asio::io_context& io, const daemon_options& opt, const data_plane& dp) {
    store& kv = dp.kv;
    slow_path slow(io, dp.writer, dp.exceptions, dp.pool, dp.workers.inject_ring(), dp.cfg.uplink_port,
                   dp.cfg.vtep_mac, dp.cfg.vtep_ip_be);
    slow.start();

    agent_hooks hooks;
    hooks.on_vtep_added = [&slow](rte_be32_t ip) { slow.vtep_added(ip); };
    agent ag(io, kv, dp.writer, dp.ports, agent_config_of(opt, dp.ports.uplink_mtu()), hooks);
    slow.set_resolver([&ag](uint32_t vni, const std::string& name) { return ag.sync().resolve(vni, name); });
    const stats_sources sources{&dp.workers, &dp.ports, &dp.writer, &slow, &ag, dp.pool, dp.start_unix};
    api_server api(io, ag, opt.api, [&] { return to_json(take_snapshot(sources)); });

    // Prometheus and telemetry read on their own threads through the control thread.
    const build_info info{OVERPASS_VERSION, rte_version()};
    auto source = std::make_shared<snapshot_source>(io, [&] { return take_snapshot(sources); });
    telemetry_attach(source, info);
    std::unique_ptr<metrics_server> metrics;
    if (opt.metrics != "off") {
        try {
            metrics = std::make_unique<metrics_server>(opt.metrics, source, info);
            OVP_LOG(INFO, "metrics on http://%s/metrics", opt.metrics.c_str());
        } catch (const std::exception& e) {
            std::fprintf(stderr, "overpassd: %s\n", e.what());
            source->close();
            telemetry_attach(nullptr, info);
            slow.stop();
            return 1;
        }
    }
    // Before the objects the snapshot reads go away: no reader reaches them after this.
    struct close_source {
        snapshot_source& s;
        ~close_source() { s.close(); }
    } close_on_exit{*source};

    asio::steady_timer reclaim_timer(io);
    reclaim_periodically(reclaim_timer, dp.writer);

    int exit_code = 0;
    bool stopping = false;
    asio::signal_set signals(io, SIGINT, SIGTERM);
    std::function<void()> arm_signals;
    auto shutdown = [&](const char* why) {
        if (stopping)
            return;
        stopping = true;
        OVP_LOG(INFO, "shutting down (%s)", why);
        asio::co_spawn(io, [&]() -> asio::awaitable<void> {
            api.stop();
            co_await ag.shutdown();   // detaches local endpoints, releases the session
            slow.stop();
            reclaim_timer.cancel();
            io.stop();
        }, asio::detached);
    };
    arm_signals = [&] {
        signals.async_wait([&](const boost::system::error_code& ec, int sig) {
            if (ec)
                return;
            if (stopping) {
                // A second signal while the graceful path waits (e.g. on an unreachable
                // store): leave now. Endpoints' keys then expire with the session.
                std::fprintf(stderr, "overpassd: second signal, exiting without cleanup\n");
                std::_Exit(130);
            }
            shutdown(sig == SIGINT ? "SIGINT" : "SIGTERM");
            arm_signals();
        });
    };
    arm_signals();

    asio::co_spawn(io, [&]() -> asio::awaitable<void> {
        try {
            co_await ag.start();
            api.start();
            OVP_LOG(INFO, "ready: API on %s, store %s", opt.api.c_str(), kv.url().c_str());
        } catch (const std::exception& e) {
            OVP_LOG(ERR, "start-up failed: %s", e.what());
            std::fprintf(stderr, "overpassd: %s\n", e.what());
            exit_code = 1;
            shutdown("start-up failed");
        }
    }, asio::detached);

    io.run();
    return exit_code;
}

} // namespace

int main(int argc, char** argv) {
    std::signal(SIGPIPE, SIG_IGN);   // vhost-user and API peers may go away mid-write
    // Descriptors: the hard limit, not the soft one (often 1024), so that the store's
    // connections, ports and the API's capped clients all fit.
    if (rlimit nofile{}; getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur < nofile.rlim_max) {
        nofile.rlim_cur = nofile.rlim_max;
        setrlimit(RLIMIT_NOFILE, &nofile);
    }
    const double start_unix =
        std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();

    daemon_options opt;
    try {
        opt = parse_options(argc, argv);
        if (opt.help) {
            std::fputs(usage(), stdout);
            return 0;
        }
        prepare_api_dir(opt.api);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "overpassd: %s\n", e.what());
        return 2;
    }

    // The store URL is checked before EAL takes any resource.
    asio::io_context io(1);
    std::unique_ptr<store> kv;
    try {
        kv = make_store(io, opt.store, store_options{opt.store_token_file, opt.store_ca_file});
    } catch (const std::exception& e) {
        std::fprintf(stderr, "overpassd: --store: %s\n", e.what());
        return 2;
    }

    // --- EAL ---
    std::vector<std::string> eal = eal_args(opt);
    std::vector<char*> eal_argv;
    for (auto& a : eal)
        eal_argv.push_back(a.data());
    eal_argv.push_back(nullptr);
    if (rte_eal_init(static_cast<int>(eal.size()), eal_argv.data()) < 0) {
        std::fprintf(stderr, "overpassd: EAL initialisation failed: %s\n", rte_strerror(rte_errno));
        return 1;
    }
    if (rte_lcore_count() != opt.workers + 1)
        die("EAL gave " + std::to_string(rte_lcore_count()) + " lcores; --workers " + std::to_string(opt.workers) +
            " needs " + std::to_string(opt.workers + 1));
    // Our messages and DPDK's on stderr, at --log-level (DPDK's default adds syslog).
    rte_openlog_stream(stderr);
    if (!log_init(log_level_value(opt.log_level)))
        std::fprintf(stderr, "overpassd: warning: cannot register the 'overpass' log type; logging as USER1\n");
    // dpdk-dumpcap / dpdk-pdump attach as secondary processes and capture any port.
    // Needs the shared memory of a hugepage run; without it capture is unavailable.
    const bool pdump = rte_pdump_init() == 0;
    if (!pdump)
        OVP_LOG(NOTICE, "packet capture (dpdk-dumpcap) unavailable: %s", rte_strerror(rte_errno));
    OVP_LOG(INFO, "overpassd %s (%s) host %s VTEP %s", OVERPASS_VERSION, rte_version(),
            opt.host_id.c_str(), opt.vtep_ip.c_str());

    rte_mempool* pool = rte_pktmbuf_pool_create("ovp_mbufs", opt.mempool_mbufs, 256, 0, RTE_MBUF_DEFAULT_BUF_SIZE,
                                                static_cast<int>(rte_socket_id()));
    if (pool == nullptr)
        die(std::string("cannot create the mbuf pool: ") + rte_strerror(rte_errno));
    rte_ring* exceptions = rte_ring_create("ovp_exceptions", 1024, static_cast<int>(rte_socket_id()),
                                           RING_F_SC_DEQ);
    if (exceptions == nullptr)
        die(std::string("cannot create the exception ring: ") + rte_strerror(rte_errno));

    std::unique_ptr<table_writer> writer = table_writer::create("ovp", table_limits{});
    if (!writer)
        die("cannot create the tables (see the log above)");

    std::optional<worker_pool> workers;
    std::optional<port_manager> ports;
    try {
        workers.emplace(writer->tables(), pool, exceptions);
        ports.emplace(*workers, *writer, pool, opt.host_id);
        ports->open_uplink(opt.uplink);
    } catch (const std::exception& e) {
        ports.reset();
        workers.reset();
        die(e.what());
    }

    config_snapshot cfg{};
    cfg.uplink_port = ports->uplink();
    rte_eth_macaddr_get(cfg.uplink_port, &cfg.vtep_mac);
    cfg.vtep_ip_be = opt.vtep_ip_be;
    cfg.vxlan_port_be = rte_cpu_to_be_16(opt.vxlan_port);
    cfg.uplink_mtu = ports->uplink_mtu();
    cfg.bum_frames_per_sec = opt.bum_rate;
    if (int rc = writer->set_config(cfg); rc < 0)
        die(std::string("cannot publish the configuration: ") + rte_strerror(-rc));

    workers->use_endpoint_cache(!opt.no_endpoint_cache);
    workers->launch();

    const int exit_code =
        run_control_plane(io, opt, data_plane{*kv, *writer, *workers, *ports, exceptions, pool, cfg, start_unix});
    telemetry_attach(nullptr, {});

    workers->stop();
    ports->close_all();
    writer->synchronize();
    ports.reset();
    workers.reset();
    writer.reset();
    void* left = nullptr;
    while (rte_ring_dequeue(exceptions, &left) == 0)
        rte_pktmbuf_free(static_cast<rte_mbuf*>(left));
    rte_ring_free(exceptions);
    rte_mempool_free(pool);
    if (pdump)
        rte_pdump_uninit();
    const std::filesystem::path runtime_dir = rte_eal_get_runtime_dir();
    rte_eal_cleanup();
    remove_runtime_files(runtime_dir);
    return exit_code;
}
