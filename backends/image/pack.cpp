// pack(): an executable, its shared libraries and extra files as a
// one-layer docker-save archive.
#include <elf.h>
#include <fnmatch.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <set>
#include <sstream>

#include "backends/image/image.hpp"
#include "backends/image/internal.hpp"

namespace modhost::image {

namespace internal {

Result<std::string> read_host_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    const int err = errno;
    std::error_code ec;
    if (!std::filesystem::exists(path, ec))
      return Error(ErrorCode::not_found, "'" + path + "' does not exist");
    return Error(ErrorCode::failed_precondition, "cannot read '" + path + "': " + std::strerror(err));
  }
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) return Error(ErrorCode::failed_precondition, "cannot read '" + path + "'");
  return std::move(ss).str();
}

}  // namespace internal

namespace {

namespace fs = std::filesystem;

constexpr int kMaxSymlinks = 40;  // as the kernel's ELOOP limit
constexpr const char* kDefaultPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
constexpr const char* kPasswd =
    "root:x:0:0:root:/root:/bin/sh\n"
    "nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n";
constexpr const char* kGroup =
    "root:x:0:\n"
    "nogroup:x:65534:\n";

std::vector<std::string> components(std::string_view path) {
  std::vector<std::string> out;
  for (const auto& part : fs::path(path).lexically_normal()) {
    const std::string s = part.string();
    if (s.empty() || s == "/" || s == ".") continue;
    if (s == "..") {
      if (!out.empty()) out.pop_back();
      continue;
    }
    out.push_back(s);
  }
  return out;
}

std::string join(const std::vector<std::string>& parts, std::size_t begin, std::size_t end) {
  std::string out;
  for (std::size_t i = begin; i < end; ++i) {
    if (!out.empty()) out += '/';
    out += parts[i];
  }
  return out;
}

// Whether a PackSpec::exclude pattern leaves out the entry at HOST_PATH.
bool excluded(const fs::path& host_path, const std::vector<std::string>& patterns) {
  if (patterns.empty()) return false;
  const std::string name = host_path.filename().string();
  std::error_code ec;
  fs::path abs = fs::absolute(host_path, ec);
  const std::string full = (ec ? host_path : abs).lexically_normal().string();
  return std::any_of(patterns.begin(), patterns.end(), [&](const std::string& p) {
    const std::string& subject = p.find('/') != std::string::npos ? full : name;
    return ::fnmatch(p.c_str(), subject.c_str(), 0) == 0;
  });
}

// Calls VISIT(path, symlink status) for every entry under the directory DIR
// that EXCLUDE does not leave out, parents before their children; an
// excluded directory is not entered.
template <typename Visit>
Status walk_directory(const std::string& dir, const std::vector<std::string>& exclude, Visit&& visit) {
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(dir, fs::directory_options::none, ec);
       !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
    const fs::file_status s = it->symlink_status(ec);
    if (ec) break;
    if (excluded(it->path(), exclude)) {
      if (fs::is_directory(s)) it.disable_recursion_pending();
      continue;
    }
    MODHOST_TRY(visit(it->path(), s));
  }
  if (ec)
    return Error(ErrorCode::failed_precondition, "cannot read directory '" + dir + "': " + ec.message());
  return ok_status();
}

// The fields of an ELF header that decide whether one loader can load a file.
struct ElfKind {
  unsigned char elf_class = 0;
  unsigned char data = 0;
  std::uint16_t type = 0;
  std::uint16_t machine = 0;
};

// The ELF kind of a file on this machine; nullopt when it is no ELF file.
std::optional<ElfKind> elf_kind(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  char buf[EI_NIDENT + 4] = {};
  if (!in.read(buf, sizeof(buf))) return std::nullopt;
  if (std::memcmp(buf, ELFMAG, SELFMAG) != 0) return std::nullopt;
  ElfKind k;
  k.elf_class = static_cast<unsigned char>(buf[EI_CLASS]);
  k.data = static_cast<unsigned char>(buf[EI_DATA]);
  // e_type and e_machine follow e_ident in both classes, in the file's byte
  // order; only a little-endian file is ever compared with the entrypoint.
  std::memcpy(&k.type, buf + EI_NIDENT, 2);
  std::memcpy(&k.machine, buf + EI_NIDENT + 2, 2);
  return k;
}

// Whether the loader of an executable of kind EXE could load the object of
// kind K: an executable or shared object of the same class and machine.
bool loadable_with(const ElfKind& k, const ElfKind& exe) {
  return (k.type == ET_EXEC || k.type == ET_DYN) && k.elf_class == exe.elf_class && k.data == exe.data &&
         k.machine == exe.machine;
}

