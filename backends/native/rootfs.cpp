#include "backends/native/rootfs.hpp"

#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <optional>
#include <sstream>

#include "backends/image/image.hpp"

namespace modhost::backend::native {
namespace {

namespace fs = std::filesystem;

// Opens PATH inside ROOT with every symlink resolved inside ROOT.
int open_in_root(const std::string& root, const std::string& path) {
  const int dir = ::open(root.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (dir < 0) return -1;
  open_how how{};
  how.flags = O_RDONLY | O_CLOEXEC | O_NONBLOCK;  // a FIFO in an image must not block the host
  how.resolve = RESOLVE_IN_ROOT;
  const int fd = static_cast<int>(::syscall(SYS_openat2, dir, path.c_str(), &how, sizeof how));
  ::close(dir);
  struct stat st {};
  if (fd >= 0 && (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode))) {
    ::close(fd);
    return -1;
  }
  return fd;
}

}  // namespace

Status make_rootfs(const std::string& rootfs, const std::vector<std::string>& layers,
                   const std::string& upper, const std::string& work, bool overlay) {
  if (overlay) {
    std::string lower;
    for (auto it = layers.rbegin(); it != layers.rend(); ++it) lower += (lower.empty() ? "" : ":") + *it;
    const std::string opts = "lowerdir=" + lower + ",upperdir=" + upper + ",workdir=" + work;
    if (::mount("overlay", rootfs.c_str(), "overlay", MS_NODEV, opts.c_str()) != 0) {
      return Error(ErrorCode::internal,
                   std::string("cannot mount its rootfs (overlay): ") + std::strerror(errno));
    }
    return ok_status();
  }
  for (const auto& layer : layers) {
    if (Status copied = image::apply_layer_dir(layer, rootfs); !copied.ok()) {
      return copied.error().context("cannot copy its rootfs");
    }
  }
  return ok_status();
}

std::string read_in_root(const std::string& root, const std::string& path) {
  const int fd = open_in_root(root, path);
  if (fd < 0) return {};
  std::string out;
  char buf[4096];
  for (ssize_t n; (n = ::read(fd, buf, sizeof buf)) > 0;) out.append(buf, static_cast<std::size_t>(n));
  ::close(fd);
  return out;
}

Result<std::string> resolve_in_root(const std::string& root, const std::string& path) {
  const int dir = ::open(root.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (dir < 0) return Error(ErrorCode::internal, "cannot open " + root + ": " + std::strerror(errno));
  open_how how{};
  how.flags = O_PATH | O_CLOEXEC;
  how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;
  const int fd = static_cast<int>(::syscall(SYS_openat2, dir, path.c_str(), &how, sizeof how));
  const int err = errno;
  ::close(dir);
  if (fd < 0) {
    return Error(err == ENOENT || err == ENOTDIR ? ErrorCode::not_found : ErrorCode::internal,
                 "'" + path + "': " + std::strerror(err));
  }
  std::error_code ec;
  const std::string real = fs::read_symlink("/proc/self/fd/" + std::to_string(fd), ec).string();
  ::close(fd);
  if (ec || (real != root && real.rfind(root + "/", 0) != 0)) {
    return Error(ErrorCode::internal, "'" + path + "' resolves outside the service");
  }
  return real;
}

Result<std::pair<unsigned, unsigned>> resolve_user(const std::string& rootfs, const std::string& user) {
  if (user.empty()) return std::pair<unsigned, unsigned>{0, 0};
  const auto colon = user.find(':');
  const std::string u = user.substr(0, colon);
  const std::string g = colon == std::string::npos ? std::string() : user.substr(colon + 1);
  auto numeric = [](const std::string& s) {
    return !s.empty() && s.find_first_not_of("0123456789") == std::string::npos;
  };
  auto lookup = [&](const std::string& file, const std::string& name, int field) -> std::optional<unsigned> {
    std::istringstream in(read_in_root(rootfs, file));
    for (std::string line; std::getline(in, line);) {
      std::vector<std::string> parts;
      std::stringstream ls(line);
      for (std::string p; std::getline(ls, p, ':');) parts.push_back(p);
      if (parts.size() > static_cast<std::size_t>(field) && parts[0] == name &&
          numeric(parts[static_cast<std::size_t>(field)]))
        return static_cast<unsigned>(std::stoul(parts[static_cast<std::size_t>(field)]));
    }
    return std::nullopt;
  };
  unsigned uid = 0, gid = 0;
  if (numeric(u)) {
    uid = static_cast<unsigned>(std::stoul(u));
  } else {
    auto found = lookup("/etc/passwd", u, 2);
    if (!found)
      return Error(ErrorCode::invalid_argument, "user '" + u + "' is not in the image's /etc/passwd");
    uid = *found;
    gid = lookup("/etc/passwd", u, 3).value_or(0);
  }
  if (!g.empty()) {
    if (numeric(g)) {
      gid = static_cast<unsigned>(std::stoul(g));
    } else {
      auto found = lookup("/etc/group", g, 2);
      if (!found)
        return Error(ErrorCode::invalid_argument, "group '" + g + "' is not in the image's /etc/group");
      gid = *found;
    }
  }
  return std::pair<unsigned, unsigned>{uid, gid};
}

}  // namespace modhost::backend::native
