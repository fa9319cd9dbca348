// SPDX-License-Identifier: Apache-2.0
// runs on: control thread
//
// The sync engine: watches the store prefix, keeps the store's current key/value view,
// rebuilds from it what this host's tables should hold (networks, remote VTEPs, remote
// endpoints) and applies the difference to the table_writer in dependency order:
//   removals:  endpoints -> networks -> VTEPs
//   additions: VTEPs -> networks -> endpoints
// Endpoints of this host belong to the agent (they are bound to ports) and are skipped;
// networks are programmed on every host, so decap knows every VNI.
// Unparseable records are skipped and counted; a failed table call is counted and
// retried on the next batch (the applied state only records what succeeded).
#pragma once

#include <chrono>
#include <compare>
#include <functional>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <span>
#include <string>

#include "control/publish/table_writer.hpp"
#include "control/store/store.hpp"

namespace overpass::ctl {

struct remote_endpoint {
    rte_ether_addr mac;
    rte_be32_t vtep_be;
    bool operator==(const remote_endpoint& o) const noexcept;
};

bool operator==(const network_spec& a, const network_spec& b) noexcept;

/// What the tables should contain (or, for the applied copy, what they do contain).
struct desired_state {
    std::map<uint32_t, network_spec> networks;                           ///< by VNI
    std::set<rte_be32_t> vteps;
    std::map<std::pair<uint32_t, rte_be32_t>, remote_endpoint> endpoints;  ///< by (VNI, IP)
    /// Every endpoint's name (this host's too), lower case, by (VNI, name): what the
    /// embedded DNS answers. Not programmed into the tables.
    std::map<std::pair<uint32_t, std::string>, rte_be32_t> names;
    /// Network names by VNI (for metrics labels). Not programmed into the tables.
    std::map<uint32_t, std::string> network_names;
};

struct sync_identity {
    std::string host_id;
    rte_be32_t vtep_be = 0;
};

/// The store as the sync engine sees it: every record by key.
using store_view = std::map<std::string, kv_item>;

/// Pure: the state the tables should hold for a store view. Unparseable records are
/// skipped, and so are records that conflict with one there first: a network asking for
/// a VNI that another network holds, an endpoint with a MAC that another endpoint of
/// its network holds (this host's endpoints hold theirs whatever their age). `problems`
/// receives one line per skipped record.
desired_state build_desired(const store_view& kv, const sync_identity& self, std::vector<std::string>& problems);

/// Moves the tables (and `applied`) toward `want`, in dependency order. Returns the number
/// of table_writer calls that failed (those entries stay out of `applied`, so the next
/// call retries them).
unsigned apply_diff(desired_state& applied, const desired_state& want, table_writer& tw);

struct sync_counters {
    uint64_t applied_revision = 0;
    uint64_t store_errors = 0;      ///< failed store reads (the watch retries by itself)
    uint64_t table_errors = 0;      ///< failed table calls (retried)
    uint64_t skipped_records = 0;   ///< unparseable records seen
    uint64_t snapshots = 0;
    uint64_t batches = 0;
};

class sync_engine {
public:
    /// `on_vtep_added` (optional) runs after a remote VTEP entered the tables, so that the
    /// caller can start resolving its next-hop MAC.
    /// `on_vtep_added`: a remote VTEP entered the tables. `on_network_added`: a network
    /// entered the tables (again): the tables hold none of this host's endpoints in it.
    sync_engine(table_writer& tw, sync_identity self, std::function<void(rte_be32_t)> on_vtep_added = {},
                std::function<void(uint32_t)> on_network_added = {});

    /// Starts watching `prefix` (default: the whole overpass/v1/ tree).
    void start(store& st, std::string prefix = std::string(keys_root()));
    void stop();

    /// Watch callbacks (public for tests).
    void on_snapshot(const kv_snapshot& snap);
    void on_changes(std::span<const kv_delta> deltas, uint64_t revision);
    void on_error(const std::string& what);

    const sync_counters& counters() const noexcept { return counters_; }
    const desired_state& applied() const noexcept { return applied_; }
    /// Re-applies the current view (after failed table updates; cheap when nothing changed).
    void retry();
    /// The address of endpoint `name` (case-insensitive) in network `vni`, from the
    /// current store view.
    std::optional<rte_be32_t> resolve(uint32_t vni, const std::string& name) const;
    /// Some table updates failed at the last reconcile and are waiting for retry().
    bool retry_pending() const noexcept { return retry_pending_; }
    /// The watch has delivered a view and its last read succeeded.
    bool store_up() const noexcept { return counters_.snapshots != 0 && !store_failing_; }
    /// When the last snapshot or change batch was applied (epoch if never).
    std::chrono::steady_clock::time_point last_sync() const noexcept { return last_sync_; }
    /// Network names by VNI, from the last reconcile.
    const std::map<uint32_t, std::string>& network_names() const noexcept { return network_names_; }

private:
    static std::string_view keys_root();
    void reconcile(uint64_t revision);
    void log_limited(const std::string& line);

    table_writer& tw_;
    sync_identity self_;
    std::function<void(rte_be32_t)> on_vtep_added_;
    std::function<void(uint32_t)> on_network_added_;
    uint64_t revision_ = 0;
    bool retry_pending_ = false;
    bool store_failing_ = false;   ///< errors since the last snapshot or change batch
    std::map<std::pair<uint32_t, std::string>, rte_be32_t> names_;   ///< from the last reconcile
    std::map<uint32_t, std::string> network_names_;                  ///< from the last reconcile
    std::chrono::steady_clock::time_point last_sync_{};
    store_view view_;
    desired_state applied_;
    sync_counters counters_;
    std::unique_ptr<watch_handle> watch_;
    std::set<std::string> reported_;   // problems already logged (log each once)
    int64_t log_window_ = 0;
    unsigned logged_in_window_ = 0;
};

} // namespace overpass::ctl