// The ELF files of this machine that adding SRC puts in the image and that
// the loader of an executable of kind EXE can load, appended to OUT.
Status added_elf_files(const std::string& src, const std::vector<std::string>& exclude, const ElfKind& exe,
                       std::vector<std::string>& out) {
  std::error_code ec;
  const fs::file_status st = fs::status(src, ec);  // follows a top-level symlink, as copy_in
  if (ec || !fs::exists(st)) return ok_status();   // copy_in reports it
  auto consider = [&](const std::string& path) {
    const auto k = elf_kind(path);
    if (k && loadable_with(*k, exe)) out.push_back(path);
  };
  if (fs::is_regular_file(st)) {
    consider(src);
    return ok_status();
  }
  if (!fs::is_directory(st)) return ok_status();
  return walk_directory(src, exclude, [&](const fs::path& p, const fs::file_status& s) -> Status {
    if (fs::is_regular_file(s)) consider(p.string());
    return ok_status();
  });
}

// The image's file tree, keyed by path without a leading '/'. A std::map
// iterates parents before their children, the order a tar needs.
class Layer {
 public:
  struct Node {
    TarEntry::Type type;
    std::uint32_t mode;
    std::string content;
    std::string target;
  };

  // Follows the image's own symlinks through the parent components of PATH,
  // so a file added under /lib lands in /usr/lib when /lib -> usr/lib.
  Result<std::string> resolve_parent(std::string_view path) const {
    std::vector<std::string> parts = components(path);
    for (int hops = 0; hops <= kMaxSymlinks; ++hops) {
      bool restarted = false;
      for (std::size_t i = 0; i + 1 < parts.size(); ++i) {
        const std::string prefix = join(parts, 0, i + 1);
        auto it = nodes_.find(prefix);
        if (it == nodes_.end() || it->second.type != TarEntry::Type::symlink) continue;
        const std::string& t = it->second.target;
        const std::string base = t.starts_with("/") ? t : "/" + join(parts, 0, i) + "/" + t;
        std::vector<std::string> next = components(base);
        next.insert(next.end(), parts.begin() + static_cast<std::ptrdiff_t>(i) + 1, parts.end());
        parts = std::move(next);
        restarted = true;
        break;
      }
      if (!restarted) {
        if (parts.empty())
          return Error(ErrorCode::invalid_argument, "'" + std::string(path) + "' names the image root");
        return join(parts, 0, parts.size());
      }
    }
    return Error(ErrorCode::invalid_argument,
                 "too many levels of symbolic links in image path '" + std::string(path) + "'");
  }

  Status add(std::string_view image_path, Node node) {
    MODHOST_ASSIGN_OR_RETURN(std::string path, resolve_parent(image_path));
    // Parent directories.
    const std::vector<std::string> parts = components(path);
    for (std::size_t i = 0; i + 1 < parts.size(); ++i) {
      const std::string dir = join(parts, 0, i + 1);
      auto [it, inserted] = nodes_.try_emplace(dir, Node{TarEntry::Type::directory, 0755, {}, {}});
      if (!inserted && it->second.type != TarEntry::Type::directory) {
        return Error(ErrorCode::invalid_argument,
                     "cannot add '/" + path + "' to the image: '/" + dir + "' is already a file there");
      }
    }
    auto it = nodes_.find(path);
    if (it != nodes_.end()) {
      Node& old = it->second;
      if (old.type == TarEntry::Type::directory && node.type == TarEntry::Type::directory) {
        old.mode = node.mode;
        return ok_status();
      }
      if (old.type == TarEntry::Type::directory && has_children(path)) {
        return Error(ErrorCode::invalid_argument,
                     "cannot add '/" + path + "' to the image: it is already a non-empty directory there");
      }
    }
    nodes_[path] = std::move(node);
    return ok_status();
  }

  bool contains(const std::string& path) const { return nodes_.count(path) > 0; }

