// The native backend's files: files artifacts of an enclave (the .tgz as
// given, its tree unpacked beside it for services to mount), and copies
// into and out of a service's rootfs with the service frozen meanwhile.
#include <boost/json.hpp>
#include <filesystem>

#include "backends/image/image.hpp"
#include "backends/native/native_impl.hpp"
#include "backends/native/rootfs.hpp"

namespace modhost::backend {
namespace {

// A running service's processes frozen while the host reads or writes its
// files: none of them can swap a checked path for a symlink meanwhile. A
// paused service stays paused.
class FrozenWhile {
 public:
  FrozenWhile(const Cgroups& cgroups, std::string relative)
      : cgroups_(cgroups), relative_(std::move(relative)) {
    if (!cgroups_.frozen(relative_) && !cgroups_.pids(relative_).empty()) {
      thaw_ = cgroups_.freeze(relative_, true).ok();
    }
  }
  ~FrozenWhile() {
    if (thaw_) (void)cgroups_.freeze(relative_, false);
  }
  FrozenWhile(const FrozenWhile&) = delete;
  FrozenWhile& operator=(const FrozenWhile&) = delete;

 private:
  const Cgroups& cgroups_;
  std::string relative_;
  bool thaw_ = false;
};

ArtifactInfo artifact_from(const json::value& v, const std::string& eid) {
  ArtifactInfo a;
  a.name = str(v, "name");
  a.enclave_id = eid;
  a.size_bytes = static_cast<std::uint64_t>(num(v, "size"));
  a.created = str(v, "created");
  return a;
}

}  // namespace

Status NativeBackend::copy_to_service(std::string_view enclave_id, std::string_view name_in,
                                      std::string_view dir, std::string_view tar) {
  MODHOST_ASSIGN_OR_RETURN(EnclaveInfo e, find_enclave(enclave_id));
  const std::string name(name_in);
  MODHOST_ASSIGN_OR_RETURN(std::string sdir, impl_->state.require_service(e.id, name, e));
  const std::string ctx = "cannot copy into '" + std::string(dir) + "' of service '" + name + "'";
  if (dir.empty() || dir[0] != '/')
    return Error(ErrorCode::invalid_argument, ctx + ": the path must be absolute");
  FrozenWhile frozen(impl_->cgroups,
                     impl_->state.cgroup_of(str(impl_->state.service_state(e.id, name), "id")));
  auto target = native::resolve_in_root(sdir + "/rootfs", std::string(dir));
  if (!target.ok()) return target.error().context(ctx);
  std::string plain(tar);
  if (image::is_gzip(tar)) {
    auto unzipped = image::gzip_decompress(tar);
    if (!unzipped.ok()) return Error(ErrorCode::invalid_argument, ctx + ": " + unzipped.error().message());
    plain = std::move(unzipped).value();
  }
  if (Status s = image::extract_tar(plain, target.value()); !s.ok()) return s.error().context(ctx);
  return ok_status();
}

Result<ArtifactInfo> NativeBackend::store_artifact(std::string_view enclave_id, std::string_view name_in,
                                                   std::string_view tgz) {
  MODHOST_ASSIGN_OR_RETURN(EnclaveInfo e, find_enclave(enclave_id));
  const std::string name(name_in);
  const std::string ctx = "failed to store files artifact '" + name + "' in enclave '" + e.name + "'";
  if (!valid_name(name)) {
    return Error(
        ErrorCode::invalid_argument,
        ctx + ": a name has 1-63 letters, digits, '.', '_' or '-' and starts with a letter or digit");
  }
  if (!image::is_gzip(tgz)) {
    return Error(ErrorCode::invalid_argument, ctx + ": the content is not a gzip-compressed tar (.tgz)");
  }
  auto plain = image::gzip_decompress(tgz);
  if (!plain.ok()) return Error(ErrorCode::invalid_argument, ctx + ": " + plain.error().message());
  DirLock lock(impl_->mutex, impl_->state.root + "/.lock");
  const std::string base = impl_->state.enclave_dir(e.id) + "/artifacts/" + name;
  if (fs::exists(base + ".json")) {
    return Error(ErrorCode::already_exists, ctx + ": an artifact with that name already exists");
  }
  std::error_code ec;
  fs::remove_all(base + ".d", ec);
  if (Status s = image::extract_tar(plain.value(), base + ".d"); !s.ok()) {
    fs::remove_all(base + ".d", ec);
    return Error(ErrorCode::invalid_argument, ctx + ": " + s.error().message());
  }
  MODHOST_TRY(write_file_atomic(base + ".tgz", tgz));
  ArtifactInfo info{name, e.id, tgz.size(), now_rfc3339()};
  // Written last: an artifact without it is half-made and not listed.
  MODHOST_TRY(write_file_atomic(
      base + ".json",
      json::serialize(json::object{{"name", name}, {"size", info.size_bytes}, {"created", info.created}})));
  return info;
}

Result<std::vector<ArtifactInfo>> NativeBackend::list_artifacts(std::string_view enclave_id) {
  MODHOST_ASSIGN_OR_RETURN(EnclaveInfo e, find_enclave(enclave_id));
  std::vector<ArtifactInfo> out;
  std::error_code ec;
  for (const auto& f : fs::directory_iterator(impl_->state.enclave_dir(e.id) + "/artifacts", ec)) {
    if (f.path().extension() != ".json") continue;
    const json::value v = parse_json_file(f.path().string());
    if (v.is_object()) out.push_back(artifact_from(v, e.id));
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.name < b.name; });
  return out;
}

