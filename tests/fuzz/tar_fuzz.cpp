// Layer tars as images and artifacts bring them: read in memory, then
// unpacked into a directory of a fresh sandbox. Whatever the entries say
// (../, absolute paths, symlinks out and then through them, hard links to
// outside), nothing may appear in the sandbox outside that directory.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>

#include "backends/image/image.hpp"
#include "tests/fuzz/fuzz_check.hpp"

namespace fs = std::filesystem;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace modhost;
  std::string_view archive(reinterpret_cast<const char*>(data), size);
  std::string plain;
  if (image::is_gzip(archive)) {
    auto unzipped = image::gzip_decompress(archive);
    if (!unzipped.ok()) return 0;
    plain = std::move(unzipped).value();
    archive = plain;
  }
  auto entries = image::read_tar(archive);
  if (!entries.ok()) return 0;

  static const fs::path sandbox = [] {
    // Under $TMPDIR, which scripts/fuzz points at a directory it removes.
    std::string tmpl = (fs::temp_directory_path() / "modhost-fuzz-tar-XXXXXX").string();
    return fs::path(::mkdtemp(tmpl.data()));
  }();
  const fs::path dest = sandbox / "dest";
  std::error_code ec;
  fs::remove_all(dest, ec);
  fs::create_directories(dest);
  (void)image::extract_layer(archive, dest.string());
  for (const auto& entry : fs::directory_iterator(sandbox)) FUZZ_CHECK(entry.path() == dest);
  fs::remove_all(dest, ec);
  return 0;
}