  // Adds a path of this machine at the same path in the image, replaying
  // every symlink on the way (e.g. /lib64 -> usr/lib64 and the library's
  // own symlink) so the loader in the image resolves it the same way.
  Status mirror(const std::string& host_path, int depth = 0) {
    if (depth > kMaxSymlinks) {
      return Error(ErrorCode::invalid_argument, "too many levels of symbolic links at '" + host_path + "'");
    }
    const std::vector<std::string> parts = components(host_path);
    for (std::size_t i = 0; i < parts.size(); ++i) {
      const std::string rel = join(parts, 0, i + 1);
      const std::string host = "/" + rel;
      const bool last = i + 1 == parts.size();
      struct stat st {};
      if (::lstat(host.c_str(), &st) != 0) {
        return Error(ErrorCode::not_found,
                     "cannot add '" + host_path + "' to the image: '" + host + "': " + std::strerror(errno));
      }
      if (S_ISLNK(st.st_mode)) {
        std::error_code ec;
        const std::string target = fs::read_symlink(host, ec).string();
        if (ec)
          return Error(ErrorCode::failed_precondition, "cannot read symlink '" + host + "': " + ec.message());
        auto it = nodes_.find(rel);
        if (it == nodes_.end() || it->second.type != TarEntry::Type::symlink || it->second.target != target) {
          MODHOST_TRY(add(host, Node{TarEntry::Type::symlink, 0777, {}, target}));
        }
        const std::string resolved =
            target.starts_with("/") ? target : "/" + join(parts, 0, i) + "/" + target;
        const std::string rest = join(parts, i + 1, parts.size());
        return mirror(rest.empty() ? resolved : resolved + "/" + rest, depth + 1);
      }
      if (S_ISDIR(st.st_mode)) {
        if (!contains(rel))
          MODHOST_TRY(add(host, Node{TarEntry::Type::directory, st.st_mode & 07777, {}, {}}));
        continue;
      }
      if (!last || !S_ISREG(st.st_mode)) {
        return Error(ErrorCode::invalid_argument,
                     "cannot add '" + host + "' to the image: not a regular file");
      }
      MODHOST_ASSIGN_OR_RETURN(std::string content, internal::read_host_file(host));
      MODHOST_TRY(add(host, Node{TarEntry::Type::file, st.st_mode & 07777, std::move(content), {}}));
    }
    return ok_status();
  }

  // Adds SRC (a file, or a directory recursively but for what EXCLUDE
  // leaves out) of this machine at DEST.
  Status copy_in(const std::string& src, std::string dest, const std::vector<std::string>& exclude) {
    std::error_code ec;
    const fs::file_status st = fs::status(src, ec);  // follows a top-level symlink
    if (ec || !fs::exists(st))
      return Error(ErrorCode::not_found, "cannot add '" + src + "': it does not exist");
    if (dest.empty() || !dest.starts_with("/")) {
      return Error(ErrorCode::invalid_argument,
                   "destination '" + dest + "' for '" + src + "' must be an absolute path");
    }
    if (fs::is_regular_file(st)) {
      if (dest.ends_with("/")) dest += fs::path(src).filename().string();
      return add_host_file(src, dest);
    }
    if (!fs::is_directory(st)) {
      return Error(ErrorCode::invalid_argument, "cannot add '" + src + "': not a regular file or directory");
    }
    if (dest != "/") {
      MODHOST_TRY(
          add(dest,
              Node{TarEntry::Type::directory, static_cast<std::uint32_t>(st.permissions()) & 07777, {}, {}}));
    }
    return walk_directory(src, exclude, [&](const fs::path& p, const fs::file_status& s) -> Status {
      const fs::path rel = p.lexically_relative(src);
      const std::string to = (dest.ends_with("/") ? dest : dest + "/") + rel.string();
      if (fs::is_symlink(s)) {
        std::error_code lec;
        const std::string target = fs::read_symlink(p, lec).string();
        if (lec) {
          return Error(ErrorCode::failed_precondition,
                       "cannot read symlink '" + p.string() + "': " + lec.message());
        }
        return add(to, Node{TarEntry::Type::symlink, 0777, {}, target});
      }
      if (fs::is_directory(s)) {
        return add(
            to, Node{TarEntry::Type::directory, static_cast<std::uint32_t>(s.permissions()) & 07777, {}, {}});
      }
      if (fs::is_regular_file(s)) return add_host_file(p.string(), to);
      // Sockets, fifos and devices are skipped: an image layer cannot use them.
      return ok_status();
    });
  }

  Status add_host_file(const std::string& src, const std::string& dest,
                       std::optional<std::uint32_t> mode = {}) {
    std::error_code ec;
    const auto perms = fs::status(src, ec).permissions();
    if (ec) return Error(ErrorCode::not_found, "cannot add '" + src + "': " + ec.message());
    MODHOST_ASSIGN_OR_RETURN(std::string content, internal::read_host_file(src));
    return add(dest, Node{TarEntry::Type::file,
                          mode.value_or(static_cast<std::uint32_t>(perms) & 07777),
                          std::move(content),
                          {}});
  }

  std::string tar() const {
    TarWriter w;
    for (const auto& [path, node] : nodes_) {
      switch (node.type) {
        case TarEntry::Type::directory:
          w.add_directory(path, node.mode);
          break;
        case TarEntry::Type::symlink:
          w.add_symlink(path, node.target);
          break;
        default:
          w.add_file(path, node.content, node.mode);
          break;
      }
    }
    return w.finish();
  }

 private:
  bool has_children(const std::string& dir) const {
    auto it = nodes_.lower_bound(dir + "/");
    return it != nodes_.end() && it->first.starts_with(dir + "/");
  }

  std::map<std::string, Node> nodes_;
};

