#include "backends/native/image_store.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <boost/json.hpp>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <set>
#include <sstream>

#include "backends/image/image.hpp"
#include "backends/image/sha256.hpp"

namespace modhost::backend::native {
namespace {

namespace fs = std::filesystem;
namespace json = boost::json;

Error bad(const std::string& path, const std::string& why) {
  return Error(ErrorCode::invalid_argument, "'" + path + "' is not a usable image archive: " + why);
}

Result<std::string> read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  if (!in) return Error(ErrorCode::not_found, "cannot read '" + p.string() + "'");
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

Status write_atomically(const fs::path& p, std::string_view content) {
  fs::path tmp = p;
  tmp += ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out.write(content.data(), static_cast<std::streamsize>(content.size()));
    if (!out) return Error(ErrorCode::unavailable, "cannot write '" + tmp.string() + "'");
  }
  std::error_code ec;
  fs::rename(tmp, p, ec);
  if (ec) return Error(ErrorCode::unavailable, "cannot write '" + p.string() + "': " + ec.message());
  return ok_status();
}

std::vector<std::string> strings(const json::value* v) {
  std::vector<std::string> out;
  if (v == nullptr || !v->is_array()) return out;
  for (const auto& s : v->as_array()) {
    if (s.is_string()) out.emplace_back(s.as_string());
  }
  return out;
}

std::string string_at(const json::value& v, std::string_view key) {
  if (!v.is_object()) return "";
  const json::value* s = v.as_object().if_contains(key);
  return s != nullptr && s->is_string() ? std::string(s->as_string()) : "";
}

// "name" -> "name:latest"; a digest or a tag is kept.
std::string normalize_reference(std::string_view ref) {
  std::string r(ref);
  const auto slash = r.rfind('/');
  const auto colon = r.rfind(':');
  if (r.find('@') == std::string::npos &&
      (colon == std::string::npos || (slash != std::string::npos && colon < slash)))
    r += ":latest";
  return r;
}

// The files of an archive or a layout directory, by relative path.
class Source {
 public:
  static Result<Source> open(const std::string& path) {
    Source s;
    s.path_ = path;
    std::error_code ec;
    if (fs::is_directory(path, ec)) {
      s.dir_ = path;
      return s;
    }
    MODHOST_ASSIGN_OR_RETURN(std::string bytes, read_file(path));
    if (image::is_gzip(bytes)) {
      auto plain = image::gzip_decompress(bytes);
      if (!plain.ok()) return bad(path, plain.error().message());
      bytes = std::move(plain).value();
    }
    auto entries = image::read_tar(bytes);
    if (!entries.ok()) return bad(path, entries.error().message());
    for (auto& e : entries.value()) {
      if (e.type == image::TarEntry::Type::file)
        s.files_[fs::path(e.path).lexically_normal().string()] = std::move(e.content);
    }
    return s;
  }

  bool has(const std::string& name) const {
    if (dir_.empty()) return entry(name) != nullptr;
    std::error_code ec;
    return safe(name) && fs::is_regular_file(fs::path(dir_) / name, ec);
  }

  Result<std::string> get(const std::string& name) const {
    if (!safe(name)) return bad(path_, "the path '" + name + "' leaves the archive");
    if (!dir_.empty()) {
      auto r = read_file(fs::path(dir_) / name);
      if (!r.ok()) return bad(path_, "'" + name + "' is missing");
      return r;
    }
    const std::string* content = entry(name);
    if (content == nullptr) return bad(path_, "'" + name + "' is missing");
    return *content;
  }

  // The size of an entry that is stored plainly (not gzip), without
  // reading it; nothing for a compressed or missing entry.
  std::optional<std::uint64_t> plain_size(const std::string& name) const {
    if (!safe(name)) return std::nullopt;
    if (dir_.empty()) {
      const std::string* content = entry(name);
      if (content == nullptr || image::is_gzip(*content)) return std::nullopt;
      return content->size();
    }
    std::ifstream in(fs::path(dir_) / name, std::ios::binary);
    char head[2] = {0, 0};
    if (!in || !in.read(head, 2) || image::is_gzip(std::string_view(head, 2))) return std::nullopt;
    std::error_code ec;
    auto size = fs::file_size(fs::path(dir_) / name, ec);
    if (ec) return std::nullopt;
    return size;
  }

