// What /proc says of a process, for code that keeps a pid across calls: its
// start time tells a process from a later one that reused its pid.
#pragma once

#include <fstream>
#include <sstream>
#include <string>

namespace modhost::backend {

// Field 22 of /proc/PID/stat (clock ticks after boot); empty when the
// process is gone.
inline std::string process_start_time(int pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::stringstream all;
  all << in.rdbuf();
  const std::string stat = all.str();
  const auto close = stat.rfind(')');  // the name may hold spaces and ')'
  if (close == std::string::npos || close + 2 >= stat.size()) return {};
  std::istringstream fields(stat.substr(close + 2));
  std::string field;
  for (int i = 3; i <= 22 && fields >> field; ++i) {
    if (i == 22) return field;
  }
  return {};
}

}  // namespace modhost::backend
