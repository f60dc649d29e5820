// Docker's multiplexed stream format (logs and exec output without a TTY):
// frames of an 8-byte header [stream, 0, 0, 0, size as big-endian uint32]
// followed by `size` bytes of payload. stream: 0 stdin, 1 stdout, 2 stderr.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

namespace modhost::backend::docker {

class StreamDemuxer {
 public:
  // Receives each payload piece with its stream number; return false to stop.
  using Sink = std::function<bool(int stream, std::string_view payload)>;

  explicit StreamDemuxer(Sink sink) : sink_(std::move(sink)) {}

  // Feeds raw bytes as they arrive, in pieces of any size. Returns false once
  // the sink asked to stop.
  bool feed(std::string_view bytes);

  // True when the input ended inside a frame.
  bool incomplete() const { return header_fill_ != 0 || remaining_ != 0; }

 private:
  Sink sink_;
  unsigned char header_[8] = {};
  std::size_t header_fill_ = 0;
  std::uint32_t remaining_ = 0;  // payload bytes left in the current frame
  int stream_ = 0;
};

}  // namespace modhost::backend::docker
