// Files artifacts as Docker volumes.
//
// Each artifact is two volumes, both labelled kind=artifact, enclave, name,
// created and size (of the .tgz):
//   modhost-<short>-artifact-<name>      role=data: the extracted files, mounted read-only into services
//   modhost-<short>-artifact_tgz-<name>  role=tgz:  /artifact.tgz, the exact bytes uploaded
// The original stays in its own volume, not next to the files, so a service
// sees only the artifact's own files at its mount path, and a download returns
// the very bytes that were stored (no re-packing, no timestamp drift).
//
// Volumes are filled and read through a "holder": a container created (never
// started) from modhost/artifact-holder:1, a one-layer image the backend
// builds in memory and loads the first time it needs it, with the volume at
// /v. The engine extracts a gzip tar PUT to /containers/{id}/archive itself.
//
// Half-made detection: the data volume is made and filled first, the tgz
// volume last; a data volume without its tgz volume is half-made (recover()
// lists it, clean() removes it). A crash during the last upload leaves a short
// artifact.tgz, which download_artifact detects against the size label.
//
// Files copied into a service (copy_to_service) go the same way: a tar PUT
// to the service's own container.
#include <algorithm>
#include <map>

#include "backends/docker/docker_impl.hpp"
#include "backends/image/image.hpp"

namespace modhost::backend {

namespace {

constexpr const char* kTgzFile = "artifact.tgz";

// Removes the listed volumes unless released.
class VolumeGuard {
 public:
  explicit VolumeGuard(const DockerBackend::Impl& impl) : impl_(impl) {}
  ~VolumeGuard() {
    for (const auto& v : names_) (void)impl_.api(Method::del, "/volumes/" + url_encode(v) + "?force=1");
  }
  VolumeGuard(const VolumeGuard&) = delete;
  VolumeGuard& operator=(const VolumeGuard&) = delete;
  void add(std::string name) { names_.push_back(std::move(name)); }
  void release() { names_.clear(); }

 private:
  const DockerBackend::Impl& impl_;
  std::vector<std::string> names_;
};

class HolderGuard {
 public:
  HolderGuard(const DockerBackend::Impl& impl, std::string id) : impl_(impl), id_(std::move(id)) {}
  ~HolderGuard() { (void)impl_.remove_container(id_); }
  HolderGuard(const HolderGuard&) = delete;
  HolderGuard& operator=(const HolderGuard&) = delete;
  const std::string& id() const { return id_; }

