// docker-save archives: manifest.json, an image config and one layer.
#include <boost/json.hpp>

#include "backends/image/image.hpp"
#include "backends/image/sha256.hpp"

namespace modhost::image {
namespace {

namespace json = boost::json;

// A fixed timestamp keeps packed images reproducible (same input, same image id).
constexpr const char* kEpoch = "1970-01-01T00:00:00Z";

json::array string_array(const std::vector<std::string>& v) {
  json::array a;
  for (const auto& s : v) a.emplace_back(s);
  return a;
}

// "name" -> "name:latest"; a tag is a ':' after the last '/'.
Result<std::string> normalize_reference(const std::string& ref) {
  if (ref.find('@') != std::string::npos) {
    return Error(ErrorCode::invalid_argument,
                 "image reference '" + ref + "' has a digest; a loaded archive needs name:tag");
  }
  for (char c : ref) {
    if (c <= ' ' || c >= 0x7f) {
      return Error(ErrorCode::invalid_argument,
                   "image reference '" + ref + "' contains whitespace or control characters");
    }
  }
  const std::size_t slash = ref.rfind('/');
  const std::size_t colon = ref.rfind(':');
  const bool tagged = colon != std::string::npos && (slash == std::string::npos || colon > slash);
  if (ref.empty() || ref.front() == ':' || ref.back() == ':' || ref.back() == '/') {
    return Error(ErrorCode::invalid_argument, "image reference '" + ref + "' is not of the form name[:tag]");
  }
  return tagged ? ref : ref + ":latest";
}

}  // namespace

Result<std::string> write_docker_archive(const ImageConfig& config, std::string_view layer_tar) {
  json::array repo_tags;
  std::string name, tag;
  if (!config.reference.empty()) {
    MODHOST_ASSIGN_OR_RETURN(std::string ref, normalize_reference(config.reference));
    const std::size_t colon = ref.rfind(':');
    name = ref.substr(0, colon);
    tag = ref.substr(colon + 1);
    repo_tags.emplace_back(ref);
  }

  const std::string diff_id = "sha256:" + sha256_hex(layer_tar);

  json::object container_config;
  if (!config.entrypoint.empty()) container_config["Entrypoint"] = string_array(config.entrypoint);
  if (!config.cmd.empty()) container_config["Cmd"] = string_array(config.cmd);
  if (!config.env.empty()) container_config["Env"] = string_array(config.env);
  if (!config.workdir.empty()) container_config["WorkingDir"] = config.workdir;
  if (!config.labels.empty()) {
    json::object labels;
    for (const auto& [k, v] : config.labels) labels[k] = v;
    container_config["Labels"] = std::move(labels);
  }

  json::object image_config;
  image_config["architecture"] = "amd64";
  image_config["os"] = "linux";
  image_config["created"] = kEpoch;
  image_config["config"] = std::move(container_config);
  image_config["rootfs"] = json::object{{"type", "layers"}, {"diff_ids", json::array{json::value(diff_id)}}};
  image_config["history"] =
      json::array{json::object{{"created", kEpoch}, {"created_by", "modhost image pack"}}};
  const std::string config_json = json::serialize(image_config);
  const std::string config_hex = sha256_hex(config_json);
  const std::string config_name = config_hex + ".json";

  // Legacy layout: one directory per layer, named by a v1 id. The layer's own
  // digest is a stable choice for a single-layer image.
  const std::string layer_dir = diff_id.substr(7);
  const std::string layer_path = layer_dir + "/layer.tar";

  json::array manifest{json::object{
      {"Config", config_name}, {"RepoTags", repo_tags}, {"Layers", json::array{json::value(layer_path)}}}};
  json::object layer_json{{"id", layer_dir}, {"created", kEpoch}, {"os", "linux"}, {"architecture", "amd64"}};

  TarWriter tar;
  tar.add_directory(layer_dir, 0755);
  tar.add_file(layer_dir + "/VERSION", "1.0");
  tar.add_file(layer_dir + "/json", json::serialize(layer_json));
  tar.add_file(layer_path, layer_tar);
  tar.add_file(config_name, config_json);
  tar.add_file("manifest.json", json::serialize(manifest));
  if (!name.empty()) {
    json::object repositories{{name, json::object{{tag, layer_dir}}}};
    tar.add_file("repositories", json::serialize(repositories));
  }
  return tar.finish();
}

}  // namespace modhost::image
