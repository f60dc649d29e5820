// What one scope of the native backend holds on this machine, as the kernel
// and the file system see it, without asking the backend: enclave
// directories, mounts under the state directory, cgroups, links labelled
// with the scope (their alias), per-scope iptables rules. Tests assert that
// this is empty when they are done.
#pragma once

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace modhost::test {

// Where a scope's cgroups are: modhost/SCOPE under each v1 hierarchy, or
// under the v2 root.
inline constexpr const char* kNativeCgroupRoots[] = {"/sys/fs/cgroup/memory",  "/sys/fs/cgroup/pids",
                                                     "/sys/fs/cgroup/freezer", "/sys/fs/cgroup/cpu",
                                                     "/sys/fs/cgroup/devices", "/sys/fs/cgroup"};

// Links whose alias labels them with the scope (the bridges of its enclaves).
inline std::vector<std::string> native_scope_links(const std::string& scope) {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& l : std::filesystem::directory_iterator("/sys/class/net", ec)) {
    std::ifstream alias(l.path() / "ifalias");
    std::string a;
    std::getline(alias, a);
    if (a.rfind("modhost " + scope + " ", 0) == 0) out.push_back(l.path().filename().string());
  }
  return out;
}

inline std::vector<std::string> native_leftovers(const std::string& state_dir, const std::string& scope,
                                                 bool count_state_dir = false) {
  namespace fs = std::filesystem;
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(state_dir + "/enclaves", ec)) {
    out.push_back("enclave directory " + e.path().filename().string());
  }
  // `clean --all` of a scope with nothing left removes its directory too.
  if (count_state_dir && fs::exists(state_dir)) out.push_back("state directory " + state_dir);
  std::ifstream mi("/proc/self/mountinfo");
  for (std::string line; std::getline(mi, line);) {
    std::istringstream in(line);
    std::string id, parent, dev, root, mount;
    in >> id >> parent >> dev >> root >> mount;
    if (mount.rfind(state_dir + "/", 0) == 0) out.push_back("mount " + mount);
  }
  for (const char* hierarchy : kNativeCgroupRoots) {
    const std::string base = std::string(hierarchy) + "/modhost/" + scope;
    for (const auto& c : fs::directory_iterator(base, ec)) {
      if (c.is_directory()) out.push_back("cgroup " + c.path().string());
    }
    if (fs::exists(base)) out.push_back("cgroup " + base);
  }
  for (const auto& l : native_scope_links(scope)) out.push_back("link " + l);
  if (FILE* p = ::popen("iptables -w -S FORWARD 2>/dev/null", "r")) {
    char buf[1024];
    while (std::fgets(buf, sizeof buf, p)) {
      if (std::string(buf).find("modhost " + scope + " ") != std::string::npos)
        out.push_back(std::string("iptables rule ") + buf);
    }
    ::pclose(p);
  }
  return out;
}

// The same once the bridges of removed enclaves are gone: the backend hands
// their deletion to a helper (the kernel takes tens of milliseconds per
// bridge). Waits at most 5 s while links are all that is left.
inline std::vector<std::string> native_leftovers_settled(const std::string& state_dir,
                                                         const std::string& scope,
                                                         bool count_state_dir = false) {
  std::vector<std::string> left;
  for (int attempt = 0; attempt < 250; ++attempt) {
    left = native_leftovers(state_dir, scope, count_state_dir);
    bool only_links = !left.empty();
    for (const auto& l : left) only_links = only_links && l.rfind("link ", 0) == 0;
    if (!only_links) return left;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return left;
}

}  // namespace modhost::test