Result<std::string> NativeBackend::download_artifact(std::string_view enclave_id, std::string_view name_in) {
  MODHOST_ASSIGN_OR_RETURN(EnclaveInfo e, find_enclave(enclave_id));
  const std::string name(name_in);
  const std::string base = impl_->state.enclave_dir(e.id) + "/artifacts/" + name;
  if (!valid_name(name) || !fs::exists(base + ".json")) {
    return Error(ErrorCode::not_found, "no files artifact '" + name + "' in enclave '" + e.name + "'");
  }
  return read_file(base + ".tgz");
}

Status NativeBackend::remove_artifact(std::string_view enclave_id, std::string_view name_in) {
  MODHOST_ASSIGN_OR_RETURN(EnclaveInfo e, find_enclave(enclave_id));
  const std::string name(name_in);
  const std::string ctx = "failed to remove files artifact '" + name + "' from enclave '" + e.name + "'";
  const std::string base = impl_->state.enclave_dir(e.id) + "/artifacts/" + name;
  DirLock lock(impl_->mutex, impl_->state.root + "/.lock");
  if (!valid_name(name) || !fs::exists(base + ".json")) {
    return Error(ErrorCode::not_found, ctx + ": no such artifact; list them with 'modhost files ls'");
  }
  std::error_code ec;
  fs::remove(base + ".json", ec);  // first: an artifact without it is not listed
  if (ec) return Error(ErrorCode::internal, ctx + ": " + ec.message());
  fs::remove(base + ".tgz", ec);
  // Services bind-mount the unpacked tree: it moves aside, whole, and goes
  // with the enclave, so their files stay and the name is free at once.
  const std::string trash = impl_->state.enclave_dir(e.id) + "/artifacts/.removed";
  fs::create_directories(trash, ec);
  fs::rename(base + ".d", trash + "/" + name + "-" + random_hex(8), ec);
  if (ec) fs::remove_all(base + ".d", ec);
  return ok_status();
}

Result<ArtifactInfo> NativeBackend::store_from_service(std::string_view enclave_id, std::string_view service,
                                                       std::string_view path, std::string_view name) {
  MODHOST_ASSIGN_OR_RETURN(EnclaveInfo e, find_enclave(enclave_id));
  const std::string sname(service);
  MODHOST_ASSIGN_OR_RETURN(std::string sdir, impl_->state.require_service(e.id, sname, e));
  const std::string ctx = "cannot store '" + std::string(path) + "' of service '" + sname + "'";
  if (path.empty() || path[0] != '/')
    return Error(ErrorCode::invalid_argument, ctx + ": the path must be absolute");
  FrozenWhile frozen(impl_->cgroups,
                     impl_->state.cgroup_of(str(impl_->state.service_state(e.id, sname), "id")));
  auto source = native::resolve_in_root(sdir + "/rootfs", std::string(path));
  if (!source.ok()) {
    if (source.error().code() == ErrorCode::not_found) {
      return Error(ErrorCode::not_found, ctx + ": no such path in the service");
    }
    return source.error().context(ctx);
  }
  // A directory keeps its own name, as Docker's archive API gives it.
  MODHOST_ASSIGN_OR_RETURN(std::string tar, image::tar_path(source.value()));
  MODHOST_ASSIGN_OR_RETURN(std::string tgz, image::gzip_compress(tar));
  return store_artifact(enclave_id, name, tgz);
}

}  // namespace modhost::backend
