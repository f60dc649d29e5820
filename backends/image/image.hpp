// Image archives without a registry: tar and gzip in memory, docker-save
// archives, and the shared-library closure of an ELF executable.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "modhost/result.hpp"

namespace modhost::image {

struct TarEntry {
  enum class Type { file, directory, symlink, hardlink, other };
  std::string path;  // relative, no leading "/" or "./"
  Type type = Type::file;
  std::uint32_t mode = 0644;
  std::string content;      // files
  std::string link_target;  // symlinks and hard links
};

// Builds a POSIX ustar archive in memory (pax headers for long names).
class TarWriter {
 public:
  void add_file(std::string_view path, std::string_view content, std::uint32_t mode = 0644);
  void add_directory(std::string_view path, std::uint32_t mode = 0755);
  void add_symlink(std::string_view path, std::string_view target);
  // The archive bytes, with the two terminating zero blocks.
  std::string finish();

 private:
  void header(std::string_view path, char type, std::uint32_t mode, std::uint64_t size,
              std::string_view link);
  std::string out_;
};

// Parses a tar archive (ustar, pax and GNU long names). Fails on truncation
// or a bad checksum.
Result<std::vector<TarEntry>> read_tar(std::string_view archive);

// Starts with gzip's magic bytes 1f 8b.
bool is_gzip(std::string_view data);
Result<std::string> gzip_compress(std::string_view data);
Result<std::string> gzip_decompress(std::string_view data);

struct ImageConfig {
  std::string reference;  // name:tag
  std::vector<std::string> entrypoint;
  std::vector<std::string> cmd;
  std::vector<std::string> env;  // K=V
  std::string workdir;
  std::map<std::string, std::string> labels;
};

// A docker-save archive (manifest.json, config, one layer) that
// `POST /images/load` accepts. `layer_tar` is an uncompressed tar.
Result<std::string> write_docker_archive(const ImageConfig& config, std::string_view layer_tar);

// The absolute paths of every shared library BINARY needs, recursively,
// including the program interpreter, found from its ELF headers.
Result<std::vector<std::string>> elf_dependencies(const std::string& binary);

struct PackSpec {
  std::string reference;                                 // name:tag
  std::string entrypoint;                                // path of an executable on this machine
  std::vector<std::string> args;                         // default cmd
  std::vector<std::pair<std::string, std::string>> add;  // SRC on this machine -> DEST in the image
  std::vector<std::string> env;
  // Every ELF object in `add` (a file, or one inside an added directory) for
  // the entrypoint's machine brings its shared-library closure too, at the
  // libraries' own paths, as the entrypoint's does. Off: only the
  // entrypoint's libraries.
  bool add_libraries = true;
  // Entries of added directories left out (with all they contain), as
  // fnmatch(3) patterns: matched against the entry's name, or, when the
  // pattern has a '/', against its whole path on this machine. E.g.
  // "__pycache__", "*.pyc", "/usr/lib/python3.11/test".
  std::vector<std::string> exclude;
};

// Packs the entrypoint (at /bin/<basename>), its libraries and those of the
// ELF files added (at their own paths) and the extra files into a
// docker-save archive. A file added at the path of a library wins.
Result<std::string> pack(const PackSpec& spec);

// pack(), plus symlinks made in the image: {PATH in the image, TARGET}, e.g.
// busybox applets {"/bin/sh", "busybox"}. PATH must be absolute.
Result<std::string> pack_with_symlinks(const PackSpec& spec,
                                       const std::vector<std::pair<std::string, std::string>>& symlinks);

// Archives a file or a directory tree from this machine. A directory's
// contents go at the archive's root; a single file under its own name.
// Symlinks are stored as symlinks, never followed.
Result<std::string> tar_tree(const std::string& source);
// The same, with a directory under its own name too (what `docker cp` and
// Docker's archive API give for a path).
Result<std::string> tar_path(const std::string& source);

// Extracts an archive under DEST (created if missing). Refuses, before writing
// anything, an entry whose path is absolute or leaves DEST through "..", and
// never writes through a symlink: a layer cannot write outside DEST.
Status extract_tar(std::string_view archive, const std::string& dest);

// extract_tar() for an image layer: its whiteouts become what overlayfs reads
// (".wh.NAME": a 0:0 character device NAME; ".wh..wh..opq": the directory's
// trusted.overlay.opaque=y). Needs root.
Status extract_layer(std::string_view archive, const std::string& dest);

// Applies a layer directory made by extract_layer onto a plain tree DEST (for
// when overlayfs is unavailable): what its whiteouts hide goes, an opaque
// directory replaces DEST's, everything else is copied over. Never writes
// through a symlink in DEST.
Status apply_layer_dir(const std::string& layer_dir, const std::string& dest);

}  // namespace modhost::image
