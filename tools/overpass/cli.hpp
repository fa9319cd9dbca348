// SPDX-License-Identifier: Apache-2.0
// runs on: the overpass CLI process (not the daemon)
#pragma once

#include <cstdint>
#include <ostream>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace overpass::cli {

inline constexpr const char* default_host = "unix:///run/overpass/overpass.sock";

/// The whole CLI: `args` excludes argv[0]; `env_host` is $OVERPASS_HOST or empty.
/// Output on `out`, errors as one line "overpass: <message>" on `err`. Returns the exit code.
/// `out_is_tty`: `out` is a terminal (stats --watch then redraws the screen in place).
int run(const std::vector<std::string>& args, const std::string& env_host, std::ostream& out, std::ostream& err,
        bool out_is_tty = false);

/// The `overpass stats` table for one GET /v1/stats answer `cur`. Tolerates missing or
/// mistyped sections and fields ("-" in their cells). `interval_seconds` > 0 is watch
/// mode: rate columns (pps, bit/s, drops/s) are added, computed against the previous
/// sample `prev` taken that many seconds earlier, and busy % is over the interval; with
/// `prev` null (first sample) the rate cells are "-" and busy % is cumulative.
std::string render_stats(const nlohmann::json& cur, const nlohmann::json& prev, double interval_seconds);

/// Human-friendly numbers for the table: 999, 1.2k, 12.3M; 512 B, 12.5 MB; 3.4 Mbit/s.
std::string human_count(double v);
std::string human_bytes(double v);
std::string human_bits_per_second(double v);

} // namespace overpass::cli
