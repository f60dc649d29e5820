// Image archives as `modhost image load` takes them (docker save, OCI
// layout), loaded into a native image store of a fresh sandbox: a bad
// archive is an error, and nothing it names may be written outside the
// store.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>

#include "backends/native/image_store.hpp"
#include "tests/fuzz/fuzz_check.hpp"

namespace fs = std::filesystem;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace modhost::backend::native;
  static const fs::path sandbox = [] {
    // Under $TMPDIR, which scripts/fuzz points at a directory it removes.
    std::string tmpl = (fs::temp_directory_path() / "modhost-fuzz-image-XXXXXX").string();
    return fs::path(::mkdtemp(tmpl.data()));
  }();
  const fs::path store_dir = sandbox / "store", input = sandbox / "input.tar";
  std::error_code ec;
  fs::remove_all(store_dir, ec);
  {
    std::ofstream out(input, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  }
  auto store = ImageStore::open(store_dir.string());
  FUZZ_CHECK(store.ok());
  auto loaded = (*store)->load(input.string());
  if (loaded.ok()) {
    for (const auto& image : *loaded) FUZZ_CHECK(!image.id.empty());
  }
  store->reset();
  for (const auto& entry : fs::directory_iterator(sandbox)) {
    FUZZ_CHECK(entry.path() == store_dir || entry.path() == input);
  }
  fs::remove_all(store_dir, ec);
  return 0;
}
