// A native container's root filesystem from the host's side: made from the
// image's layers (an overlay, or a copy where overlayfs is missing), and
// read or resolved with every symlink kept inside it, so an image's link
// can never lead the host out of the container.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "modhost/result.hpp"

namespace modhost::backend::native {

// Mounts ROOTFS as an overlay of LAYERS (lowest first) under UPPER/WORK,
// or, where `overlay` is false, applies copies of them in order.
Status make_rootfs(const std::string& rootfs, const std::vector<std::string>& layers,
                   const std::string& upper, const std::string& work, bool overlay);

// The contents of the regular file PATH inside ROOT, or "".
std::string read_in_root(const std::string& root, const std::string& path);

// The host path of PATH inside ROOT, every symlink resolved inside ROOT (an
// image's symlink cannot lead out of it).
Result<std::string> resolve_in_root(const std::string& root, const std::string& path);

// "user", "uid", "user:group", "uid:gid" resolved against the image's
// /etc/passwd and /etc/group: {uid, gid}.
Result<std::pair<unsigned, unsigned>> resolve_user(const std::string& rootfs, const std::string& user);

}  // namespace modhost::backend::native
