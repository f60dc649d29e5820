// ustar writer and reader (pax and GNU long-name extensions on read).
#include <algorithm>
#include <array>
#include <cstring>
#include <optional>

#include "backends/image/image.hpp"

namespace modhost::image {
namespace {

constexpr std::size_t kBlock = 512;

// Field offsets and sizes in a ustar header.
struct Field {
  std::size_t off, len;
};
constexpr Field kName{0, 100}, kMode{100, 8}, kUid{108, 8}, kGid{116, 8}, kSize{124, 12}, kMtime{136, 12},
    kChksum{148, 8}, kLinkname{157, 100}, kMagic{257, 6}, kVersion{263, 2}, kUname{265, 32}, kGname{297, 32},
    kPrefix{345, 155};
constexpr std::size_t kTypeflag = 156;

// The largest value an octal field of LEN bytes holds (LEN-1 digits and a NUL).
constexpr std::uint64_t octal_max(std::size_t len) { return (std::uint64_t{1} << (3 * (len - 1))) - 1; }

void put_octal(char* block, Field f, std::uint64_t value) {
  // LEN-1 zero-padded octal digits followed by a NUL.
  char* p = block + f.off;
  for (std::size_t i = f.len - 1; i-- > 0;) {
    p[i] = static_cast<char>('0' + (value & 7));
    value >>= 3;
  }
  p[f.len - 1] = '\0';
}

void put_string(char* block, Field f, std::string_view s) {
  if (!s.empty()) std::memcpy(block + f.off, s.data(), std::min(s.size(), f.len));
}

std::string normalize(std::string_view path) {
  while (true) {
    if (path.starts_with("/")) {
      path.remove_prefix(1);
    } else if (path.starts_with("./")) {
      path.remove_prefix(2);
    } else {
      break;
    }
  }
  while (path.size() > 1 && path.ends_with("/")) path.remove_suffix(1);
  if (path.empty()) return ".";
  return std::string(path);
}

// One pax record: "<len> <key>=<value>\n", where <len> counts the whole record.
std::string pax_record(std::string_view key, std::string_view value) {
  const std::size_t body = 1 + key.size() + 1 + value.size() + 1;  // " key=value\n"
  std::size_t len = body + 1;
  while (std::to_string(len).size() + body != len) len = std::to_string(len).size() + body;
  return std::to_string(len) + " " + std::string(key) + "=" + std::string(value) + "\n";
}

unsigned header_sum(const unsigned char* h) {
  unsigned sum = 0;
  for (std::size_t i = 0; i < kBlock; ++i) {
    sum += (i >= kChksum.off && i < kChksum.off + kChksum.len) ? unsigned{' '} : h[i];
  }
  return sum;
}

int header_sum_signed(const unsigned char* h) {
  int sum = 0;
  for (std::size_t i = 0; i < kBlock; ++i) {
    sum +=
        (i >= kChksum.off && i < kChksum.off + kChksum.len) ? int{' '} : int{static_cast<signed char>(h[i])};
  }
  return sum;
}

std::string_view field_string(const char* block, Field f) {
  std::string_view s(block + f.off, f.len);
  return s.substr(0, s.find('\0'));
}

// Parses a numeric header field: octal (space/NUL padded) or GNU base-256.
std::optional<std::uint64_t> field_number(const char* block, Field f) {
  const auto* p = reinterpret_cast<const unsigned char*>(block + f.off);
  if (p[0] & 0x80) {
    if (p[0] & 0x40) return std::nullopt;  // negative
    std::uint64_t v = p[0] & 0x3f;
    for (std::size_t i = 1; i < f.len; ++i) {
      if (v >> 56) return std::nullopt;
      v = (v << 8) | p[i];
    }
    return v;
  }
  std::size_t i = 0;
  while (i < f.len && p[i] == ' ') ++i;
  std::uint64_t v = 0;
  bool any = false;
  for (; i < f.len && p[i] >= '0' && p[i] <= '7'; ++i) {
    if (v >> 60) return std::nullopt;
    v = (v << 3) | (p[i] - '0');
    any = true;
  }
  for (; i < f.len; ++i) {
    if (p[i] != ' ' && p[i] != '\0') return std::nullopt;
  }
  if (!any) return 0;
  return v;
}

Error corrupt(std::string what) { return Error(ErrorCode::invalid_argument, "corrupt tar archive: " + what); }

std::string quote_name(std::string_view name) {
  std::string out = "'";
  for (char c : name.substr(0, 200)) out.push_back((c >= 0x20 && c < 0x7f) ? c : '?');
  if (name.size() > 200) out += "...";
  return out + "'";
}

struct PaxOverrides {
  std::optional<std::string> path, linkpath;
  std::optional<std::uint64_t> size;
};

Status parse_pax(std::string_view data, std::size_t offset, PaxOverrides& out) {
  while (!data.empty()) {
    const std::size_t sp = data.find(' ');
    if (sp == std::string_view::npos || sp == 0 || sp > 19) {
      return corrupt("malformed pax header at offset " + std::to_string(offset));
    }
    std::uint64_t len = 0;
    for (char c : data.substr(0, sp)) {
      if (c < '0' || c > '9')
        return corrupt("malformed pax record length at offset " + std::to_string(offset));
      len = len * 10 + static_cast<std::uint64_t>(c - '0');
    }
    if (len <= sp + 1 || len > data.size() || data[len - 1] != '\n') {
      return corrupt("malformed pax record at offset " + std::to_string(offset));
    }
    const std::string_view record = data.substr(sp + 1, len - sp - 2);
    const std::size_t eq = record.find('=');
    if (eq == std::string_view::npos) {
      return corrupt("pax record without '=' at offset " + std::to_string(offset));
    }
    const std::string_view key = record.substr(0, eq), value = record.substr(eq + 1);
    if (key == "path") {
      out.path = std::string(value);
    } else if (key == "linkpath") {
      out.linkpath = std::string(value);
    } else if (key == "size") {
      std::uint64_t v = 0;
      if (value.empty() || value.size() > 19)
        return corrupt("bad pax size at offset " + std::to_string(offset));
      for (char c : value) {
        if (c < '0' || c > '9') return corrupt("bad pax size at offset " + std::to_string(offset));
        v = v * 10 + static_cast<std::uint64_t>(c - '0');
      }
      out.size = v;
    }
    data.remove_prefix(len);
  }
  return ok_status();
}

}  // namespace

void TarWriter::header(std::string_view path, char type, std::uint32_t mode, std::uint64_t size,
                       std::string_view link) {
  std::string name = normalize(path);
  if (type == '5') name += '/';
  const bool long_name = name.size() > kName.len;
  const bool long_link = link.size() > kLinkname.len;
  const bool big = size > octal_max(kSize.len);
  if (long_name || long_link || big) {
    std::string pax;
    if (long_name) pax += pax_record("path", name);
    if (long_link) pax += pax_record("linkpath", link);
    if (big) pax += pax_record("size", std::to_string(size));
    const std::string base = name.substr(name.size() > 80 ? name.size() - 80 : 0);
    header("PaxHeaders/" + base, 'x', 0644, pax.size(), {});
    out_ += pax;
    out_.append((kBlock - pax.size() % kBlock) % kBlock, '\0');
    // The ustar header below carries truncated fallbacks.
  }
  std::array<char, kBlock> b{};
  put_string(b.data(), kName, std::string_view(name).substr(0, kName.len));
  put_octal(b.data(), kMode, mode & 07777);
  put_octal(b.data(), kUid, 0);
  put_octal(b.data(), kGid, 0);
  put_octal(b.data(), kSize, big ? 0 : size);
  put_octal(b.data(), kMtime, 0);
  b[kTypeflag] = type;
  put_string(b.data(), kLinkname, link.substr(0, kLinkname.len));
  put_string(b.data(), kMagic, std::string_view("ustar\0", 6));
  put_string(b.data(), kVersion, "00");
  put_string(b.data(), kUname, "root");
  put_string(b.data(), kGname, "root");
  std::memset(b.data() + kChksum.off, ' ', kChksum.len);
  const unsigned sum = header_sum(reinterpret_cast<const unsigned char*>(b.data()));
  // Six octal digits, NUL, space: the traditional layout.
  put_octal(b.data(), Field{kChksum.off, 7}, sum);
  b[kChksum.off + 7] = ' ';
  out_.append(b.data(), b.size());
}

void TarWriter::add_file(std::string_view path, std::string_view content, std::uint32_t mode) {
  header(path, '0', mode, content.size(), {});
  out_.append(content);
  out_.append((kBlock - content.size() % kBlock) % kBlock, '\0');
}

void TarWriter::add_directory(std::string_view path, std::uint32_t mode) { header(path, '5', mode, 0, {}); }

void TarWriter::add_symlink(std::string_view path, std::string_view target) {
  header(path, '2', 0777, 0, target);
}

std::string TarWriter::finish() {
  out_.append(2 * kBlock, '\0');
  return std::move(out_);
}

Result<std::vector<TarEntry>> read_tar(std::string_view archive) {
  std::vector<TarEntry> entries;
  std::size_t off = 0;
  PaxOverrides pax;
  std::optional<std::string> gnu_name, gnu_link;
  while (true) {
    if (off + kBlock > archive.size()) {
      if (off == archive.size()) {
        return corrupt("missing end-of-archive marker at offset " + std::to_string(off) + " (truncated?)");
      }
      return corrupt("truncated header at offset " + std::to_string(off));
    }
    const char* h = archive.data() + off;
    const auto* uh = reinterpret_cast<const unsigned char*>(h);
    if (std::all_of(uh, uh + kBlock, [](unsigned char c) { return c == 0; })) {
      if (pax.path || pax.linkpath || pax.size || gnu_name || gnu_link) {
        return corrupt("extended header without an entry at offset " + std::to_string(off));
      }
      break;  // end of archive (the second zero block is optional for readers)
    }
    const auto stored = field_number(h, kChksum);
    const unsigned computed = header_sum(uh);
    if (!stored || (*stored != computed && static_cast<std::int64_t>(*stored) != header_sum_signed(uh))) {
      return corrupt("bad header checksum at offset " + std::to_string(off) + " (stored " +
                     (stored ? std::to_string(*stored) : std::string("unreadable")) + ", computed " +
                     std::to_string(computed) + ")");
    }
    const char type = h[kTypeflag];
    std::string name(field_string(h, kName));
    // POSIX ustar ("ustar\0") has a name prefix; old GNU ("ustar  ") keeps times there instead.
    const std::string_view magic(h + kMagic.off, kMagic.len);
    if (magic == std::string_view("ustar\0", 6)) {
      const std::string_view prefix = field_string(h, kPrefix);
      if (!prefix.empty() && type != 'L' && type != 'K') name = std::string(prefix) + "/" + name;
    }
    auto size = field_number(h, kSize);
    if (!size) return corrupt("bad size field for " + quote_name(name) + " at offset " + std::to_string(off));
    if (pax.size && type != 'x' && type != 'g') size = pax.size;
    // Hard links, symlinks and directories carry no data, whatever the size field says.
    const bool has_data =
        type != '1' && type != '2' && type != '5' && type != '3' && type != '4' && type != '6';
    const std::uint64_t data_size = has_data ? *size : 0;
    const std::string shown = quote_name(pax.path ? *pax.path : gnu_name ? *gnu_name : name);
    const std::size_t data_off = off + kBlock;
    if (data_size > archive.size() - data_off) {
      return corrupt("truncated entry " + shown + " at offset " + std::to_string(off) + " (needs " +
                     std::to_string(data_size) + " bytes, " + std::to_string(archive.size() - data_off) +
                     " left)");
    }
    const std::uint64_t padded = (data_size + kBlock - 1) / kBlock * kBlock;
    if (padded > archive.size() - data_off) {
      return corrupt("truncated entry " + shown + " at offset " + std::to_string(off) +
                     " (padding of the last block missing)");
    }
    const std::string_view data = archive.substr(data_off, data_size);

    if (type == 'x') {
      MODHOST_TRY(parse_pax(data, off, pax));
    } else if (type == 'g') {
      // Global pax headers (e.g. git's comment) do not affect single entries here.
    } else if (type == 'L' || type == 'K') {
      std::string s(data.substr(0, data.find('\0')));
      (type == 'L' ? gnu_name : gnu_link) = std::move(s);
    } else {
      TarEntry e;
      e.path = normalize(pax.path ? *pax.path : gnu_name ? *gnu_name : name);
      e.link_target = pax.linkpath ? *pax.linkpath
                      : gnu_link   ? *gnu_link
                                   : std::string(field_string(h, kLinkname));
      const auto mode = field_number(h, kMode);
      e.mode = static_cast<std::uint32_t>(mode.value_or(0) & 07777);
      switch (type) {
        case '0':
        case '\0':
        case '7':
          // Old archives mark directories with a trailing slash on a regular entry.
          if (type == '\0' && name.ends_with("/")) {
            e.type = TarEntry::Type::directory;
          } else {
            e.type = TarEntry::Type::file;
            e.content = std::string(data);
          }
          break;
        case '1':
          e.type = TarEntry::Type::hardlink;
          break;
        case '2':
          e.type = TarEntry::Type::symlink;
          break;
        case '5':
          e.type = TarEntry::Type::directory;
          break;
        default:
          e.type = TarEntry::Type::other;
          break;
      }
      if (e.type != TarEntry::Type::symlink && e.type != TarEntry::Type::hardlink) e.link_target.clear();
      entries.push_back(std::move(e));
      pax = {};
      gnu_name.reset();
      gnu_link.reset();
    }
    off = data_off + static_cast<std::size_t>(padded);
  }
  return entries;
}

}  // namespace modhost::image
