// modhost-netshaper's life: bind the queues a config names, hold packets for
// their sampled delay (or drop them), follow reloads, and leave every packet
// with a verdict on the way out.
#pragma once

#include <string>

namespace modhost::netshaper {

struct Options {
  std::string config_path;
  std::string pid_file;
  std::string applied_file;
};

// Exit codes.
inline constexpr int kExitOk = 0;            // SIGTERM/SIGINT, or no namespace left
inline constexpr int kExitRuntimeError = 1;  // the loop itself failed (poll, signalfd)
inline constexpr int kExitStartError = 2;    // bad arguments or config, cannot enter or bind

// One line on stderr: "modhost-netshaper: LINE".
void log_line(const std::string& line);

// Runs until SIGTERM/SIGINT or until no namespace is left; returns the exit
// code. Throws nothing but std::bad_alloc.
int run(const Options& options);

}  // namespace modhost::netshaper
