// The native backend's parts, as its member functions (native_backend.cpp,
// native_exec.cpp, native_artifacts.cpp, native_recovery.cpp) share them:
// the state on disk, the cgroups, the launcher and the image store. Each
// part is its own file; this only composes them.
#pragma once

#include <boost/json/value.hpp>
#include <chrono>
#include <filesystem>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "backends/common.hpp"
#include "backends/native/cgroups.hpp"
#include "backends/native/image_store.hpp"
#include "backends/native/launcher.hpp"
#include "backends/native/native_backend.hpp"
#include "backends/native/processes.hpp"
#include "backends/native/records.hpp"
#include "backends/native/state.hpp"
#include "backends/native/support.hpp"

namespace modhost::backend {

struct NativeBackend::Impl {
  NativeOptions options;
  native::Cgroups cgroups;
  native::State state{cgroups};
  native::Launcher launcher{state, cgroups};
  bool overlay = true;      // rootfs as an overlay of the layers, else a copy
  std::mutex mutex;         // this process's mutations
  std::mutex global_mutex;  // subnet allocation (all scopes)
  std::mutex images_mutex;
  std::unique_ptr<native::ImageStore> images;

  Result<native::ImageStore*> image_store();

  // Deletes links (see native::delete_links) with this backend's helper.
  Status delete_links(std::vector<std::string> links, bool detached);

  // Everything of a service but its directory's removal: processes, rootfs
  // mount, exec socket, cgroup, veth. The veth is deleted at once, or added
  // to `links` for the caller to delete.
  Status teardown(const std::string& eid, const std::string& name, std::vector<std::string>* links = nullptr);

  Status remove_service_locked(const std::string& eid, const std::string& name, const std::string& kind,
                               std::vector<std::string>* links = nullptr);
  Status remove_enclave_locked(const EnclaveInfo& e, bool detached);
};

// The short names the backend's files use (this header is theirs alone).
namespace fs = std::filesystem;
namespace json = boost::json;
using namespace std::chrono_literals;
using native::alive;
using native::Cgroups;
using native::DirLock;
using native::ImageStore;
using native::kill_cgroup_member;
using native::last_words;
using native::num;
using native::parse_json_file;
using native::read_file;
using native::Records;
using native::signal_process;
using native::str;
using native::write_file_atomic;

}  // namespace modhost::backend