 private:
  const DockerBackend::Impl& impl_;
  std::string id_;
};

ArtifactInfo artifact_from_volume(const json::value& vol) {
  ArtifactInfo a;
  a.name = docker::label_of(vol, kLabelName);
  a.enclave_id = docker::label_of(vol, kLabelEnclave);
  a.created = docker::label_of(vol, kLabelCreated);
  const std::string size = docker::label_of(vol, docker::kLabelSize);
  a.size_bytes = size.empty() ? 0 : std::stoull(size);
  return a;
}

}  // namespace

Status DockerBackend::Impl::ensure_holder_image() {
  std::lock_guard lock(holder_mutex);
  if (holder_ready) return ok_status();
  MODHOST_ASSIGN_OR_RETURN(HttpResponse r,
                           api(Method::get, std::string("/images/") + docker::kHolderImage + "/json"));
  if (r.status != 404) {
    if (!is_2xx(r)) return docker::engine_error(r, "cannot inspect the artifact holder image");
    holder_ready = true;
    return ok_status();
  }
  image::TarWriter layer;
  layer.add_directory("v");
  layer.add_file(
      "README",
      "modhost artifact holder: containers of this image are created, never started, to move files\n"
      "in and out of the volumes that hold files artifacts.\n");
  image::ImageConfig config;
  config.reference = docker::kHolderImage;
  config.entrypoint = {"/modhost-artifact-holder-never-runs"};
  config.labels[kLabelApp] = "modhost";
  MODHOST_ASSIGN_OR_RETURN(std::string archive, image::write_docker_archive(config, layer.finish()));
  MODHOST_TRY(load_archive_bytes(archive, "the artifact holder image"));
  log->info("loaded {}", docker::kHolderImage);
  holder_ready = true;
  return ok_status();
}

Result<std::string> DockerBackend::Impl::create_holder(
    const Enclave& e, std::string_view artifact,
    const std::vector<std::pair<std::string, std::string>>& mounts, bool read_only) {
  MODHOST_TRY(ensure_holder_image());
  json::object labels = base_labels("artifact", e.info.id, artifact, docker::now_rfc3339());
  labels[docker::kLabelRole] = "holder";
  json::array ms;
  for (const auto& [volume, target] : mounts) {
    ms.push_back(
        json::object{{"Type", "volume"}, {"Source", volume}, {"Target", target}, {"ReadOnly", read_only}});
  }
  json::value body =
      json::object{{"Image", docker::kHolderImage},
                   {"Labels", std::move(labels)},
                   {"NetworkDisabled", true},
                   {"HostConfig", json::object{{"NetworkMode", "none"}, {"Mounts", std::move(ms)}}}};
  const std::string name = "modhost-" + docker::short_id(e.info.id) + "-holder-" + docker::random_hex(8);
  auto made = api_json(Method::post, "/containers/create?name=" + name,
                       "cannot create an artifact holder container", &body);
  if (!made.ok() && made.error().code() == ErrorCode::not_found) {
    // The holder image was removed behind our back: load it again, once.
    {
      std::lock_guard lock(holder_mutex);
      holder_ready = false;
    }
    MODHOST_TRY(ensure_holder_image());
    made = api_json(Method::post, "/containers/create?name=" + name,
                    "cannot create an artifact holder container", &body);
  }
  if (!made.ok()) return std::move(made).error();
  return docker::str_at(made.value(), "Id");
}

Result<ArtifactInfo> DockerBackend::Impl::store(const Enclave& e, std::string_view name,
                                                std::string_view tgz) {
  const std::string ctx =
      "failed to store files artifact '" + std::string(name) + "' in enclave '" + e.info.name + "'";
  if (!docker::valid_name(name)) {
    return Error(
        ErrorCode::invalid_argument,
        ctx + ": a name has 1-63 letters, digits, '.', '_' or '-' and starts with a letter or digit");
  }
  if (!image::is_gzip(tgz)) {
    return Error(ErrorCode::invalid_argument, ctx + ": the content is not a gzip-compressed tar (.tgz)");
  }
  const std::string data_vol = docker::artifact_volume(e.info.id, name);
  const std::string tgz_vol = docker::artifact_tgz_volume(e.info.id, name);
  for (const auto& v : {data_vol, tgz_vol}) {
    MODHOST_ASSIGN_OR_RETURN(HttpResponse r, api(Method::get, "/volumes/" + v));
    if (is_2xx(r))
      return Error(ErrorCode::already_exists, ctx + ": an artifact with that name already exists");
    if (r.status != 404) return docker::engine_error(r, ctx);
  }
  MODHOST_TRY(ensure_holder_image());

  const std::string created = docker::now_rfc3339();
  VolumeGuard volumes(*this);
  for (const auto& [vol, role] : {std::pair{data_vol, "data"}, std::pair{tgz_vol, "tgz"}}) {
    json::object labels = base_labels("artifact", e.info.id, name, created);
    labels[docker::kLabelRole] = role;
    labels[docker::kLabelSize] = std::to_string(tgz.size());
    json::value body = json::object{{"Name", vol}, {"Labels", std::move(labels)}};
    MODHOST_ASSIGN_OR_RETURN(json::value made, api_json(Method::post, "/volumes/create", ctx, &body));
    volumes.add(vol);

    MODHOST_ASSIGN_OR_RETURN(std::string holder_id, create_holder(e, name, {{vol, "/v"}}, false));
    HolderGuard holder(*this, holder_id);
    std::string payload;
    if (std::string_view(role) == "data") {
      payload = std::string(tgz);  // the engine unpacks a gzip tar itself
    } else {
      image::TarWriter w;
      w.add_file(kTgzFile, tgz);
      payload = w.finish();
    }
    MODHOST_ASSIGN_OR_RETURN(HttpResponse r,
                             api(Method::put, "/containers/" + holder.id() + "/archive?path=/v", payload,
                                 std::nullopt, "application/x-tar"));
    if (!is_2xx(r)) return docker::engine_error(r, ctx, ErrorCode::failed_precondition);
  }
  volumes.release();
  log->info("stored files artifact '{}' ({} bytes) in enclave '{}'", name, tgz.size(), e.info.name);
  ArtifactInfo info;
  info.name = std::string(name);
  info.enclave_id = e.info.id;
  info.size_bytes = tgz.size();
  info.created = created;
  return info;
}

Result<ArtifactInfo> DockerBackend::store_artifact(std::string_view enclave_id, std::string_view name,
                                                   std::string_view tgz) {
  MODHOST_ASSIGN_OR_RETURN(Enclave e, impl_->resolve_enclave(enclave_id, true));
  return impl_->store(e, name, tgz);
}

Result<std::vector<ArtifactInfo>> DockerBackend::list_artifacts(std::string_view enclave_id) {
  MODHOST_ASSIGN_OR_RETURN(Enclave e, impl_->resolve_enclave(enclave_id, false));
  MODHOST_ASSIGN_OR_RETURN(
      json::value vols,
      impl_->api_json(Method::get,
                      "/volumes?" + impl_->filters({std::string(kLabelEnclave) + "=" + e.info.id,
                                                    std::string(kLabelKind) + "=artifact"}),
                      "cannot list the files artifacts of enclave '" + e.info.name + "'"));
  // Only complete artifacts: both volumes present.
  std::map<std::string, std::pair<std::optional<ArtifactInfo>, bool>> by_name;
  if (const json::value* arr = docker::member(vols, "Volumes"); arr != nullptr && arr->is_array()) {
    for (const auto& v : arr->get_array()) {
      const std::string role = docker::label_of(v, docker::kLabelRole);
      auto& slot = by_name[docker::label_of(v, kLabelName)];
      if (role == "data") slot.first = artifact_from_volume(v);
      if (role == "tgz") slot.second = true;
    }
  }
  std::vector<ArtifactInfo> out;
  for (auto& [n, slot] : by_name) {
    if (slot.first && slot.second) out.push_back(std::move(*slot.first));
  }
  return out;
}

Status DockerBackend::remove_artifact(std::string_view enclave_id, std::string_view name) {
  MODHOST_ASSIGN_OR_RETURN(Enclave e, impl_->resolve_enclave(enclave_id, false));
  const std::string ctx =
      "failed to remove files artifact '" + std::string(name) + "' from enclave '" + e.info.name + "'";
  if (!docker::valid_name(name)) {
    return Error(ErrorCode::not_found, ctx + ": no such artifact; list them with 'modhost files ls'");
  }
  bool found = false;
  // The listing volume (tgz) first: once it is gone the artifact is no longer listed.
  for (const auto& v :
       {docker::artifact_tgz_volume(e.info.id, name), docker::artifact_volume(e.info.id, name)}) {
    MODHOST_ASSIGN_OR_RETURN(HttpResponse r, impl_->api(Method::del, "/volumes/" + url_encode(v)));
    if (r.status == 404) continue;
    if (r.status == 409) {
      return Error(ErrorCode::failed_precondition, ctx + ": a service mounts it; remove that service first");
    }
    if (!is_2xx(r)) return docker::engine_error(r, ctx);
    found = true;
  }
  if (!found)
    return Error(ErrorCode::not_found, ctx + ": no such artifact; list them with 'modhost files ls'");
  return ok_status();
}

Result<std::string> DockerBackend::download_artifact(std::string_view enclave_id, std::string_view name) {
  MODHOST_ASSIGN_OR_RETURN(Enclave e, impl_->resolve_enclave(enclave_id, false));
  const std::string ctx =
      "failed to download files artifact '" + std::string(name) + "' from enclave '" + e.info.name + "'";
  auto not_found = Error(ErrorCode::not_found, ctx + ": no such artifact; list them with 'modhost files ls'");
  if (!docker::valid_name(name)) return not_found;
  const std::string tgz_vol = docker::artifact_tgz_volume(e.info.id, name);
  MODHOST_ASSIGN_OR_RETURN(HttpResponse vr, impl_->api(Method::get, "/volumes/" + tgz_vol));
  if (vr.status == 404) return not_found;
  if (!is_2xx(vr)) return docker::engine_error(vr, ctx);
  MODHOST_ASSIGN_OR_RETURN(json::value vol, docker::parse_json(vr.body, "volume inspect"));
  const ArtifactInfo info = artifact_from_volume(vol);

  MODHOST_ASSIGN_OR_RETURN(std::string holder_id, impl_->create_holder(e, name, {{tgz_vol, "/v"}}, true));
  HolderGuard holder(*impl_, holder_id);
  MODHOST_ASSIGN_OR_RETURN(
      HttpResponse r, impl_->api(Method::get, "/containers/" + holder.id() + "/archive?path=/v/" + kTgzFile));
  if (r.status == 404) {
    return Error(
        ErrorCode::failed_precondition,
        ctx + ": the artifact is incomplete (its upload was interrupted); remove it with 'modhost clean'");
  }
  if (!is_2xx(r)) return docker::engine_error(r, ctx);
  MODHOST_ASSIGN_OR_RETURN(std::vector<image::TarEntry> entries, image::read_tar(r.body));
  for (auto& entry : entries) {
    if (entry.path != kTgzFile || entry.type != image::TarEntry::Type::file) continue;
    if (entry.content.size() != info.size_bytes) {
      return Error(ErrorCode::failed_precondition, ctx + ": the artifact is incomplete (" +
                                                       std::to_string(entry.content.size()) + " of " +
                                                       std::to_string(info.size_bytes) +
                                                       " bytes; its upload was interrupted); remove it with "
                                                       "'modhost clean'");
    }
    return std::move(entry.content);
  }
  return Error(ErrorCode::failed_precondition, ctx + ": the artifact volume holds no " + kTgzFile);
}

Result<ArtifactInfo> DockerBackend::store_from_service(std::string_view enclave_id, std::string_view service,
                                                       std::string_view path, std::string_view name) {
  MODHOST_ASSIGN_OR_RETURN(ServiceRef s, impl_->resolve_service(enclave_id, service));
  const std::string ctx = "failed to store '" + std::string(path) + "' of service '" + s.name +
                          "' as files artifact '" + std::string(name) + "' in enclave '" +
                          s.enclave.info.name + "'";
  if (path.empty() || path.front() != '/') {
    return Error(ErrorCode::invalid_argument, ctx + ": the path must be absolute");
  }
  if (!s.enclave.info.complete) {
    return Error(ErrorCode::failed_precondition,
                 ctx + ": the enclave is half-made; remove it with 'modhost clean'");
  }
  MODHOST_ASSIGN_OR_RETURN(HttpResponse r, impl_->api(Method::get, "/containers/" + s.container_id +
                                                                       "/archive?path=" + url_encode(path)));
  if (r.status == 404) return Error(ErrorCode::not_found, ctx + ": no such path in the service");
  if (!is_2xx(r)) return docker::engine_error(r, ctx);
  MODHOST_ASSIGN_OR_RETURN(std::string tgz, image::gzip_compress(r.body));
  auto stored = impl_->store(s.enclave, name, tgz);
  if (!stored.ok() && stored.error().code() != ErrorCode::already_exists) return stored.error().context(ctx);
  return stored;
}

Status DockerBackend::copy_to_service(std::string_view enclave_id, std::string_view name,
                                      std::string_view dir, std::string_view tar) {
  MODHOST_ASSIGN_OR_RETURN(ServiceRef s, impl_->resolve_service(enclave_id, name));
  const std::string ctx = "failed to copy files into '" + std::string(dir) + "' of service '" + s.name + "'";
  if (dir.empty() || dir.front() != '/')
    return Error(ErrorCode::invalid_argument, ctx + ": the path must be absolute");
  MODHOST_ASSIGN_OR_RETURN(
      HttpResponse r,
      impl_->api(Method::put, "/containers/" + s.container_id + "/archive?path=" + url_encode(dir),
                 std::string(tar), std::nullopt, "application/x-tar"));
  if (r.status == 404) return Error(ErrorCode::not_found, ctx + ": no such directory in the service");
  if (!is_2xx(r)) return docker::engine_error(r, ctx, ErrorCode::failed_precondition);
  return ok_status();
}

}  // namespace modhost::backend
