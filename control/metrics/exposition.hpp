// SPDX-License-Identifier: Apache-2.0
// runs on: any thread (pure functions of a snapshot)
//
// The Prometheus families overpassd exposes, built from one stats_snapshot. Naming
// follows Prometheus conventions: overpass_ prefix, base units (bytes, seconds),
// _total for counters, one family per quantity with labels for the dimensions.
// docs/metrics.md lists every family; a unit test keeps the two in step.
#pragma once

#include <string>
#include <vector>

#include <prometheus/metric_family.h>

#include "control/metrics/snapshot.hpp"

namespace overpass::ctl {

struct build_info {
    std::string version;        ///< overpass
    std::string dpdk_version;   ///< rte_version()
};

std::vector<prometheus::MetricFamily> to_families(const stats_snapshot& s, const build_info& b);

/// The text exposition format (what GET /metrics answers).
std::string to_text(const std::vector<prometheus::MetricFamily>& families);

} // namespace overpass::ctl
