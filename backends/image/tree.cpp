// Directory trees to and from tar archives: files artifacts and image layers.
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "backends/image/image.hpp"
#include "backends/image/internal.hpp"

namespace modhost::image {
namespace {

namespace fs = std::filesystem;

Status add_entry(TarWriter& tar, const fs::path& host_path, const std::string& archive_path) {
  struct stat st {};
  if (::lstat(host_path.c_str(), &st) != 0) {
    return Error(ErrorCode::not_found, "cannot read '" + host_path.string() + "': " + std::strerror(errno));
  }
  std::uint32_t mode = st.st_mode & 07777;
  if (S_ISLNK(st.st_mode)) {
    std::error_code ec;
    fs::path target = fs::read_symlink(host_path, ec);
    if (ec) return Error(ErrorCode::failed_precondition, "cannot read link '" + host_path.string() + "'");
    tar.add_symlink(archive_path, target.string());
  } else if (S_ISDIR(st.st_mode)) {
    if (!archive_path.empty()) tar.add_directory(archive_path, mode);
    std::vector<fs::path> children;
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(host_path, ec)) children.push_back(e.path());
    if (ec)
      return Error(ErrorCode::failed_precondition,
                   "cannot list '" + host_path.string() + "': " + ec.message());
    std::sort(children.begin(), children.end());  // reproducible archives
    for (const auto& child : children) {
      std::string name =
          archive_path.empty() ? child.filename().string() : archive_path + "/" + child.filename().string();
      MODHOST_TRY(add_entry(tar, child, name));
    }
  } else if (S_ISREG(st.st_mode)) {
    MODHOST_ASSIGN_OR_RETURN(std::string content, internal::read_host_file(host_path.string()));
    tar.add_file(archive_path, content, mode);
  }
  // Sockets, devices and fifos are not carried.
  return ok_status();
}

// Normalised relative path, or an error if it is absolute or climbs out.
Result<fs::path> safe_relative(const std::string& entry_path) {
  fs::path p(entry_path);
  if (p.is_absolute())
    return Error(ErrorCode::invalid_argument, "archive entry '" + entry_path + "' is an absolute path");
  fs::path norm = p.lexically_normal();
  for (const auto& part : norm) {
    if (part == "..") {
      return Error(ErrorCode::invalid_argument,
                   "archive entry '" + entry_path + "' leaves the destination through '..'");
    }
  }
  return norm;
}

// Refuses to go through a symlink on the way to `rel` under `root`.
Status check_no_symlink_parents(const fs::path& root, const fs::path& rel) {
  fs::path cur = root;
  fs::path parent = rel.parent_path();
  for (const auto& part : parent) {
    if (part.empty() || part == ".") continue;
    cur /= part;
    struct stat st {};
    if (::lstat(cur.c_str(), &st) != 0) return ok_status();  // created below, as a directory
    if (S_ISLNK(st.st_mode)) {
      return Error(ErrorCode::invalid_argument, "archive entry '" + rel.string() +
                                                    "' would be written through the symlink '" +
                                                    (cur.lexically_relative(root)).string() + "'");
    }
  }
  return ok_status();
}

}  // namespace

Status extract_entries(std::string_view archive, const std::string& dest, bool layer);

Result<std::string> tar_tree(const std::string& source) {
  std::error_code ec;
  fs::path src(source);
  if (!fs::exists(fs::symlink_status(src, ec)))
    return Error(ErrorCode::not_found, "'" + source + "' not found");
  TarWriter tar;
  if (fs::is_directory(fs::symlink_status(src, ec))) {
    MODHOST_TRY(add_entry(tar, src, ""));
  } else {
    MODHOST_TRY(add_entry(tar, src, src.filename().string()));
  }
  return tar.finish();
}

