// The image archives the build packs (build/images/NAME), loaded into the
// backend the environment names with `modhost image load`.
#pragma once

#include <initializer_list>
#include <optional>
#include <string>

#include "support/process_util.hpp"

namespace modhost::test {

inline const std::string kModhostCli = std::string(MODHOST_BIN_DIR) + "/modhost";

// Loads each archive in turn; the first failure ("ARCHIVE: error"), or
// nothing when all loaded.
inline std::optional<std::string> load_packed_images(std::initializer_list<const char*> archives) {
  for (const char* archive : archives) {
    auto r = run_command({kModhostCli, "image", "load", std::string(MODHOST_IMAGE_DIR) + "/" + archive});
    if (r.exit_code != 0) return std::string(archive) + ": " + r.err;
  }
  return std::nullopt;
}

}  // namespace modhost::test