  const std::string& path() const { return path_; }

 private:
  // An archive's entry by its path, or null.
  const std::string* entry(const std::string& name) const {
    auto it = files_.find(fs::path(name).lexically_normal().string());
    return it == files_.end() ? nullptr : &it->second;
  }
  static bool safe(const std::string& name) {
    fs::path p = fs::path(name).lexically_normal();
    return !name.empty() && !p.is_absolute() && p.begin() != p.end() && *p.begin() != "..";
  }
  std::string path_;
  std::string dir_;
  std::map<std::string, std::string> files_;
};

// One image as an archive describes it, before anything is unpacked.
struct Described {
  std::string config;  // bytes
  std::vector<std::string> layer_paths;
  std::vector<std::string> references;
};

Result<json::value> parse(const Source& src, const std::string& what, std::string_view text) {
  boost::system::error_code ec;
  json::value v = json::parse(text, ec);
  if (ec) return bad(src.path(), what + " is not JSON");
  return v;
}

Result<std::vector<Described>> describe_docker_save(const Source& src) {
  MODHOST_ASSIGN_OR_RETURN(std::string text, src.get("manifest.json"));
  MODHOST_ASSIGN_OR_RETURN(json::value manifest, parse(src, "manifest.json", text));
  if (!manifest.is_array() || manifest.as_array().empty())
    return bad(src.path(), "manifest.json lists no image");
  std::vector<Described> out;
  for (const auto& m : manifest.as_array()) {
    Described d;
    const std::string config_path = string_at(m, "Config");
    MODHOST_ASSIGN_OR_RETURN(d.config, src.get(config_path));
    // A config named by its digest must hash to it.
    const std::string stem = fs::path(config_path).stem().string();
    if (stem.size() == 64 && image::sha256_hex(d.config) != stem) {
      return bad(src.path(), "the config '" + config_path + "' does not match its digest");
    }
    d.layer_paths = strings(m.is_object() ? m.as_object().if_contains("Layers") : nullptr);
    d.references = strings(m.is_object() ? m.as_object().if_contains("RepoTags") : nullptr);
    out.push_back(std::move(d));
  }
  return out;
}

Result<std::string> blob(const Source& src, const std::string& digest) {
  if (digest.rfind("sha256:", 0) != 0 || digest.size() != 71)
    return bad(src.path(), "bad digest '" + digest + "'");
  MODHOST_ASSIGN_OR_RETURN(std::string bytes, src.get("blobs/sha256/" + digest.substr(7)));
  if (image::sha256_hex(bytes) != digest.substr(7)) {
    return bad(src.path(), "the blob " + digest.substr(0, 19) + "... does not match its digest");
  }
  return bytes;
}

Result<std::vector<Described>> describe_oci(const Source& src) {
  MODHOST_ASSIGN_OR_RETURN(std::string text, src.get("index.json"));
  MODHOST_ASSIGN_OR_RETURN(json::value index, parse(src, "index.json", text));
  const json::value* manifests = index.is_object() ? index.as_object().if_contains("manifests") : nullptr;
  if (manifests == nullptr || !manifests->is_array() || manifests->as_array().empty())
    return bad(src.path(), "index.json lists no manifest");
  std::vector<Described> out;
  for (const auto& entry : manifests->as_array()) {
    MODHOST_ASSIGN_OR_RETURN(std::string mtext, blob(src, string_at(entry, "digest")));
    MODHOST_ASSIGN_OR_RETURN(json::value manifest, parse(src, "a manifest", mtext));
    // A nested index: its first manifest.
    if (manifest.is_object() && manifest.as_object().contains("manifests")) {
      const auto& inner = manifest.at("manifests");
      if (!inner.is_array() || inner.as_array().empty()) return bad(src.path(), "an empty nested index");
      MODHOST_ASSIGN_OR_RETURN(mtext, blob(src, string_at(inner.as_array().front(), "digest")));
      MODHOST_ASSIGN_OR_RETURN(manifest, parse(src, "a manifest", mtext));
    }
    Described d;
    const json::value* config = manifest.is_object() ? manifest.as_object().if_contains("config") : nullptr;
    if (config == nullptr) return bad(src.path(), "a manifest without a config");
    MODHOST_ASSIGN_OR_RETURN(d.config, blob(src, string_at(*config, "digest")));
    if (const json::value* layers = manifest.as_object().if_contains("layers");
        layers && layers->is_array()) {
      for (const auto& l : layers->as_array()) {
        const std::string digest = string_at(l, "digest");
        if (digest.rfind("sha256:", 0) != 0) return bad(src.path(), "bad layer digest '" + digest + "'");
        MODHOST_TRY(blob(src, digest));  // checked here, read again below
        d.layer_paths.push_back("blobs/sha256/" + digest.substr(7));
      }
    }
    std::string name;
    if (const json::value* a = entry.as_object().if_contains("annotations"); a && a->is_object()) {
      name = string_at(*a, "io.containerd.image.name");
      if (name.empty()) name = string_at(*a, "org.opencontainers.image.ref.name");
    }
    if (!name.empty()) d.references.push_back(name);
    out.push_back(std::move(d));
  }
  return out;
}

json::value to_json(const StoredImage& i) {
  auto arr = [](const std::vector<std::string>& v) {
    json::array a;
    for (const auto& s : v) a.emplace_back(s);
    return a;
  };
  return json::object{{"id", i.id},
                      {"references", arr(i.references)},
                      {"layers", arr(i.layers)},
                      {"entrypoint", arr(i.entrypoint)},
                      {"cmd", arr(i.cmd)},
                      {"env", arr(i.env)},
                      {"workdir", i.workdir},
                      {"user", i.user},
                      {"size", i.size_bytes}};
}

StoredImage from_json(const json::value& v) {
  StoredImage i;
  const json::object* o = v.is_object() ? &v.as_object() : nullptr;
  if (o == nullptr) return i;
  i.id = string_at(v, "id");
  i.references = strings(o->if_contains("references"));
  i.layers = strings(o->if_contains("layers"));
  i.entrypoint = strings(o->if_contains("entrypoint"));
  i.cmd = strings(o->if_contains("cmd"));
  i.env = strings(o->if_contains("env"));
  i.workdir = string_at(v, "workdir");
  i.user = string_at(v, "user");
  if (const json::value* s = o->if_contains("size"); s && s->is_number())
    i.size_bytes = s->to_number<std::uint64_t>();
  return i;
}

// Holds the store's lock for a change.
class Locked {
 public:
  explicit Locked(const fs::path& lock) : lock_fd_(::open(lock.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600)) {
    if (lock_fd_ >= 0) ::flock(lock_fd_, LOCK_EX);
  }
  ~Locked() {
    if (lock_fd_ >= 0) ::close(lock_fd_);
  }