Result<std::string> tar_path(const std::string& source) {
  std::error_code ec;
  fs::path src(source);
  if (!fs::exists(fs::symlink_status(src, ec)))
    return Error(ErrorCode::not_found, "'" + source + "' not found");
  std::string name = src.filename().string();
  if (name.empty()) name = src.parent_path().filename().string();  // "/dir/"
  if (name.empty()) return tar_tree(source);                       // "/": the contents
  TarWriter tar;
  MODHOST_TRY(add_entry(tar, src, name));
  return tar.finish();
}

Status extract_tar(std::string_view archive, const std::string& dest) {
  return extract_entries(archive, dest, false);
}

Status extract_layer(std::string_view archive, const std::string& dest) {
  return extract_entries(archive, dest, true);
}

namespace {

// A whiteout as overlayfs reads it: a 0:0 character device in place of the
// name (".wh.NAME"), or the opaque mark on a directory (".wh..wh..opq").
Status apply_whiteout(const fs::path& root, const fs::path& rel, bool& handled) {
  const std::string name = rel.filename().string();
  handled = false;
  if (name.rfind(".wh.", 0) != 0) return ok_status();
  handled = true;
  fs::path dir = root / rel.parent_path();
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (name == ".wh..wh..opq") {
    if (::lsetxattr(dir.c_str(), "trusted.overlay.opaque", "y", 1, 0) != 0) {
      return Error(ErrorCode::failed_precondition,
                   "cannot mark '" + dir.string() + "' opaque: " + std::strerror(errno) + " (needs root)");
    }
    return ok_status();
  }
  fs::path hidden = dir / name.substr(4);
  if (name.size() <= 4 || hidden.filename() == "..") {
    return Error(ErrorCode::invalid_argument, "bad whiteout '" + rel.string() + "'");
  }
  struct stat st {};
  if (::lstat(hidden.c_str(), &st) == 0) fs::remove_all(hidden, ec);
  if (::mknod(hidden.c_str(), S_IFCHR | 0000, ::makedev(0, 0)) != 0) {
    return Error(ErrorCode::failed_precondition, "cannot make the whiteout '" + hidden.string() +
                                                     "': " + std::strerror(errno) + " (needs root)");
  }
  return ok_status();
}

}  // namespace

Status extract_entries(std::string_view archive, const std::string& dest, bool layer) {
  MODHOST_ASSIGN_OR_RETURN(std::vector<TarEntry> entries, read_tar(archive));
  // Every path is checked before anything is written.
  std::vector<fs::path> rels;
  for (const auto& e : entries) {
    MODHOST_ASSIGN_OR_RETURN(fs::path rel, safe_relative(e.path));
    rels.push_back(rel);
  }
  std::error_code ec;
  fs::create_directories(dest, ec);
  if (ec) return Error(ErrorCode::failed_precondition, "cannot create '" + dest + "': " + ec.message());
  fs::path root = fs::canonical(dest, ec);
  for (size_t i = 0; i < entries.size(); ++i) {
    const TarEntry& e = entries[i];
    const fs::path& rel = rels[i];
    if (rel.empty() || rel == ".") continue;
    MODHOST_TRY(check_no_symlink_parents(root, rel));
    if (layer) {
      bool whiteout = false;
      MODHOST_TRY(apply_whiteout(root, rel, whiteout));
      if (whiteout) continue;
    }
    fs::path out = root / rel;
    fs::create_directories(out.parent_path(), ec);
    struct stat st {};
    bool exists = ::lstat(out.c_str(), &st) == 0;
    switch (e.type) {
      case TarEntry::Type::directory:
        if (exists && S_ISLNK(st.st_mode)) ::unlink(out.c_str());
        fs::create_directories(out, ec);
        ::chmod(out.c_str(), e.mode & 07777);
        break;
      case TarEntry::Type::file: {
        if (exists) ::unlink(out.c_str());  // never write through an existing symlink
        int fd = ::open(out.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, e.mode & 07777);
        if (fd < 0)
          return Error(ErrorCode::failed_precondition,
                       "cannot create '" + out.string() + "': " + std::strerror(errno));
        size_t done = 0;
        while (done < e.content.size()) {
          ssize_t n = ::write(fd, e.content.data() + done, e.content.size() - done);
          if (n < 0 && errno == EINTR) continue;
          if (n <= 0) {
            ::close(fd);
            return Error(ErrorCode::failed_precondition, "cannot write '" + out.string() + "'");
          }
          done += static_cast<size_t>(n);
        }
        ::fchmod(fd, e.mode & 07777);
        ::close(fd);
        break;
      }
      case TarEntry::Type::symlink:
        if (exists) ::unlink(out.c_str());
        if (::symlink(e.link_target.c_str(), out.c_str()) != 0) {
          return Error(ErrorCode::failed_precondition, "cannot create link '" + out.string() + "'");
        }
        break;
      case TarEntry::Type::hardlink: {
        MODHOST_ASSIGN_OR_RETURN(fs::path target, safe_relative(e.link_target));
        MODHOST_TRY(check_no_symlink_parents(root, target));
        if (exists) ::unlink(out.c_str());
        if (::link((root / target).c_str(), out.c_str()) != 0) {
          return Error(ErrorCode::failed_precondition, "cannot create hard link '" + out.string() + "'");
        }
        break;
      }
      case TarEntry::Type::other:
        break;
    }
  }
  return ok_status();
}

