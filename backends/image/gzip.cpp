// gzip (RFC 1952) compression in memory through zlib.
#include <zlib.h>

#include <algorithm>
#include <limits>

#include "backends/image/image.hpp"

namespace modhost::image {
namespace {

constexpr int kGzipWindowBits = 15 + 16;  // 32 KiB window, gzip wrapper
constexpr std::size_t kChunk = 256 * 1024;
constexpr std::size_t kMaxIn = std::numeric_limits<uInt>::max();

// zlib's next_in is not const; it never writes through it.
Bytef* input_ptr(const char* p) { return reinterpret_cast<Bytef*>(const_cast<char*>(p)); }

std::string zlib_message(const z_stream& zs, int rc) {
  if (zs.msg != nullptr) return zs.msg;
  return "zlib error " + std::to_string(rc);
}

}  // namespace

Result<std::string> gzip_compress(std::string_view data) {
  z_stream zs{};
  int rc = deflateInit2(&zs, Z_DEFAULT_COMPRESSION, Z_DEFLATED, kGzipWindowBits, 8, Z_DEFAULT_STRATEGY);
  if (rc != Z_OK) return Error(ErrorCode::internal, "gzip: cannot initialise zlib: " + zlib_message(zs, rc));
  std::string out;
  out.reserve(std::min<std::size_t>(deflateBound(&zs, static_cast<uLong>(std::min(data.size(), kMaxIn))),
                                    64 * 1024 * 1024));
  std::size_t pos = 0;
  do {
    const std::size_t n = std::min(data.size() - pos, kMaxIn);
    zs.next_in = input_ptr(data.data() + pos);
    zs.avail_in = static_cast<uInt>(n);
    pos += n;
    const int flush = pos == data.size() ? Z_FINISH : Z_NO_FLUSH;
    do {
      const std::size_t old = out.size();
      out.resize(old + kChunk);
      zs.next_out = reinterpret_cast<Bytef*>(out.data() + old);
      zs.avail_out = static_cast<uInt>(kChunk);
      rc = deflate(&zs, flush);
      out.resize(old + kChunk - zs.avail_out);
      if (rc == Z_STREAM_ERROR) {
        deflateEnd(&zs);
        return Error(ErrorCode::internal, "gzip: compression failed: " + zlib_message(zs, rc));
      }
    } while (zs.avail_out == 0 || (flush == Z_FINISH && rc != Z_STREAM_END));
  } while (pos < data.size());
  deflateEnd(&zs);
  return out;
}

bool is_gzip(std::string_view data) {
  return data.size() >= 2 && static_cast<unsigned char>(data[0]) == 0x1f &&
         static_cast<unsigned char>(data[1]) == 0x8b;
}

Result<std::string> gzip_decompress(std::string_view data) {
  if (!is_gzip(data)) {
    return Error(ErrorCode::invalid_argument, "not gzip data: missing the gzip magic bytes 1f 8b");
  }
  z_stream zs{};
  int rc = inflateInit2(&zs, kGzipWindowBits);
  if (rc != Z_OK) return Error(ErrorCode::internal, "gzip: cannot initialise zlib: " + zlib_message(zs, rc));
  std::string out;
  std::size_t pos = 0;
  auto fail = [&](std::string what) -> Error {
    Error e(ErrorCode::invalid_argument,
            "corrupt gzip data at input offset " + std::to_string(pos - zs.avail_in) + ": " + what);
    inflateEnd(&zs);
    return e;
  };
  bool finished_member = false;
  while (true) {
    if (zs.avail_in == 0) {
      if (pos == data.size()) break;
      const std::size_t n = std::min(data.size() - pos, kMaxIn);
      zs.next_in = input_ptr(data.data() + pos);
      zs.avail_in = static_cast<uInt>(n);
      pos += n;
    }
    if (finished_member) {
      // Another gzip member follows (concatenated streams are valid gzip).
      if (inflateReset(&zs) != Z_OK) return fail("cannot reset the inflater");
      finished_member = false;
    }
    const std::size_t old = out.size();
    out.resize(old + kChunk);
    zs.next_out = reinterpret_cast<Bytef*>(out.data() + old);
    zs.avail_out = static_cast<uInt>(kChunk);
    rc = inflate(&zs, Z_NO_FLUSH);
    out.resize(old + kChunk - zs.avail_out);
    if (rc == Z_STREAM_END) {
      finished_member = true;
    } else if (rc == Z_BUF_ERROR) {
      if (zs.avail_in == 0 && pos == data.size()) break;  // input exhausted mid-stream
    } else if (rc != Z_OK) {
      return fail(zlib_message(zs, rc));
    }
  }
  inflateEnd(&zs);
  if (!finished_member) {
    return Error(ErrorCode::invalid_argument, "corrupt gzip data: truncated stream (" +
                                                  std::to_string(data.size()) +
                                                  " bytes of input ended before the end of the gzip member)");
  }
  return out;
}

}  // namespace modhost::image
