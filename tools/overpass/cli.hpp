// SPDX-License-Identifier: Apache-2.0
// runs on: the overpass CLI process (not the daemon)
#pragma once

#include <ostream>
#include <string>
#include <vector>

namespace overpass::cli {

inline constexpr const char* default_host = "unix:///run/overpass/overpass.sock";

/// The whole CLI: `args` excludes argv[0]; `env_host` is $OVERPASS_HOST or empty.
/// Output on `out`, errors as one line "overpass: <message>" on `err`. Returns the exit code.
int run(const std::vector<std::string>& args, const std::string& env_host, std::ostream& out, std::ostream& err);

} // namespace overpass::cli
