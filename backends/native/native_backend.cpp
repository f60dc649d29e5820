#include "backends/native/native_backend.hpp"

#include <poll.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <boost/json.hpp>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <thread>

#include "backends/config_json.hpp"
#include "backends/confinement.hpp"
#include "backends/native/native_impl.hpp"
#include "backends/native/netlink.hpp"
#include "backends/native/network.hpp"
#include "backends/native/processes.hpp"
#include "backends/native/rootfs.hpp"
#include "backends/native/security.hpp"
#include "backends/net.hpp"
#include "backends/readiness.hpp"

namespace modhost::backend {
namespace {

// rm -rf, retried: a shim that is ending may still write its exit record
// into the directory meanwhile.
Status remove_tree(const std::string& path, const std::string& what) {
  std::error_code ec;
  for (int attempt = 0; attempt < 20; ++attempt) {
    ec.clear();
    fs::remove_all(path, ec);
    if (!ec && !fs::exists(path)) return ok_status();
    std::this_thread::sleep_for(10ms);
  }
  return Error(ErrorCode::internal, "cannot remove " + what + ": " + ec.message());
}

}  // namespace

// --- The parts ------------------------------------------------------------------

Result<ImageStore*> NativeBackend::Impl::image_store() {
  std::lock_guard lock(images_mutex);
  if (!images) {
    MODHOST_ASSIGN_OR_RETURN(images, ImageStore::open(options.image_dir));
  }
  return images.get();
}

Status NativeBackend::Impl::delete_links(std::vector<std::string> links, bool detached) {
  return native::delete_links(std::move(links), detached, launcher.spawn_binary);
}

Status NativeBackend::Impl::teardown(const std::string& eid, const std::string& name,
                                     std::vector<std::string>* links) {
  const std::string dir = state.service_dir(eid, name);
  const std::string id = str(state.service_state(eid, name), "id");
  launcher.stop_processes(eid, name, 0ms, false);
  if (::umount2((dir + "/rootfs").c_str(), MNT_DETACH) != 0 && errno != EINVAL && errno != ENOENT) {
    return Error(ErrorCode::internal, "cannot unmount the rootfs of '" + name + "': " + std::strerror(errno));
  }
  if (!id.empty()) {
    ::unlink(state.ctl_socket(id).c_str());
    // A service whose start was cut short (the host process killed) has
    // processes but no record of them: its cgroup knows them all.
    for (int attempt = 0; attempt < 200; ++attempt) {
      const auto pids = cgroups.pids(state.cgroup_of(id));
      if (pids.empty()) break;
      if (cgroups.frozen(state.cgroup_of(id))) (void)cgroups.freeze(state.cgroup_of(id), false);
      for (int p : pids) kill_cgroup_member(p, state.cgroup_of(id));
      std::this_thread::sleep_for(5ms);
    }
    MODHOST_TRY(cgroups.remove(state.cgroup_of(id)));
    const std::string veth = native::veth_name(id);
    if (links) {
      links->push_back(veth);
    } else {
      MODHOST_TRY(native::netlink::delete_link(veth));
    }
  }
  return ok_status();
}

Status NativeBackend::Impl::remove_service_locked(const std::string& eid, const std::string& name,
                                                  const std::string& kind, std::vector<std::string>* links) {
  MODHOST_TRY(teardown(eid, name, links));
  MODHOST_TRY(remove_tree(state.service_dir(eid, name), "the files of service '" + name + "'"));
  state.write_hosts(eid);
  state.event(eid, kind.empty() ? "service" : kind, name, "destroy");
  return ok_status();
}

Status NativeBackend::Impl::remove_enclave_locked(const EnclaveInfo& e, bool detached) {
  std::vector<std::string> links;
  for (const auto& name : state.service_names(e.id)) {
    MODHOST_TRY(remove_service_locked(e.id, name, str(state.service_state(e.id, name), "kind"), &links));
  }
  // Services half-made by a crash have a directory but no service.json.
  std::error_code ec;
  for (const auto& d : fs::directory_iterator(state.enclave_dir(e.id) + "/services", ec)) {
    (void)::umount2((d.path() / "rootfs").c_str(), MNT_DETACH);
  }
  links.push_back(native::bridge_name(e.id));
  MODHOST_TRY(delete_links(std::move(links), detached));
  MODHOST_TRY(remove_tree(state.enclave_dir(e.id), "the files of enclave '" + e.name + "'"));
  return ok_status();
}

NativeBackend::NativeBackend(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
NativeBackend::~NativeBackend() = default;

const std::string& NativeBackend::state_dir() const { return impl_->state.root; }

Result<std::unique_ptr<NativeBackend>> NativeBackend::create(const NativeOptions& options) {
  auto impl = std::make_unique<Impl>();
  impl->options = options;
  auto env = [](const char* name, const char* fallback) {
    const char* v = std::getenv(name);
    return std::string(v && *v ? v : fallback);
  };
  if (impl->options.runtime_dir.empty())
    impl->options.runtime_dir = env("MODHOST_NATIVE_DIR", "/run/modhost/native");
  if (impl->options.image_dir.empty())
    impl->options.image_dir = env("MODHOST_NATIVE_IMAGES", "/var/lib/modhost/native");
  if (impl->options.scope.empty()) impl->options.scope = env("MODHOST_SCOPE", "");
  if (impl->options.helper_dir.empty()) {
    impl->options.helper_dir = env("MODHOST_NATIVE_HELPERS", "");
    if (impl->options.helper_dir.empty()) {
      std::error_code ec;
      impl->options.helper_dir = fs::read_symlink("/proc/self/exe", ec).parent_path().string();
    }
  }
  if (::geteuid() != 0) {
    return Error(
        ErrorCode::failed_precondition,
        "the native backend makes containers itself and needs root; run as root or use --backend docker");
  }
  impl->launcher.spawn_binary = impl->options.helper_dir + "/modhost-spawn";
  impl->launcher.init_binary = impl->options.helper_dir + "/modhost-init";
  for (const auto& b : {impl->launcher.spawn_binary, impl->launcher.init_binary}) {
    if (::access(b.c_str(), X_OK) != 0) {
      return Error(ErrorCode::failed_precondition,
                   "the native backend's helper " + b +
                       " is missing; install modhost completely or set "
                       "MODHOST_NATIVE_HELPERS to the directory of modhost-spawn and modhost-init");
    }
  }
  MODHOST_ASSIGN_OR_RETURN(impl->cgroups, native::Cgroups::detect());
  impl->state.runtime = impl->options.runtime_dir;
  // overlayfs when the kernel has it (MODHOST_NATIVE_ROOTFS=copy asks for
  // copies anyway).
  impl->overlay = read_file("/proc/filesystems").find("\toverlay\n") != std::string::npos &&
                  env("MODHOST_NATIVE_ROOTFS", "overlay") != "copy";
  const std::string scope = impl->options.scope.empty() ? "_" : impl->options.scope;
  if (!valid_name(scope) && scope != "_") {
    return Error(ErrorCode::invalid_argument, "scope '" + scope + "' is not a valid name");
  }
  impl->state.scope = impl->options.scope;
  impl->state.root = impl->state.runtime + "/" + scope;
  std::error_code ec;
  fs::create_directories(impl->state.root + "/enclaves", ec);
  fs::create_directories(impl->state.runtime + "/sock", ec);
  if (ec)
    return Error(ErrorCode::failed_precondition, "cannot make " + impl->state.root + ": " + ec.message());
  ::chmod(impl->state.runtime.c_str(), 0700);
  return std::unique_ptr<NativeBackend>(new NativeBackend(std::move(impl)));
}

// --- Enclaves -----------------------------------------------------------------

Result<EnclaveInfo> NativeBackend::create_enclave(std::string_view name_in) {
  std::string name(name_in);
  if (name.empty()) name = "enclave-" + random_hex(6);
  if (!valid_name(name)) {
    return Error(ErrorCode::invalid_argument,
                 "invalid enclave name '" + name + "': use letters, digits, '-', '_' and '.' (at most 63)");
  }
  DirLock lock(impl_->mutex, impl_->state.root + "/.lock");
  for (const auto& e : impl_->state.all_enclaves()) {
    if (e.name == name)
      return Error(ErrorCode::already_exists, "an enclave named '" + name + "' already exists");
  }
  EnclaveInfo e;
  e.id = random_hex(32);
  e.name = name;
  e.created = now_rfc3339();
  e.status = EnclaveStatus::empty;
  const std::string dir = impl_->state.enclave_dir(e.id);
  std::error_code ec;
  fs::create_directories(dir + "/services", ec);
  fs::create_directories(dir + "/artifacts", ec);
  if (ec) return Error(ErrorCode::internal, "cannot make " + dir + ": " + ec.message());
  // The subnet is chosen and written under the lock of every scope.
  {
    DirLock global(impl_->global_mutex, impl_->state.runtime + "/.subnets.lock");
    auto subnet = native::allocate_subnet(impl_->state.used_subnets());
    if (!subnet.ok()) {
      fs::remove_all(dir, ec);
      return subnet.error();
    }
    e.subnet = subnet->first;
    e.gateway = subnet->second;
    json::object state{{"id", e.id},         {"name", e.name},       {"created", e.created},
                       {"subnet", e.subnet}, {"gateway", e.gateway}, {"state", "creating"}};
    MODHOST_TRY(write_file_atomic(dir + "/enclave.json", json::serialize(state)));
  }
  const std::string bridge = native::bridge_name(e.id);
  Status s = native::make_bridge(bridge, impl_->state.link_label(e.id), e.gateway);
  if (s.ok()) s = native::ensure_forward_rule();
  if (!s.ok()) {
    (void)native::netlink::delete_link(native::bridge_name(e.id));
    fs::remove_all(dir, ec);
    return s.error().context("cannot create enclave '" + name + "'");
  }
  impl_->state.write_hosts(e.id);
  json::object state{{"id", e.id},         {"name", e.name},       {"created", e.created},
                     {"subnet", e.subnet}, {"gateway", e.gateway}, {"state", "ready"}};
  MODHOST_TRY(write_file_atomic(dir + "/enclave.json", json::serialize(state)));
  return e;
}

Result<std::vector<EnclaveInfo>> NativeBackend::list_enclaves() {
  std::vector<EnclaveInfo> out;
  for (auto& e : impl_->state.all_enclaves()) {
    if (e.complete) out.push_back(std::move(e));
  }
  return out;
}

Result<EnclaveInfo> NativeBackend::find_enclave(std::string_view id_or_name) {
  return impl_->state.resolve_enclave(id_or_name);
}

Status NativeBackend::stop_enclave(std::string_view enclave_id) {
  MODHOST_ASSIGN_OR_RETURN(EnclaveInfo e, find_enclave(enclave_id));
  DirLock lock(impl_->mutex, impl_->state.root + "/.lock");
  for (const auto& name : impl_->state.service_names(e.id)) {
    if (impl_->state.service_info(e.id, name).status == ServiceStatus::running ||
        impl_->state.service_info(e.id, name).status == ServiceStatus::paused) {
      impl_->launcher.stop_processes(e.id, name, 2000ms, true);
      impl_->state.event(e.id, str(impl_->state.service_state(e.id, name), "kind"), name, "stop");
    }
  }
  return ok_status();
}

Status NativeBackend::remove_enclave(std::string_view enclave_id, bool force) {
  MODHOST_ASSIGN_OR_RETURN(EnclaveInfo e, impl_->state.resolve_enclave(enclave_id));
  DirLock lock(impl_->mutex, impl_->state.root + "/.lock");
  if (!force && impl_->state.enclave_status(e.id) == EnclaveStatus::running) {
    return Error(ErrorCode::failed_precondition,
                 "enclave '" + e.name + "' has running services; stop it first or use -f");
  }
  return impl_->remove_enclave_locked(e, /*detached=*/true);
}

// --- Services -------------------------------------------------------------------

Result<ServiceInfo> NativeBackend::add_service(std::string_view enclave_id, const ServiceConfig& config_in) {
  ServiceConfig config = config_in;
  MODHOST_ASSIGN_OR_RETURN(EnclaveInfo e, find_enclave(enclave_id));
  const std::string ctx = "failed to start service '" + config.name + "' in enclave '" + e.name + "'";
  if (!e.complete) {
    return Error(ErrorCode::failed_precondition,
                 ctx + ": the enclave is half-made; 'modhost clean' removes it");
  }
  if (!valid_name(config.name)) {
    return Error(ErrorCode::invalid_argument, "invalid service name '" + config.name +
                                                  "': use letters, digits, '-', '_' and '.' (at most 63)");
  }
  if (config.kind != "service" && config.kind != "module" && config.kind != "helper") {
    return Error(ErrorCode::invalid_argument, ctx + ": unknown kind '" + config.kind + "'");
  }
  for (const auto& p : config.ports) {
    if (p.protocol != "tcp" && p.protocol != "udp") {
      return Error(ErrorCode::invalid_argument,
                   ctx + ": port '" + p.name + "' has protocol '" + p.protocol + "'; use tcp or udp");
    }
    if (p.number == 0)
      return Error(ErrorCode::invalid_argument, ctx + ": invalid port spec '" + p.name + "'");
  }
  for (const auto& b : config.binds) {
    if (b.source.empty() || b.source[0] != '/' || b.target.empty() || b.target[0] != '/') {
      return Error(ErrorCode::invalid_argument, ctx + ": bind mount paths must be absolute");
    }
  }
  for (const auto& c : config.cap_add) {
    if (native::capability(c) < 0)
      return Error(ErrorCode::invalid_argument, ctx + ": unknown capability '" + c + "'");
  }
  if (auto confined = backend::confinement(config); !confined.ok()) {
    return Error(ErrorCode::invalid_argument, ctx + ": " + confined.error().message());
  }
  if (!config.network_of.empty() && !config.ports.empty()) {
    return Error(ErrorCode::invalid_argument, ctx + ": a service in another's network publishes no ports");
  }
  if (!backend::valid_user(config.user)) {
    return Error(ErrorCode::invalid_argument,
                 ctx + ": bad user '" + config.user + "': expected USER[:GROUP], each a number or a name");
  }
  MODHOST_ASSIGN_OR_RETURN(ImageStore * store, impl_->image_store());
  auto image = store->find(config.image);
  if (!image.ok()) {
    if (image.error().code() == ErrorCode::not_found) {
      return Error(ErrorCode::not_found,
                   ctx + ": image '" + config.image +
                       "' not found; load it with 'modhost image load' or 'modhost image pack'");
    }
    return image.error().context(ctx);
  }

  // Held while names, addresses and the enclave's hosts file change, and
  // the container starts; not while the start check below watches it, so
  // services of one scope start side by side.
  std::optional<DirLock> lock(std::in_place, impl_->mutex, impl_->state.root + "/.lock");
  const std::string dir = impl_->state.service_dir(e.id, config.name);
  if (fs::exists(dir)) {
    return Error(ErrorCode::already_exists,
                 ctx + ": a service with that name already exists in enclave '" + e.name + "'");
  }
  for (const auto& f : config.files) {
    if (!fs::exists(impl_->state.enclave_dir(e.id) + "/artifacts/" + f.artifact + ".d")) {
      return Error(ErrorCode::not_found,
                   ctx + ": no files artifact '" + f.artifact + "' in enclave '" + e.name + "'");
    }
  }
  const std::string id = random_hex(32);
  std::string ip;
  if (config.network_of.empty()) {
    MODHOST_ASSIGN_OR_RETURN(ip, impl_->state.allocate_ip(e.id, e));
  } else {
    if (!fs::exists(impl_->state.service_dir(e.id, config.network_of) + "/service.json")) {
      return Error(ErrorCode::invalid_argument, ctx + ": no service '" + config.network_of + "' to join");
    }
  }

  // What it runs: Docker's rules for entrypoint and cmd.
  std::vector<std::string> argv = config.entrypoint.empty() ? image->entrypoint : config.entrypoint;
  const std::vector<std::string>& cmd =
      !config.cmd.empty() ? config.cmd
                          : (config.entrypoint.empty() ? image->cmd : std::vector<std::string>{});
  argv.insert(argv.end(), cmd.begin(), cmd.end());
  std::map<std::string, std::string> env_map;
  std::vector<std::string> env_order;
  auto set_env = [&](const std::string& k, const std::string& v) {
    if (!env_map.count(k)) env_order.push_back(k);
    env_map[k] = v;
  };
  set_env("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
  for (const auto& kv : image->env) {
    const auto eq = kv.find('=');
    if (eq != std::string::npos) set_env(kv.substr(0, eq), kv.substr(eq + 1));
  }
  set_env("HOSTNAME", config.name);
  for (const auto& [k, v] : config.env) set_env(k, v);
  json::array env_json, argv_json;
  for (const auto& k : env_order) env_json.emplace_back(k + "=" + env_map[k]);
  for (const auto& a : argv) argv_json.emplace_back(a);
  json::object labels;
  for (const auto& [k, v] : config.labels) labels[k] = v;

  // Everything made from here is undone if a later step fails.
  bool ok = false;
  struct Undo {
    Impl& impl;
    const std::string& eid;
    const std::string& name;
    const std::string& dir;
    bool& ok;
    ~Undo() {
      if (ok) return;
      (void)impl.teardown(eid, name);
      std::error_code ec;
      fs::remove_all(dir, ec);
      impl.state.write_hosts(eid);
    }
  } undo{*impl_, e.id, config.name, dir, ok};

  std::error_code ec;
  for (const char* sub : {"/rootfs", "/upper", "/work"}) fs::create_directories(dir + sub, ec);
  if (ec) return Error(ErrorCode::internal, ctx + ": cannot make " + dir + ": " + ec.message());
  json::object state{{"id", id},
                     {"name", config.name},
                     {"image", config.image},
                     {"kind", config.kind},
                     {"created", now_rfc3339()},
                     {"ip", ip},
                     {"argv", argv_json},
                     {"env", env_json},
                     {"workdir", image->workdir.empty() ? "/" : image->workdir},
                     {"labels", labels},
                     {"config", encode_config(config)},
                     {"state", "creating"}};
  MODHOST_TRY(write_file_atomic(dir + "/service.json", json::serialize(state)));

  // 1. Its cgroup.
  native::CgroupLimits limits;
  limits.memory_bytes = config.memory_bytes;
  limits.cpus = config.cpus;
  MODHOST_TRY(impl_->cgroups.create(impl_->state.cgroup_of(id), limits));

  // 2. The rootfs: the image's layers under a writable layer of its own, or,
  //    where overlayfs is missing, a copy of them applied in order.
  if (Status made = native::make_rootfs(dir + "/rootfs", store->layer_dirs(*image), dir + "/upper",
                                        dir + "/work", impl_->overlay);
      !made.ok()) {
    return made.error().context(ctx);
  }
  // 3. Its user (the config's, else the image's), from the image's own files.
  MODHOST_ASSIGN_OR_RETURN(
      auto ids, native::resolve_user(dir + "/rootfs", config.user.empty() ? image->user : config.user));
  state["uid"] = ids.first;
  state["gid"] = ids.second;
  MODHOST_TRY(write_file_atomic(dir + "/service.json", json::serialize(state)));
  // 4. Its name in the enclave, then the container.
  impl_->state.write_hosts(e.id);
  impl_->state.event(e.id, config.kind, config.name, "create");
  if (Status s = impl_->launcher.spawn(e.id, config.name, e); !s.ok()) return s.error().context(ctx);

  // 5. A process that exits at once is a failed start: its last words. The
  //    container's PID 1 ends as soon as the program does; a pidfd says
  //    when, without polling.
  const auto window = config.kind == "module" ? 0ms : impl_->options.startup_check;
  lock.reset();
  {
    const json::value run = parse_json_file(dir + "/run.json");
    const int pid = static_cast<int>(num(run, "pid"));
    const int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
    if (pidfd >= 0) {
      if (alive(pid, str(run, "pid_start"))) {
        pollfd p{pidfd, POLLIN, 0};
        while (::poll(&p, 1, static_cast<int>(window.count())) < 0 && errno == EINTR) {
        }
      }
      ::close(pidfd);
    }
  }
  if (ServiceInfo now = impl_->state.service_info(e.id, config.name); now.status != ServiceStatus::running) {
    (void)impl_->launcher.wait_exit(e.id, config.name, 1000ms);
    now = impl_->state.service_info(e.id, config.name);
    lock.emplace(impl_->mutex, impl_->state.root + "/.lock");  // for the undo
    return Error(ErrorCode::failed_precondition, ctx + ": it exited at once with code " +
                                                     std::to_string(now.exit_code.value_or(-1)) +
                                                     "; its last output: " + last_words(dir + "/log"));
  }
  state["state"] = "ready";
  MODHOST_TRY(write_file_atomic(dir + "/service.json", json::serialize(state)));
  ok = true;
  return impl_->state.service_info(e.id, config.name);
}

Result<std::vector<ServiceInfo>> NativeBackend::list_services(std::string_view enclave_id) {
  MODHOST_ASSIGN_OR_RETURN(EnclaveInfo e, find_enclave(enclave_id));
  std::vector<ServiceInfo> out;
  for (const auto& name : impl_->state.service_names(e.id)) {
    if (str(impl_->state.service_state(e.id, name), "state") != "ready") continue;
    out.push_back(impl_->state.service_info(e.id, name));
  }
  return out;
}

Result<ServiceInfo> NativeBackend::inspect_service(std::string_view enclave_id, std::string_view name) {
  MODHOST_ASSIGN_OR_RETURN(EnclaveInfo e, find_enclave(enclave_id));
  MODHOST_TRY(impl_->state.require_service(e.id, std::string(name), e));
  return impl_->state.service_info(e.id, std::string(name));
}

Status NativeBackend::remove_service(std::string_view enclave_id, std::string_view name) {
  MODHOST_ASSIGN_OR_RETURN(EnclaveInfo e, find_enclave(enclave_id));
  DirLock lock(impl_->mutex, impl_->state.root + "/.lock");
  MODHOST_TRY(impl_->state.require_service(e.id, std::string(name), e));
  std::vector<std::string> links;
  MODHOST_TRY(impl_->remove_service_locked(
      e.id, std::string(name), str(impl_->state.service_state(e.id, std::string(name)), "kind"), &links));
  return impl_->delete_links(std::move(links), /*detached=*/true);
}

Status NativeBackend::stop_service(std::string_view enclave_id, std::string_view name_in, int grace_seconds) {
  MODHOST_ASSIGN_OR_RETURN(EnclaveInfo e, find_enclave(enclave_id));
  const std::string name(name_in);
  DirLock lock(impl_->mutex, impl_->state.root + "/.lock");
  MODHOST_TRY(impl_->state.require_service(e.id, name, e));
  impl_->launcher.stop_processes(e.id, name, std::chrono::seconds(std::max(0, grace_seconds)), true);
  impl_->state.event(e.id, str(impl_->state.service_state(e.id, name), "kind"), name, "stop");
  return ok_status();
}

Status NativeBackend::start_service(std::string_view enclave_id, std::string_view name_in) {
  MODHOST_ASSIGN_OR_RETURN(EnclaveInfo e, find_enclave(enclave_id));
  const std::string name(name_in);
  DirLock lock(impl_->mutex, impl_->state.root + "/.lock");
  MODHOST_TRY(impl_->state.require_service(e.id, name, e));
  const ServiceStatus s = impl_->state.service_info(e.id, name).status;
  if (s == ServiceStatus::running || s == ServiceStatus::paused) return ok_status();
  (void)impl_->launcher.wait_exit(e.id, name, 1000ms);
  if (Status started = impl_->launcher.spawn(e.id, name, e); !started.ok())
    return started.error().context("cannot start service '" + name + "'");
  return ok_status();
}

Status NativeBackend::restart_service(std::string_view enclave_id, std::string_view name_in) {
  MODHOST_ASSIGN_OR_RETURN(EnclaveInfo e, find_enclave(enclave_id));
  const std::string name(name_in);
  DirLock lock(impl_->mutex, impl_->state.root + "/.lock");
  MODHOST_TRY(impl_->state.require_service(e.id, name, e));
  impl_->launcher.stop_processes(e.id, name, 10000ms, false);
  if (impl_->state.service_info(e.id, name).status == ServiceStatus::running) {
    return Error(ErrorCode::failed_precondition, "service '" + name + "' did not stop; it was not restarted");
  }
  MODHOST_TRY(impl_->launcher.spawn(e.id, name, e));
  impl_->state.event(e.id, str(impl_->state.service_state(e.id, name), "kind"), name, "restart");
  return ok_status();
}

Status NativeBackend::pause_service(std::string_view enclave_id, std::string_view name_in) {
  MODHOST_ASSIGN_OR_RETURN(EnclaveInfo e, find_enclave(enclave_id));
  const std::string name(name_in);
  MODHOST_TRY(impl_->state.require_service(e.id, name, e));
  const ServiceInfo info = impl_->state.service_info(e.id, name);
  if (info.status != ServiceStatus::running) {
    return Error(ErrorCode::failed_precondition, "service '" + name + "' is not running");
  }
  MODHOST_TRY(impl_->cgroups.freeze(impl_->state.cgroup_of(info.id), true));
  impl_->state.event(e.id, str(impl_->state.service_state(e.id, name), "kind"), name, "pause");
  return ok_status();
}

Status NativeBackend::unpause_service(std::string_view enclave_id, std::string_view name_in) {
  MODHOST_ASSIGN_OR_RETURN(EnclaveInfo e, find_enclave(enclave_id));
  const std::string name(name_in);
  MODHOST_TRY(impl_->state.require_service(e.id, name, e));
  const ServiceInfo info = impl_->state.service_info(e.id, name);
  if (info.status != ServiceStatus::paused) {
    return Error(ErrorCode::failed_precondition, "service '" + name + "' is not paused");
  }
  MODHOST_TRY(impl_->cgroups.freeze(impl_->state.cgroup_of(info.id), false));
  impl_->state.event(e.id, str(impl_->state.service_state(e.id, name), "kind"), name, "unpause");
  return ok_status();
}

Status NativeBackend::kill_service(std::string_view enclave_id, std::string_view name_in, int signal) {
  MODHOST_ASSIGN_OR_RETURN(EnclaveInfo e, find_enclave(enclave_id));
  const std::string name(name_in);
  MODHOST_TRY(impl_->state.require_service(e.id, name, e));
  if (signal <= 0 || signal >= 65)
    return Error(ErrorCode::invalid_argument, "invalid signal " + std::to_string(signal));
  const json::value run = parse_json_file(impl_->state.service_dir(e.id, name) + "/run.json");
  const int pid = static_cast<int>(num(run, "pid"));
  if (!alive(pid, str(run, "pid_start"))) {
    return Error(ErrorCode::failed_precondition, "service '" + name + "' is not running");
  }
  impl_->state.event(e.id, str(impl_->state.service_state(e.id, name), "kind"), name, "kill",
                     {{"signal", std::to_string(signal)}});
  if (!signal_process(pid, str(run, "pid_start"), signal)) {
    return Error(ErrorCode::internal, "cannot signal service '" + name + "': " + std::strerror(errno));
  }
  // SIGKILL ends PID 1 itself: the exit is known once the shim recorded it.
  if (signal == SIGKILL) (void)impl_->launcher.wait_exit(e.id, name, 5000ms);
  return ok_status();
}

Result<ServiceConfig> NativeBackend::service_config(std::string_view enclave_id, std::string_view name_in) {
  MODHOST_ASSIGN_OR_RETURN(EnclaveInfo e, find_enclave(enclave_id));
  const std::string name(name_in);
  MODHOST_TRY(impl_->state.require_service(e.id, name, e));
  return decode_config(str(impl_->state.service_state(e.id, name), "config"), name);
}

// --- Images -------------------------------------------------------------------

Status NativeBackend::load_image(std::string_view archive_path) {
  MODHOST_ASSIGN_OR_RETURN(ImageStore * store, impl_->image_store());
  MODHOST_ASSIGN_OR_RETURN(auto loaded, store->load(std::string(archive_path)));
  (void)loaded;
  return ok_status();
}

Result<bool> NativeBackend::image_exists(std::string_view reference) {
  MODHOST_ASSIGN_OR_RETURN(ImageStore * store, impl_->image_store());
  auto found = store->find(reference);
  if (found.ok()) return true;
  if (found.error().code() == ErrorCode::not_found) return false;
  return found.error();
}

Result<std::vector<ImageInfo>> NativeBackend::list_images() {
  MODHOST_ASSIGN_OR_RETURN(ImageStore * store, impl_->image_store());
  MODHOST_ASSIGN_OR_RETURN(auto images, store->list());
  std::vector<ImageInfo> out;
  for (const auto& i : images) out.push_back(ImageInfo{i.id, i.references, i.size_bytes});
  return out;
}

Status NativeBackend::remove_image(std::string_view reference) {
  MODHOST_ASSIGN_OR_RETURN(ImageStore * store, impl_->image_store());
  // Layers in use by a service's rootfs stay on disk (the overlay holds
  // them open); refuse rather than pull them from under it.
  MODHOST_ASSIGN_OR_RETURN(native::StoredImage image, store->find(reference));
  for (const auto& e : impl_->state.all_enclaves()) {
    for (const auto& name : impl_->state.service_names(e.id)) {
      const std::string ref = str(impl_->state.service_state(e.id, name), "image");
      auto used = store->find(ref);
      if (used.ok() && used->id == image.id && image.references.size() <= 1) {
        return Error(ErrorCode::failed_precondition, "image '" + std::string(reference) +
                                                         "' is used by service '" + name + "' in enclave '" +
                                                         e.name + "'; remove it first");
      }
    }
  }
  return store->remove(reference);
}

// --- Events -------------------------------------------------------------------

Status NativeBackend::events(std::string_view enclave_id, bool follow, const EventSink& sink) {
  MODHOST_ASSIGN_OR_RETURN(EnclaveInfo e, find_enclave(enclave_id));
  const std::string path = impl_->state.enclave_dir(e.id) + "/events";
  std::ifstream in(path);
  std::string pending;
  while (true) {
    std::string line;
    if (std::getline(in, line)) {
      if (in.eof()) {  // a line still being written
        pending += line;
        in.clear();
        continue;
      }
      line = pending + line;
      pending.clear();
      boost::system::error_code ec;
      json::value v = json::parse(line, ec);
      if (ec) continue;
      EnclaveEvent ev;
      ev.time_ns = num(v, "timeNano");
      ev.kind = str(v, "kind");
      ev.subject = str(v, "subject");
      ev.action = str(v, "action");
      if (const auto* a = v.as_object().if_contains("attributes"); a && a->is_object()) {
        for (const auto& [k, x] : a->get_object()) {
          if (x.is_string()) ev.attributes[std::string(k)] = std::string(x.get_string());
        }
      }
      if (!sink(ev)) return ok_status();
      continue;
    }
    if (!follow || !fs::exists(impl_->state.enclave_dir(e.id))) return ok_status();
    in.clear();
    std::this_thread::sleep_for(50ms);
  }
}

Result<std::optional<int>> NativeBackend::network_namespace_pid(std::string_view enclave_id,
                                                                std::string_view name_in) {
  MODHOST_ASSIGN_OR_RETURN(EnclaveInfo e, find_enclave(enclave_id));
  const std::string name(name_in);
  MODHOST_ASSIGN_OR_RETURN(std::string dir, impl_->state.require_service(e.id, name, e));
  const json::value run = parse_json_file(dir + "/run.json");
  const int pid = static_cast<int>(num(run, "pid"));
  if (!alive(pid, str(run, "pid_start"))) {
    return Error(ErrorCode::failed_precondition,
                 "service '" + name + "' in enclave '" + e.name + "' is not running");
  }
  return std::optional<int>(pid);
}

}  // namespace modhost::backend
