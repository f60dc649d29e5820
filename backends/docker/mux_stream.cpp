#include "backends/docker/mux_stream.hpp"

#include <algorithm>

namespace modhost::backend::docker {

bool StreamDemuxer::feed(std::string_view bytes) {
  while (!bytes.empty()) {
    if (remaining_ == 0) {
      const std::size_t take = std::min(bytes.size(), sizeof(header_) - header_fill_);
      std::copy_n(bytes.begin(), take, header_ + header_fill_);
      header_fill_ += take;
      bytes.remove_prefix(take);
      if (header_fill_ < sizeof(header_)) return true;
      header_fill_ = 0;
      stream_ = header_[0];
      remaining_ = (std::uint32_t{header_[4]} << 24) | (std::uint32_t{header_[5]} << 16) |
                   (std::uint32_t{header_[6]} << 8) | std::uint32_t{header_[7]};
      continue;
    }
    const std::size_t take = std::min<std::size_t>(bytes.size(), remaining_);
    remaining_ -= static_cast<std::uint32_t>(take);
    const std::string_view piece = bytes.substr(0, take);
    bytes.remove_prefix(take);
    if (!sink_(stream_, piece)) return false;
  }
  return true;
}

}  // namespace modhost::backend::docker
