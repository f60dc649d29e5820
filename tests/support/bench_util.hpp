// What the engine benchmarks share: rounds of a body timed in milliseconds,
// their median, a table row with the ratio to a baseline, and stopping at
// the first failed step.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <vector>

#include "support/process_util.hpp"

namespace modhost::test {

inline double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

// Milliseconds each of `n` rounds of `body` took.
inline std::vector<double> rounds(int n, const std::function<void()>& body) {
  std::vector<double> out;
  for (int i = 0; i < n; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    body();
    out.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  return out;
}

inline void must(const CommandResult& r, const char* what) {
  if (r.exit_code != 0) {
    std::fprintf(stderr, "%s failed (%d): %s%s\n", what, r.exit_code, r.out.c_str(), r.err.c_str());
    std::exit(1);
  }
}

// | what | ours | baseline | ours/baseline |; no baseline: the last two empty.
inline void row(const char* what, double ours, double base) {
  if (base > 0)
    std::printf("| %-58s | %9.1f ms | %9.1f ms | %6.3fx |\n", what, ours, base, ours / base);
  else
    std::printf("| %-58s | %9.1f ms | %12s | %8s |\n", what, ours, "", "");
}

}  // namespace modhost::test
