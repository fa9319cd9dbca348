// SPDX-License-Identifier: Apache-2.0
// runs on: control thread
//
// Sums the workers' single-writer counters into one snapshot (for the API's /v1/stats,
// `overpass stats`, and later the Prometheus collector and telemetry).
#pragma once

#include <nlohmann/json.hpp>

#include "control/ports/port_manager.hpp"
#include "control/ports/workers.hpp"
#include "control/publish/table_writer.hpp"
#include "control/slowpath.hpp"

namespace overpass::ctl {

nlohmann::json collect_stats(const worker_pool& workers, const port_manager& ports, const table_writer& writer,
                             const slow_path* slow);

} // namespace overpass::ctl