 private:
  int lock_fd_;
};

}  // namespace

struct ImageStore::Impl {
  fs::path root;
  fs::path layers() const { return root / "layers"; }
  fs::path images() const { return root / "images"; }

  Result<std::vector<StoredImage>> all() const {
    std::vector<StoredImage> out;
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(images(), ec)) {
      if (e.path().extension() != ".json") continue;
      auto text = read_file(e.path());
      if (!text.ok()) continue;
      boost::system::error_code jec;
      json::value v = json::parse(text.value(), jec);
      if (!jec) out.push_back(from_json(v));
    }
    std::sort(out.begin(), out.end(), [](const StoredImage& a, const StoredImage& b) { return a.id < b.id; });
    return out;
  }

  // Removes layers no image uses, and what a failed unpack left.
  void collect_garbage() const {
    std::set<std::string> used;
    if (auto images = all(); images.ok()) {
      for (const auto& i : images.value()) used.insert(i.layers.begin(), i.layers.end());
    }
    std::error_code ec;
    std::vector<fs::path> gone;
    for (const auto& e : fs::directory_iterator(layers(), ec)) {
      if (!used.count(e.path().filename().string())) gone.push_back(e.path());
    }
    for (const auto& p : gone) fs::remove_all(p, ec);
  }

  // Unpacks one layer blob (if the store lacks it); returns its diff id and size.
  Result<std::pair<std::string, std::uint64_t>> unpack(const Source& src, const std::string& blob_path,
                                                       const std::string& expected) const {
    // A layer the store holds already is not read again: its diff id comes
    // from the config, whose own digest was checked, and the stored layer
    // was checked against it when it was unpacked.
    std::error_code ec;
    if (expected.size() == 71 && expected.rfind("sha256:", 0) == 0 &&
        expected.find_first_not_of("0123456789abcdef", 7) == std::string::npos &&
        fs::exists(layers() / expected.substr(7), ec)) {
      if (auto size = src.plain_size(blob_path)) return std::make_pair(expected.substr(7), *size);
    }
    MODHOST_ASSIGN_OR_RETURN(std::string bytes, src.get(blob_path));
    if (image::is_gzip(bytes)) {
      auto plain = image::gzip_decompress(bytes);
      if (!plain.ok()) return bad(src.path(), "layer '" + blob_path + "': " + plain.error().message());
      bytes = std::move(plain).value();
    }
    const std::string diff_id = image::sha256_hex(bytes);
    if (!expected.empty() && expected != "sha256:" + diff_id) {
      return bad(src.path(), "layer '" + blob_path + "' does not match its diff id in the config");
    }
    const fs::path final_dir = layers() / diff_id;
    if (fs::exists(final_dir, ec)) return std::make_pair(diff_id, static_cast<std::uint64_t>(bytes.size()));
    const fs::path tmp = layers() / (".tmp-" + diff_id);
    fs::remove_all(tmp, ec);
    if (Status s = image::extract_layer(bytes, tmp.string()); !s.ok()) {
      fs::remove_all(tmp, ec);
      return bad(src.path(), "layer '" + blob_path + "': " + s.error().message());
    }
    fs::rename(tmp, final_dir, ec);
    if (ec) {
      fs::remove_all(tmp, ec);
      return Error(ErrorCode::unavailable,
                   "cannot store layer " + diff_id.substr(0, 12) + ": " + ec.message());
    }
    return std::make_pair(diff_id, static_cast<std::uint64_t>(bytes.size()));
  }

  Result<StoredImage> store(const Source& src, const Described& d) const {
    boost::system::error_code jec;
    json::value config = json::parse(d.config, jec);
    if (jec || !config.is_object()) return bad(src.path(), "its image config is not JSON");
    StoredImage img;
    img.id = image::sha256_hex(d.config);
    for (const auto& r : d.references) img.references.push_back(normalize_reference(r));
    if (const json::value* c = config.as_object().if_contains("config"); c && c->is_object()) {
      img.entrypoint = strings(c->as_object().if_contains("Entrypoint"));
      img.cmd = strings(c->as_object().if_contains("Cmd"));
      img.env = strings(c->as_object().if_contains("Env"));
      img.workdir = string_at(*c, "WorkingDir");
      img.user = string_at(*c, "User");
    }
    std::vector<std::string> diff_ids;
    if (const json::value* rootfs = config.as_object().if_contains("rootfs"); rootfs && rootfs->is_object()) {
      diff_ids = strings(rootfs->as_object().if_contains("diff_ids"));
    }
    if (!diff_ids.empty() && diff_ids.size() != d.layer_paths.size()) {
      return bad(src.path(), "its config names " + std::to_string(diff_ids.size()) +
                                 " layers, its manifest " + std::to_string(d.layer_paths.size()));
    }
    for (size_t i = 0; i < d.layer_paths.size(); ++i) {
      MODHOST_ASSIGN_OR_RETURN(auto layer,
                               unpack(src, d.layer_paths[i], diff_ids.empty() ? "" : diff_ids[i]));
      img.layers.push_back(layer.first);
      img.size_bytes += layer.second;
    }
    return img;
  }
};

