// modhost-pack-image: packs an executable into a docker-save archive with
// modhost::image::pack, until the `modhost image pack` CLI verb exists.
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>
#include <string_view>
#include <vector>

#include "backends/image/image.hpp"

namespace {

// The applets --busybox-applets links to /bin/busybox.
constexpr const char* kBusyboxApplets[] = {
    "sh",  "nc",       "wget",     "ping",    "sleep", "cat",   "ls",    "echo", "ip", "ifconfig", "top",
    "ps",  "kill",     "test",     "timeout", "true",  "false", "mkdir", "rm",   "cp", "mv",       "tar",
    "env", "hostname", "nslookup", "grep",    "sed",   "awk",   "head",  "tail", "wc", "date",
};

void usage(std::FILE* out) {
  std::fprintf(out,
               "usage: modhost-pack-image --name NAME:TAG --entrypoint BIN [--add SRC:DEST]... [--arg A]...\n"
               "                          [--env K=V]... [--exclude PATTERN]... [--no-add-libraries]\n"
               "                          [--busybox-applets] -o OUT.tar\n"
               "Packs BIN (at /bin/<basename>), its shared libraries, the added files and the\n"
               "shared libraries of the added ELF files into a docker-save archive that\n"
               "`docker load -i OUT.tar` accepts.\n"
               "  --name NAME:TAG      image reference\n"
               "  --entrypoint BIN     executable on this machine (a bare name is looked up in $PATH)\n"
               "  --add SRC:DEST       add a file or directory SRC at the absolute image path DEST\n"
               "  --arg A              default argument (image Cmd); repeat for more, e.g. --arg -c\n"
               "  --env K=V            environment variable of the image\n"
               "  --exclude PATTERN    leave out entries of added directories whose name matches the\n"
               "                       fnmatch(3) PATTERN (or whose path, when PATTERN has a '/')\n"
               "  --no-add-libraries   add only BIN's shared libraries, not those of added ELF files\n"
               "  --busybox-applets    add /bin/<applet> -> busybox symlinks (sh, nc, wget, ...)\n"
               "  -o, --output OUT     where to write the archive\n");
}

int fail(const std::string& msg) {
  std::fprintf(stderr, "modhost-pack-image: %s\n", msg.c_str());
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  modhost::image::PackSpec spec;
  std::string output;
  bool applets = false;
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    // Every option but the flags takes the next argument verbatim (so "--arg -c" works).
    auto value = [&]() -> const char* { return i + 1 < argc ? argv[++i] : nullptr; };
    if (arg == "-h" || arg == "--help") {
      usage(stdout);
      return 0;
    }
    if (arg == "--busybox-applets") {
      applets = true;
      continue;
    }
    if (arg == "--no-add-libraries") {
      spec.add_libraries = false;
      continue;
    }
    const char* v = value();
    if (v == nullptr) return fail("option '" + std::string(arg) + "' needs a value (see --help)");
    if (arg == "--name") {
      spec.reference = v;
    } else if (arg == "--entrypoint") {
      spec.entrypoint = v;
    } else if (arg == "--arg") {
      spec.args.emplace_back(v);
    } else if (arg == "--env") {
      if (std::strchr(v, '=') == nullptr) return fail("--env needs K=V, got '" + std::string(v) + "'");
      spec.env.emplace_back(v);
    } else if (arg == "--add") {
      const std::string s = v;
      const std::size_t colon = s.rfind(':');
      if (colon == std::string::npos || colon == 0 || colon + 1 == s.size()) {
        return fail("--add needs SRC:DEST, got '" + s + "'");
      }
      spec.add.emplace_back(s.substr(0, colon), s.substr(colon + 1));
    } else if (arg == "--exclude") {
      if (*v == '\0') return fail("--exclude needs a pattern");
      spec.exclude.emplace_back(v);
    } else if (arg == "-o" || arg == "--output") {
      output = v;
    } else {
      return fail("unknown option '" + std::string(arg) + "' (see --help)");
    }
  }
  if (spec.reference.empty()) return fail("--name NAME:TAG is required");
  if (spec.entrypoint.empty()) return fail("--entrypoint BIN is required");
  if (output.empty()) return fail("-o OUT.tar is required");

  std::vector<std::pair<std::string, std::string>> links;
  if (applets) {
    for (const char* a : kBusyboxApplets) links.emplace_back(std::string("/bin/") + a, "busybox");
  }
  auto archive = modhost::image::pack_with_symlinks(spec, links);
  if (!archive) return fail(archive.error().message());

  const std::string tmp = output + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out.write(archive->data(), static_cast<std::streamsize>(archive->size()));
    out.close();
    if (!out) {
      std::remove(tmp.c_str());
      return fail("cannot write '" + output + "'");
    }
  }
  if (std::rename(tmp.c_str(), output.c_str()) != 0) {
    std::remove(tmp.c_str());
    return fail("cannot write '" + output + "': " + std::strerror(errno));
  }
  std::printf("packed %s (%zu bytes) into %s\n", spec.reference.c_str(), archive->size(), output.c_str());
  return 0;
}
