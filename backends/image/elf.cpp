// The shared-library closure of an ELF64 executable, found the way ld.so
// finds it: PT_INTERP, DT_NEEDED, DT_RPATH/DT_RUNPATH, ld.so.conf, defaults.
#include <elf.h>
#include <glob.h>

#include <algorithm>
#include <cctype>
#include <cstring>
#include <deque>
#include <filesystem>
#include <fstream>
#include <optional>
#include <set>

#include "backends/image/image.hpp"
#include "backends/image/internal.hpp"

namespace modhost::image {
namespace {

namespace fs = std::filesystem;

struct ElfInfo {
  unsigned char elf_class = 0;
  std::uint16_t machine = 0;
  std::string interpreter;
  std::string soname;
  std::vector<std::string> needed;
  std::vector<std::string> rpath;    // DT_RPATH, split at ':'
  std::vector<std::string> runpath;  // DT_RUNPATH, split at ':'
};

template <typename T>
bool read_struct(std::string_view data, std::uint64_t off, T& out) {
  if (off > data.size() || data.size() - off < sizeof(T)) return false;
  std::memcpy(&out, data.data() + off, sizeof(T));
  return true;
}

std::vector<std::string> split_path_list(std::string_view s) {
  std::vector<std::string> out;
  while (true) {
    const std::size_t c = s.find(':');
    std::string_view part = s.substr(0, c);
    if (!part.empty()) out.emplace_back(part);
    if (c == std::string_view::npos) break;
    s.remove_prefix(c + 1);
  }
  return out;
}

bool is_elf(std::string_view data) {
  return data.size() >= 4 && data.substr(0, 4) == std::string_view(
                                                      "\x7f"
                                                      "ELF",
                                                      4);
}

Result<ElfInfo> parse_elf(const std::string& path, std::string_view data) {
  auto bad = [&](const std::string& what) {
    return Error(ErrorCode::invalid_argument, "'" + path + "' is not a valid ELF file: " + what);
  };
  if (!is_elf(data)) {
    return Error(ErrorCode::invalid_argument, "'" + path + "' is not an ELF file (no \\x7fELF magic)");
  }
  if (data.size() < EI_NIDENT) return bad("truncated identification");
  ElfInfo info;
  info.elf_class = static_cast<unsigned char>(data[EI_CLASS]);
  if (info.elf_class != ELFCLASS64) {
    return Error(ErrorCode::invalid_argument, "'" + path + "' is a 32-bit ELF file; only ELF64 is supported");
  }
  if (data[EI_DATA] != ELFDATA2LSB) {
    return Error(ErrorCode::invalid_argument,
                 "'" + path + "' is a big-endian ELF file; only little-endian is supported");
  }
  Elf64_Ehdr eh;
  if (!read_struct(data, 0, eh)) return bad("truncated ELF header");
  info.machine = eh.e_machine;
  if (eh.e_phnum == 0) return info;
  if (eh.e_phentsize != sizeof(Elf64_Phdr)) return bad("unexpected program header size");

  std::vector<Elf64_Phdr> loads;
  std::optional<Elf64_Phdr> dynamic;
  for (std::uint64_t i = 0; i < eh.e_phnum; ++i) {
    Elf64_Phdr ph;
    if (!read_struct(data, eh.e_phoff + i * sizeof(Elf64_Phdr), ph)) return bad("truncated program headers");
    if (ph.p_type == PT_INTERP) {
      if (ph.p_offset > data.size() || data.size() - ph.p_offset < ph.p_filesz)
        return bad("PT_INTERP out of bounds");
      std::string_view s = data.substr(ph.p_offset, ph.p_filesz);
      info.interpreter = std::string(s.substr(0, s.find('\0')));
    } else if (ph.p_type == PT_LOAD) {
      loads.push_back(ph);
    } else if (ph.p_type == PT_DYNAMIC) {
      dynamic = ph;
    }
  }
  if (!dynamic) return info;  // static executable

  // Virtual address -> file offset through the PT_LOAD segments.
  auto to_offset = [&](std::uint64_t addr) -> std::optional<std::uint64_t> {
    for (const auto& l : loads) {
      if (addr >= l.p_vaddr && addr - l.p_vaddr < l.p_filesz) return l.p_offset + (addr - l.p_vaddr);
    }
    return std::nullopt;
  };

  std::optional<std::uint64_t> strtab_addr;
  std::uint64_t strsz = 0;
  std::vector<std::uint64_t> needed, rpath, runpath;
  std::optional<std::uint64_t> soname;
  const std::uint64_t count = dynamic->p_filesz / sizeof(Elf64_Dyn);
  for (std::uint64_t i = 0; i < count; ++i) {
    Elf64_Dyn d;
    if (!read_struct(data, dynamic->p_offset + i * sizeof(Elf64_Dyn), d))
      return bad("truncated dynamic section");
    if (d.d_tag == DT_NULL) break;
    switch (d.d_tag) {
      case DT_NEEDED:
        needed.push_back(d.d_un.d_val);
        break;
      case DT_RPATH:
        rpath.push_back(d.d_un.d_val);
        break;
      case DT_RUNPATH:
        runpath.push_back(d.d_un.d_val);
        break;
      case DT_SONAME:
        soname = d.d_un.d_val;
        break;
      case DT_STRTAB:
        strtab_addr = d.d_un.d_ptr;
        break;
      case DT_STRSZ:
        strsz = d.d_un.d_val;
        break;
      default:
        break;
    }
  }
  if (needed.empty() && rpath.empty() && runpath.empty() && !soname) return info;
  if (!strtab_addr) return bad("dynamic section has no DT_STRTAB");
  const auto strtab = to_offset(*strtab_addr);
  if (!strtab || *strtab > data.size()) return bad("DT_STRTAB outside the file");
  const std::string_view table = data.substr(*strtab, std::min<std::uint64_t>(strsz, data.size() - *strtab));
  auto str = [&](std::uint64_t off) -> std::optional<std::string> {
    if (off >= table.size()) return std::nullopt;
    const std::size_t end = table.find('\0', off);
    if (end == std::string_view::npos) return std::nullopt;
    return std::string(table.substr(off, end - off));
  };
  for (auto off : needed) {
    auto s = str(off);
    if (!s) return bad("DT_NEEDED string out of bounds");
    info.needed.push_back(*s);
  }
  for (auto off : rpath) {
    auto s = str(off);
    if (!s) return bad("DT_RPATH string out of bounds");
    for (auto& p : split_path_list(*s)) info.rpath.push_back(p);
  }
  for (auto off : runpath) {
    auto s = str(off);
    if (!s) return bad("DT_RUNPATH string out of bounds");
    for (auto& p : split_path_list(*s)) info.runpath.push_back(p);
  }
  if (soname) info.soname = str(*soname).value_or("");
  return info;
}

// Expands $ORIGIN, $LIB and $PLATFORM (bare or braced) in one search path entry.
std::string expand_tokens(std::string_view entry, const std::string& origin) {
  std::string out;
  for (std::size_t i = 0; i < entry.size();) {
    if (entry[i] != '$') {
      out.push_back(entry[i++]);
      continue;
    }
    std::string_view rest = entry.substr(i + 1);
    bool matched = false;
    for (const auto& [token, value] : {std::pair<std::string_view, std::string_view>{"ORIGIN", origin},
                                       {"LIB", "lib/x86_64-linux-gnu"},
                                       {"PLATFORM", "x86_64"}}) {
      const std::string braced = "{" + std::string(token) + "}";
      if (rest.starts_with(braced)) {
        out += value;
        i += 1 + braced.size();
        matched = true;
        break;
      }
      if (rest.starts_with(token) &&
          (rest.size() == token.size() ||
           !(std::isalnum(static_cast<unsigned char>(rest[token.size()])) || rest[token.size()] == '_'))) {
        out += value;
        i += 1 + token.size();
        matched = true;
        break;
      }
    }
    if (!matched) out.push_back(entry[i++]);
  }
  return out;
}

// Directories listed in /etc/ld.so.conf and the files it includes, in order.
void read_ld_so_conf(const std::string& file, std::vector<std::string>& dirs, int depth) {
  if (depth > 8) return;
  std::ifstream in(file);
  std::string line;
  while (std::getline(in, line)) {
    if (auto hash = line.find('#'); hash != std::string::npos) line.erase(hash);
    auto trim = [](std::string s) {
      const auto b = s.find_first_not_of(" \t\r");
      if (b == std::string::npos) return std::string();
      return s.substr(b, s.find_last_not_of(" \t\r") - b + 1);
    };
    line = trim(line);
    if (line.empty()) continue;
    if (line.starts_with("include") && line.size() > 7 && (line[7] == ' ' || line[7] == '\t')) {
      std::string pattern = trim(line.substr(8));
      if (!pattern.starts_with("/")) pattern = fs::path(file).parent_path().string() + "/" + pattern;
      glob_t g{};
      if (glob(pattern.c_str(), 0, nullptr, &g) == 0) {
        for (std::size_t i = 0; i < g.gl_pathc; ++i) read_ld_so_conf(g.gl_pathv[i], dirs, depth + 1);
      }
      globfree(&g);
    } else if (line.starts_with("/")) {
      // "dir=type" (an old hwcap syntax) still names a directory.
      dirs.push_back(line.substr(0, line.find('=')));
    }
  }
}

const std::vector<std::string>& system_dirs() {
  static const std::vector<std::string> dirs = [] {
    std::vector<std::string> d;
    read_ld_so_conf("/etc/ld.so.conf", d, 0);
    for (const char* p :
         {"/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib64", "/usr/lib64", "/lib", "/usr/lib"}) {
      d.emplace_back(p);
    }
    std::vector<std::string> unique;
    std::set<std::string> seen;
    for (auto& s : d) {
      if (seen.insert(s).second) unique.push_back(s);
    }
    return unique;
  }();
  return dirs;
}

// Whether PATH is an ELF object the loader would accept for an object of
// this class and machine (so /lib32 and i386 copies are skipped).
bool compatible(const std::string& path, const ElfInfo& parent) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return false;
  char buf[sizeof(Elf64_Ehdr)] = {};
  in.read(buf, sizeof(buf));
  const std::string_view data(buf, static_cast<std::size_t>(in.gcount()));
  Elf64_Ehdr eh;
  if (!is_elf(data) || !read_struct(data, 0, eh)) return false;
  return static_cast<unsigned char>(data[EI_CLASS]) == parent.elf_class && eh.e_machine == parent.machine;
}

struct Loaded {
  std::string path;
  ElfInfo info;
};

Result<Loaded> load(const std::string& path) {
  MODHOST_ASSIGN_OR_RETURN(std::string data, internal::read_host_file(path));
  MODHOST_ASSIGN_OR_RETURN(ElfInfo info, parse_elf(path, data));
  return Loaded{path, std::move(info)};
}

std::string dir_of(const std::string& path) {
  const std::string parent = fs::path(path).parent_path().string();
  return parent.empty() ? "/" : parent;
}

}  // namespace