ImageStore::ImageStore(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
ImageStore::~ImageStore() = default;

Result<std::unique_ptr<ImageStore>> ImageStore::open(const std::string& root) {
  auto impl = std::make_unique<Impl>();
  impl->root = root;
  std::error_code ec;
  fs::create_directories(impl->layers(), ec);
  fs::create_directories(impl->images(), ec);
  if (ec)
    return Error(ErrorCode::unavailable, "cannot make the image store in '" + root + "': " + ec.message());
  return std::unique_ptr<ImageStore>(new ImageStore(std::move(impl)));
}

const std::string& ImageStore::root() const {
  static thread_local std::string s;
  s = impl_->root.string();
  return s;
}

std::vector<std::string> ImageStore::layer_dirs(const StoredImage& image) const {
  std::vector<std::string> out;
  for (const auto& l : image.layers) out.push_back((impl_->layers() / l).string());
  return out;
}

Result<std::vector<StoredImage>> ImageStore::load(const std::string& path) {
  MODHOST_ASSIGN_OR_RETURN(Source src, Source::open(path));
  std::vector<Described> described;
  if (src.has("manifest.json")) {
    MODHOST_ASSIGN_OR_RETURN(described, describe_docker_save(src));
  } else if (src.has("index.json")) {
    MODHOST_ASSIGN_OR_RETURN(described, describe_oci(src));
  } else {
    return bad(path, "it has neither a manifest.json (docker save) nor an index.json (OCI layout)");
  }
  Locked lock(impl_->root / ".lock");
  std::vector<StoredImage> loaded;
  for (const auto& d : described) {
    auto img = impl_->store(src, d);
    if (!img.ok()) {
      impl_->collect_garbage();  // layers this load unpacked and no image uses
      return img.error();
    }
    loaded.push_back(std::move(img).value());
  }
  // References move to the images just loaded.
  MODHOST_ASSIGN_OR_RETURN(std::vector<StoredImage> existing, impl_->all());
  for (auto& old : existing) {
    bool changed = false;
    for (const auto& n : loaded) {
      if (old.id == n.id) continue;
      for (const auto& r : n.references) changed |= std::erase(old.references, r) > 0;
    }
    if (changed)
      MODHOST_TRY(write_atomically(impl_->images() / (old.id + ".json"), json::serialize(to_json(old))));
  }
  for (auto& n : loaded) {
    // Loading an image again keeps the references it had.
    for (const auto& old : existing) {
      if (old.id != n.id) continue;
      for (const auto& r : old.references) {
        if (std::find(n.references.begin(), n.references.end(), r) == n.references.end())
          n.references.push_back(r);
      }
    }
    MODHOST_TRY(write_atomically(impl_->images() / (n.id + ".json"), json::serialize(to_json(n))));
  }
  return loaded;
}

Result<std::vector<StoredImage>> ImageStore::list() { return impl_->all(); }

Result<StoredImage> ImageStore::find(std::string_view reference) {
  MODHOST_ASSIGN_OR_RETURN(std::vector<StoredImage> all, impl_->all());
  const std::string want = normalize_reference(reference);
  std::optional<StoredImage> by_prefix;
  int prefixed = 0;
  for (const auto& i : all) {
    for (const auto& r : i.references) {
      if (r == want) return i;
    }
    if (reference.size() >= 4 && i.id.rfind(reference, 0) == 0) {
      by_prefix = i;
      ++prefixed;
    }
  }
  if (prefixed == 1) return *by_prefix;
  if (prefixed > 1)
    return Error(ErrorCode::invalid_argument, "the id prefix '" + std::string(reference) + "' is ambiguous");
  return Error(ErrorCode::not_found,
               "image '" + std::string(reference) +
                   "' not found in the native image store; load it with 'modhost image load'");
}

Status ImageStore::remove(std::string_view reference) {
  Locked lock(impl_->root / ".lock");
  MODHOST_ASSIGN_OR_RETURN(StoredImage img, find(reference));
  const std::string want = normalize_reference(reference);
  std::error_code ec;
  if (std::erase(img.references, want) > 0 && !img.references.empty()) {
    return write_atomically(impl_->images() / (img.id + ".json"), json::serialize(to_json(img)));
  }
  fs::remove(impl_->images() / (img.id + ".json"), ec);
  impl_->collect_garbage();
  return ok_status();
}

}  // namespace modhost::backend::native
