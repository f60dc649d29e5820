// The native backend's images: Docker image archives (`docker save`, and what
// `modhost image pack` writes) and OCI image layouts, unpacked layer by layer
// into a content-addressed store that services share:
//
//   ROOT/layers/<diff id>/      a layer, whiteouts as overlayfs reads them
//   ROOT/images/<id>.json       an image: references, layers (lowest first), config
//   ROOT/.lock                  held by whoever changes the store
//
// A layer is unpacked once, however many images and services use it; an
// image's rootfs is an overlay of its layers (or, without overlayfs, a copy
// made by apply_layer_dir()).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "modhost/result.hpp"

namespace modhost::backend::native {

struct StoredImage {
  std::string id;                       // sha256 hex of its config
  std::vector<std::string> references;  // name:tag
  std::vector<std::string> layers;      // diff ids (sha256 hex of the uncompressed layer), lowest first
  std::vector<std::string> entrypoint;
  std::vector<std::string> cmd;
  std::vector<std::string> env;  // K=V
  std::string workdir;
  std::string user;
  std::uint64_t size_bytes = 0;  // of its layers, uncompressed
};

class ImageStore {
 public:
  // Opens (making it if needed) the store under ROOT.
  static Result<std::unique_ptr<ImageStore>> open(const std::string& root);
  ~ImageStore();

  // Loads every image of a docker-save archive, an OCI layout directory, or
  // an OCI layout in a tar. A reference already in the store moves to the new
  // image. Nothing of an archive that fails (corrupt, truncated, a layer that
  // escapes its root, a digest that does not match) stays in the store.
  Result<std::vector<StoredImage>> load(const std::string& path);
  Result<std::vector<StoredImage>> list();
  // By reference (name:tag, ":latest" assumed), or by id or a unique id prefix.
  Result<StoredImage> find(std::string_view reference);
  // Removes an image (by reference: only that reference, unless it was the
  // last) and every layer no image uses any more.
  Status remove(std::string_view reference);

  // The image's layer directories, lowest first.
  std::vector<std::string> layer_dirs(const StoredImage& image) const;
  const std::string& root() const;

 private:
  struct Impl;
  explicit ImageStore(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace modhost::backend::native
