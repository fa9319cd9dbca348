// SPDX-License-Identifier: Apache-2.0
// runs on: the overpass CLI process
#include <cstdlib>
#include <iostream>

#include <unistd.h>

#include "tools/overpass/cli.hpp"

int main(int argc, char** argv) {
    const char* env = std::getenv("OVERPASS_HOST");
    return overpass::cli::run(std::vector<std::string>(argv + 1, argv + argc), env != nullptr ? env : "",
                              std::cout, std::cerr, isatty(STDOUT_FILENO) == 1);
}