namespace {

bool is_whiteout(const struct stat& st) { return S_ISCHR(st.st_mode) && st.st_rdev == ::makedev(0, 0); }

bool is_opaque(const fs::path& dir) {
  char v = 0;
  return ::lgetxattr(dir.c_str(), "trusted.overlay.opaque", &v, 1) == 1 && v == 'y';
}

Status apply_dir(const fs::path& layer_root, const fs::path& dest_root, const fs::path& rel) {
  std::error_code ec;
  std::vector<fs::path> children;
  for (const auto& e : fs::directory_iterator(layer_root / rel, ec)) children.push_back(e.path().filename());
  if (ec) return Error(ErrorCode::failed_precondition, "cannot list '" + (layer_root / rel).string() + "'");
  std::sort(children.begin(), children.end());
  for (const auto& name : children) {
    const fs::path child = rel / name;
    const fs::path from = layer_root / child;
    const fs::path to = dest_root / child;
    MODHOST_TRY(check_no_symlink_parents(dest_root, child));
    struct stat st {};
    if (::lstat(from.c_str(), &st) != 0) continue;
    struct stat existing {};
    const bool exists = ::lstat(to.c_str(), &existing) == 0;
    if (is_whiteout(st)) {
      fs::remove_all(to, ec);
    } else if (S_ISDIR(st.st_mode)) {
      if (exists && (!S_ISDIR(existing.st_mode) || is_opaque(from))) fs::remove_all(to, ec);
      fs::create_directories(to, ec);
      ::chmod(to.c_str(), st.st_mode & 07777);
      MODHOST_TRY(apply_dir(layer_root, dest_root, child));
    } else if (S_ISLNK(st.st_mode)) {
      if (exists) fs::remove_all(to, ec);
      fs::copy_symlink(from, to, ec);
      if (ec) return Error(ErrorCode::failed_precondition, "cannot create link '" + to.string() + "'");
    } else if (S_ISREG(st.st_mode)) {
      if (exists) fs::remove_all(to, ec);
      fs::copy_file(from, to, ec);
      if (ec)
        return Error(ErrorCode::failed_precondition, "cannot copy to '" + to.string() + "': " + ec.message());
      ::chmod(to.c_str(), st.st_mode & 07777);
    }
  }
  return ok_status();
}

}  // namespace

Status apply_layer_dir(const std::string& layer_dir, const std::string& dest) {
  std::error_code ec;
  fs::create_directories(dest, ec);
  if (ec) return Error(ErrorCode::failed_precondition, "cannot create '" + dest + "': " + ec.message());
  return apply_dir(fs::path(layer_dir), fs::canonical(dest, ec), fs::path());
}

}  // namespace modhost::image