// An entrypoint given as a bare name is looked up in $PATH, as a shell would.
Result<std::string> find_executable(const std::string& name) {
  if (name.empty()) return Error(ErrorCode::invalid_argument, "no entrypoint given");
  if (name.find('/') != std::string::npos) return name;
  const char* path = std::getenv("PATH");
  std::string_view dirs = path != nullptr ? path : "/usr/local/bin:/usr/bin:/bin";
  while (true) {
    const std::size_t c = dirs.find(':');
    const std::string dir(dirs.substr(0, c));
    const std::string candidate = (dir.empty() ? "." : dir) + "/" + name;
    if (::access(candidate.c_str(), X_OK) == 0) return candidate;
    if (c == std::string_view::npos) break;
    dirs.remove_prefix(c + 1);
  }
  return Error(ErrorCode::not_found, "entrypoint '" + name + "' not found in $PATH");
}

}  // namespace

Result<std::string> pack_with_symlinks(const PackSpec& spec,
                                       const std::vector<std::pair<std::string, std::string>>& symlinks) {
  if (spec.reference.empty())
    return Error(ErrorCode::invalid_argument, "pack: no image reference (name:tag) given");
  MODHOST_ASSIGN_OR_RETURN(const std::string entrypoint, find_executable(spec.entrypoint));
  struct stat st {};
  if (::stat(entrypoint.c_str(), &st) != 0) {
    return Error(ErrorCode::not_found, "entrypoint '" + entrypoint + "': " + std::strerror(errno));
  }
  if (!S_ISREG(st.st_mode)) {
    return Error(ErrorCode::invalid_argument, "entrypoint '" + entrypoint + "' is not a regular file");
  }
  auto deps = elf_dependencies(entrypoint);
  if (!deps) return std::move(deps).error().context("cannot pack '" + entrypoint + "'");
  std::vector<std::string> libraries = std::move(deps).value();

  // The libraries of the ELF files added, which the image's loader resolves
  // from the same system paths as the entrypoint's.
  if (spec.add_libraries) {
    std::vector<std::string> elf_files;
    if (const auto exe = elf_kind(entrypoint)) {
      for (const auto& [src, dest] : spec.add)
        MODHOST_TRY(added_elf_files(src, spec.exclude, *exe, elf_files));
    }
    std::set<std::string> seen(libraries.begin(), libraries.end());
    for (const std::string& file : elf_files) {
      auto more = elf_dependencies(file);
      if (!more) {
        return std::move(more).error().context("cannot pack '" + spec.reference +
                                               "': the libraries of the added file '" + file + "'");
      }
      for (std::string& lib : more.value()) {
        if (seen.insert(lib).second) libraries.push_back(std::move(lib));
      }
    }
  }

  Layer layer;
  MODHOST_TRY(layer.add("/etc", Layer::Node{TarEntry::Type::directory, 0755, {}, {}}));
  MODHOST_TRY(layer.add("/etc/passwd", Layer::Node{TarEntry::Type::file, 0644, kPasswd, {}}));
  MODHOST_TRY(layer.add("/etc/group", Layer::Node{TarEntry::Type::file, 0644, kGroup, {}}));
  MODHOST_TRY(layer.add("/tmp", Layer::Node{TarEntry::Type::directory, 01777, {}, {}}));
  for (const std::string& lib : libraries) {
    auto s = layer.mirror(lib);
    if (!s) return std::move(s).error().context("cannot pack '" + entrypoint + "'");
  }
  const std::string name = fs::path(entrypoint).filename().string();
  const std::string image_entrypoint = "/bin/" + name;
  MODHOST_TRY(layer.add_host_file(entrypoint, image_entrypoint, (st.st_mode & 07777) | 0555));
  for (const auto& [src, dest] : spec.add) {
    auto s = layer.copy_in(src, dest, spec.exclude);
    if (!s) return std::move(s).error().context("cannot pack '" + spec.reference + "'");
  }
  for (const auto& [link, target] : symlinks) {
    if (!link.starts_with("/")) {
      return Error(ErrorCode::invalid_argument, "symlink path '" + link + "' must be absolute");
    }
    MODHOST_TRY(layer.add(link, Layer::Node{TarEntry::Type::symlink, 0777, {}, target}));
  }

  ImageConfig config;
  config.reference = spec.reference;
  config.entrypoint = {image_entrypoint};
  config.cmd = spec.args;
  config.env = spec.env;
  const bool has_path = std::any_of(spec.env.begin(), spec.env.end(),
                                    [](const std::string& e) { return e.starts_with("PATH="); });
  if (!has_path) config.env.insert(config.env.begin(), kDefaultPath);
  return write_docker_archive(config, layer.tar());
}

Result<std::string> pack(const PackSpec& spec) { return pack_with_symlinks(spec, {}); }

}  // namespace modhost::image
