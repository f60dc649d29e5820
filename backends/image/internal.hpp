// Helpers shared by the image library's sources (not part of its API).
#pragma once

#include <string>

#include "modhost/result.hpp"

namespace modhost::image::internal {

// The whole content of a file on this machine.
Result<std::string> read_host_file(const std::string& path);

}  // namespace modhost::image::internal