Result<std::vector<std::string>> elf_dependencies(const std::string& binary) {
  std::error_code ec;
  fs::path abs = fs::absolute(binary, ec);
  if (ec) return Error(ErrorCode::invalid_argument, "cannot resolve '" + binary + "': " + ec.message());
  MODHOST_ASSIGN_OR_RETURN(Loaded main, load(abs.string()));
  if (main.info.elf_class != ELFCLASS64) {
    return Error(ErrorCode::invalid_argument, "'" + binary + "' is not an ELF64 file");
  }
  // $ORIGIN of the executable is the directory of its canonical path, as for /proc/self/exe.
  const std::string main_origin = dir_of(fs::weakly_canonical(abs, ec).string());

  std::vector<std::string> result;
  std::set<std::string> result_set;
  std::set<std::string> loaded_names;  // DT_NEEDED names and sonames already satisfied
  auto add_result = [&](const std::string& p) {
    if (result_set.insert(p).second) result.push_back(p);
  };

  if (!main.info.interpreter.empty()) {
    MODHOST_ASSIGN_OR_RETURN(Loaded interp, load(main.info.interpreter));
    add_result(main.info.interpreter);
    loaded_names.insert(fs::path(main.info.interpreter).filename().string());
    if (!interp.info.soname.empty()) loaded_names.insert(interp.info.soname);
  }

  // Breadth first, as ld.so loads: the executable's needs, then theirs.
  struct Pending {
    Loaded obj;
    std::string origin;
  };
  std::deque<Pending> queue;
  queue.push_back({std::move(main), main_origin});
  const std::vector<std::string> exe_rpath =
      queue.front().obj.info.runpath.empty() ? queue.front().obj.info.rpath : std::vector<std::string>{};
  while (!queue.empty()) {
    Pending cur = std::move(queue.front());
    queue.pop_front();
    for (const std::string& name : cur.obj.info.needed) {
      if (loaded_names.count(name)) continue;
      std::vector<std::string> candidates;
      std::string searched;
      if (name.find('/') != std::string::npos) {
        candidates.push_back(name.starts_with("/") ? name : (fs::current_path(ec) / name).string());
      } else {
        std::vector<std::string> dirs;
        // DT_RPATH applies only when the object has no DT_RUNPATH; the
        // executable's DT_RPATH applies to every object it loads.
        if (cur.obj.info.runpath.empty()) {
          for (const auto& d : cur.obj.info.rpath) dirs.push_back(expand_tokens(d, cur.origin));
          for (const auto& d : exe_rpath) dirs.push_back(expand_tokens(d, main_origin));
        }
        for (const auto& d : cur.obj.info.runpath) dirs.push_back(expand_tokens(d, cur.origin));
        for (const auto& d : system_dirs()) dirs.push_back(d);
        for (const auto& d : dirs) {
          candidates.push_back((d.ends_with("/") ? d : d + "/") + name);
          searched += (searched.empty() ? "" : ", ") + d;
        }
      }
      std::optional<std::string> found;
      for (const auto& c : candidates) {
        if (fs::is_regular_file(c, ec) && compatible(c, cur.obj.info)) {
          found = fs::path(c).lexically_normal().string();
          break;
        }
      }
      if (!found) {
        return Error(ErrorCode::not_found, "cannot find library '" + name + "' needed by '" + cur.obj.path +
                                               "'" +
                                               (searched.empty() ? "" : " (searched " + searched + ")"));
      }
      loaded_names.insert(name);
      MODHOST_ASSIGN_OR_RETURN(Loaded lib, load(*found));
      if (!lib.info.soname.empty()) loaded_names.insert(lib.info.soname);
      add_result(*found);
      queue.push_back({std::move(lib), dir_of(*found)});
    }
  }
  return result;
}

}  // namespace modhost::image
