// Tests of modhost::image: tar, gzip, sha256, ELF closure, pack, and one
// Docker integration test (skipped when no Docker engine answers).
#include "backends/image/image.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <boost/json.hpp>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <set>
#include <sstream>
#include <thread>

#include "backends/image/sha256.hpp"
#include "gtest/gtest.h"

namespace modhost::image {
namespace {

namespace fs = std::filesystem;
namespace json = boost::json;

// A scratch directory removed at the end of the test.
class TempDir {
 public:
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "modhost-image-test-XXXXXX").string();
    if (::mkdtemp(tmpl.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

void write_file(const fs::path& p, std::string_view content) {
  fs::create_directories(p.parent_path());
  std::ofstream out(p, std::ios::binary);
  out.write(content.data(), static_cast<std::streamsize>(content.size()));
}

std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Runs a command through the shell; returns its exit status and output.
std::pair<int, std::string> run(const std::string& cmd) {
  std::string out;
  std::FILE* p = ::popen((cmd + " 2>&1").c_str(), "r");
  if (p == nullptr) return {-1, "popen failed"};
  char buf[4096];
  std::size_t n;
  while ((n = std::fread(buf, 1, sizeof(buf), p)) > 0) out.append(buf, n);
  const int status = ::pclose(p);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

bool have_program(const std::string& name) { return run("command -v " + name).first == 0; }

std::string trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r' || s.back() == ' ')) s.pop_back();
  return s;
}

std::map<std::string, TarEntry> by_path(const std::vector<TarEntry>& entries) {
  std::map<std::string, TarEntry> m;
  for (const auto& e : entries) m[e.path] = e;
  return m;
}

std::string pseudo_random_bytes(std::size_t n, unsigned seed) {
  std::mt19937 rng(seed);
  std::string s(n, '\0');
  for (auto& c : s) c = static_cast<char>(rng() & 0xff);
  return s;
}

// ---------------------------------------------------------------- sha256

TEST(Sha256, KnownVectors) {
  EXPECT_EQ(sha256_hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(sha256_hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(sha256_hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  EXPECT_EQ(
      sha256_hex(
          "abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmnopqrs"
          "mnopqrstnopqrstu"),
      "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1");
  EXPECT_EQ(sha256_hex(std::string(1000000, 'a')),
            "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

TEST(Sha256, IncrementalEqualsOneShot) {
  const std::string data = pseudo_random_bytes(10000, 7);
  for (std::size_t step : {1u, 3u, 55u, 56u, 63u, 64u, 65u, 1000u}) {
    Sha256 s;
    for (std::size_t i = 0; i < data.size(); i += step) s.update(std::string_view(data).substr(i, step));
    std::string hex;
    char buf[3];
    for (auto b : s.digest()) {
      std::snprintf(buf, sizeof(buf), "%02x", b);
      hex += buf;
    }
    EXPECT_EQ(hex, sha256_hex(data)) << "step " << step;
  }
  // Lengths around the padding boundary.
  EXPECT_EQ(sha256_hex(std::string(55, 'a')),
            "9f4390f8d30c2dd92ec9f095b65e2b9ae9b0a925a5258e241c9f1e910f734318");
  EXPECT_EQ(sha256_hex(std::string(56, 'a')),
            "b35439a4ac6f0948b6d6f9e3c6af0f5f590ce20f1bde7090ef7970686ec6738a");
  EXPECT_EQ(sha256_hex(std::string(64, 'a')),
            "ffe054fe7ae0cb6dc65c3af9b61d5209f439851db43d0ba5997337df154668eb");
}

// ---------------------------------------------------------------- tar

std::string sample_archive() {
  TarWriter w;
  w.add_directory("dir");
  w.add_file("dir/hello.txt", "hello\n", 0600);
  w.add_file("/abs/leading/slash", "x");
  w.add_file("empty", "");
  w.add_file("block", std::string(512, 'b'));
  w.add_file("bin/tool", pseudo_random_bytes(5000, 1), 0755);
  w.add_symlink("dir/link", "hello.txt");
  w.add_file(std::string(150, 'n') + "/" + std::string(200, 'm'), "long");
  w.add_symlink("longlink", "/" + std::string(180, 't'));
  w.add_directory("tmp", 01777);
  return w.finish();
}

TEST(Tar, RoundTrip) {
  const std::string archive = sample_archive();
  EXPECT_EQ(archive.size() % 512, 0u);
  auto entries = read_tar(archive);
  ASSERT_TRUE(entries.ok()) << entries.error().message();
  ASSERT_EQ(entries->size(), 10u);
  auto m = by_path(*entries);
  EXPECT_EQ(m["dir"].type, TarEntry::Type::directory);
  EXPECT_EQ(m["dir"].mode, 0755u);
  EXPECT_EQ(m["dir/hello.txt"].content, "hello\n");
  EXPECT_EQ(m["dir/hello.txt"].mode, 0600u);
  EXPECT_EQ(m["abs/leading/slash"].content, "x");
  EXPECT_EQ(m["empty"].type, TarEntry::Type::file);
  EXPECT_EQ(m["empty"].content, "");
  EXPECT_EQ(m["block"].content, std::string(512, 'b'));
  EXPECT_EQ(m["bin/tool"].content, pseudo_random_bytes(5000, 1));
  EXPECT_EQ(m["bin/tool"].mode, 0755u);
  EXPECT_EQ(m["dir/link"].type, TarEntry::Type::symlink);
  EXPECT_EQ(m["dir/link"].link_target, "hello.txt");
  const std::string long_name = std::string(150, 'n') + "/" + std::string(200, 'm');
  ASSERT_TRUE(m.count(long_name));
  EXPECT_EQ(m[long_name].content, "long");
  EXPECT_EQ(m["longlink"].link_target, "/" + std::string(180, 't'));
  EXPECT_EQ(m["tmp"].mode, 01777u);
}

TEST(Tar, IsReproducible) { EXPECT_EQ(sample_archive(), sample_archive()); }

TEST(Tar, SystemTarExtractsOurArchive) {
  if (!have_program("tar")) GTEST_SKIP() << "no tar program on this machine";
  TempDir dir;
  write_file(dir.path() / "a.tar", sample_archive());
  fs::create_directories(dir.path() / "x");
  auto [rc, out] = run("tar -xf " + (dir.path() / "a.tar").string() + " -C " + (dir.path() / "x").string());
  ASSERT_EQ(rc, 0) << out;
  EXPECT_EQ(read_file(dir.path() / "x/dir/hello.txt"), "hello\n");
  EXPECT_EQ(read_file(dir.path() / "x/dir/link"), "hello\n");
  EXPECT_EQ(read_file(dir.path() / "x" / std::string(150, 'n') / std::string(200, 'm')), "long");
  EXPECT_EQ(fs::read_symlink(dir.path() / "x/longlink").string(), "/" + std::string(180, 't'));
}

TEST(Tar, ReadsGnuAndPaxArchivesFromSystemTar) {
  if (!have_program("tar")) GTEST_SKIP() << "no tar program on this machine";
  TempDir dir;
  const fs::path src = dir.path() / "src";
  const std::string long_dir = std::string(120, 'd');
  write_file(src / long_dir / std::string(130, 'f'), "deep");
  write_file(src / "small", "s");
  fs::create_symlink("/" + std::string(150, 'q'), src / "longsym");
  // Fits ustar only through its 155-byte name prefix.
  const std::string prefixed = std::string(60, 'u') + "/" + std::string(80, 'v');
  write_file(src / prefixed, "prefixed");
  for (const std::string format : {"gnu", "pax", "ustar"}) {
    const fs::path tarball = dir.path() / (format + ".tar");
    // ustar cannot hold these long names; it only gets the small file.
    const std::string what = format == "ustar" ? "small " + prefixed : ".";
    auto [rc, out] =
        run("tar --format=" + format + " -cf " + tarball.string() + " -C " + src.string() + " " + what);
    ASSERT_EQ(rc, 0) << out;
    auto entries = read_tar(read_file(tarball));
    ASSERT_TRUE(entries.ok()) << format << ": " << entries.error().message();
    auto m = by_path(*entries);
    EXPECT_EQ(m["small"].content, "s") << format;
    EXPECT_EQ(m[prefixed].content, "prefixed") << format;
    if (format != "ustar") {
      EXPECT_EQ(m[long_dir + "/" + std::string(130, 'f')].content, "deep") << format;
      EXPECT_EQ(m[long_dir].type, TarEntry::Type::directory) << format;
      EXPECT_EQ(m["longsym"].type, TarEntry::Type::symlink) << format;
      EXPECT_EQ(m["longsym"].link_target, "/" + std::string(150, 'q')) << format;
    }
  }
}

TEST(Tar, RejectsTruncatedArchives) {
  const std::string archive = sample_archive();
  // Cut inside a header, inside file data, and exactly at a header boundary.
  for (std::size_t cut : {std::size_t{100}, std::size_t{512 * 3 + 7}, std::size_t{1024},
                          archive.size() - 1024, std::size_t{0}}) {
    auto r = read_tar(std::string_view(archive).substr(0, cut));
    ASSERT_FALSE(r.ok()) << "cut at " << cut;
    EXPECT_EQ(r.error().code(), ErrorCode::invalid_argument);
    EXPECT_NE(r.error().message().find("corrupt tar archive"), std::string::npos) << r.error().message();
  }
  TarWriter w;
  w.add_file("x", std::string(2000, 'x'));
  const std::string one = w.finish();
  auto r = read_tar(std::string_view(one).substr(0, 512 + 1000));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().message().substr(0, 50), "corrupt tar archive: truncated entry 'x' at offset");
}

TEST(Tar, RejectsBadChecksum) {
  std::string archive = sample_archive();
  archive[10] ^= 0x01;  // inside the first header's name field
  auto r = read_tar(archive);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code(), ErrorCode::invalid_argument);
  EXPECT_NE(r.error().message().find("bad header checksum at offset 0"), std::string::npos)
      << r.error().message();

  archive = sample_archive();
  archive[512 + 124] = 'z';  // a later header's size field
  r = read_tar(archive);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message().find("checksum"), std::string::npos) << r.error().message();
}

TEST(Tar, RejectsGarbage) {
  auto r = read_tar(std::string(2048, 'g'));
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message().find("corrupt tar archive"), std::string::npos);
}

// Random damage gives an error or a result, never a crash (run under ASan/UBSan
// with -DMODHOST_SANITIZE=ON).
TEST(Tar, SurvivesRandomCorruption) {
  const std::string archive = sample_archive();
  std::mt19937 rng(42);
  for (int i = 0; i < 3000; ++i) {
    std::string bad = archive;
    for (int flips = 1 + static_cast<int>(rng() % 4); flips > 0; --flips) {
      bad[rng() % bad.size()] = static_cast<char>(rng() & 0xff);
    }
    if (rng() % 4 == 0) bad.resize(rng() % bad.size());
    static_cast<void>(read_tar(bad));
  }
}

// ---------------------------------------------------------------- gzip

TEST(Gzip, RoundTrip) {
  for (const std::string& data : {std::string(), std::string("hello, world\n"),
                                  std::string(3 * 1024 * 1024, 'z'), pseudo_random_bytes(700000, 3)}) {
    auto z = gzip_compress(data);
    ASSERT_TRUE(z.ok()) << z.error().message();
    ASSERT_GE(z->size(), 18u);
    EXPECT_EQ(static_cast<unsigned char>((*z)[0]), 0x1f);
    EXPECT_EQ(static_cast<unsigned char>((*z)[1]), 0x8b);
    auto back = gzip_decompress(*z);
    ASSERT_TRUE(back.ok()) << back.error().message();
    EXPECT_EQ(*back, data);
  }
  EXPECT_LT(gzip_compress(std::string(3 * 1024 * 1024, 'z')).value().size(), 10000u);
}

TEST(Gzip, ConcatenatedMembers) {
  const std::string a = gzip_compress("first,").value(), b = gzip_compress("second").value();
  auto r = gzip_decompress(a + b);
  ASSERT_TRUE(r.ok()) << r.error().message();
  EXPECT_EQ(*r, "first,second");
}

TEST(Gzip, SystemGunzipReadsOurOutput) {
  if (!have_program("gzip")) GTEST_SKIP() << "no gzip program on this machine";
  TempDir dir;
  const std::string data = pseudo_random_bytes(100000, 5) + std::string(100000, 'a');
  write_file(dir.path() / "d.gz", gzip_compress(data).value());
  auto [rc, out] = run("gzip -d " + (dir.path() / "d.gz").string());
  ASSERT_EQ(rc, 0) << out;
  EXPECT_EQ(read_file(dir.path() / "d"), data);
}

TEST(Gzip, RejectsCorruptInput) {
  const std::string data = pseudo_random_bytes(100000, 9);
  const std::string z = gzip_compress(data).value();

  auto not_gzip = gzip_decompress("plain text, not gzip");
  ASSERT_FALSE(not_gzip.ok());
  EXPECT_EQ(not_gzip.error().code(), ErrorCode::invalid_argument);
  EXPECT_NE(not_gzip.error().message().find("not gzip"), std::string::npos);
  EXPECT_FALSE(gzip_decompress("").ok());

  auto truncated = gzip_decompress(std::string_view(z).substr(0, z.size() / 2));
  ASSERT_FALSE(truncated.ok());
  EXPECT_NE(truncated.error().message().find("truncated"), std::string::npos) << truncated.error().message();

  // A flipped bit in the data or the trailer's CRC is caught.
  for (std::size_t pos : {z.size() / 2, z.size() - 6}) {
    std::string bad = z;
    bad[pos] = static_cast<char>(bad[pos] ^ 0x10);
    auto r = gzip_decompress(bad);
    ASSERT_FALSE(r.ok()) << "flip at " << pos;
    EXPECT_EQ(r.error().code(), ErrorCode::invalid_argument);
  }
  // Trailing garbage after a complete member.
  EXPECT_FALSE(gzip_decompress(z + "garbage").ok());
}

TEST(Gzip, SurvivesRandomCorruption) {
  const std::string z = gzip_compress(pseudo_random_bytes(20000, 11) + std::string(20000, 'q')).value();
  std::mt19937 rng(43);
  int rejected = 0;
  for (int i = 0; i < 500; ++i) {
    std::string bad = z;
    bad[2 + rng() % (bad.size() - 2)] ^= static_cast<char>(1 + rng() % 255);
    if (!gzip_decompress(bad).ok()) ++rejected;
  }
  EXPECT_GT(rejected, 400);  // the CRC catches almost every change
}

// ---------------------------------------------------------------- ELF

TEST(Elf, LsNeedsLibcAndTheInterpreter) {
  auto deps = elf_dependencies("/bin/ls");
  ASSERT_TRUE(deps.ok()) << deps.error().message();
  const auto& d = *deps;
  EXPECT_NE(std::find(d.begin(), d.end(), "/lib64/ld-linux-x86-64.so.2"), d.end());
  EXPECT_TRUE(
      std::any_of(d.begin(), d.end(), [](const std::string& p) { return p.ends_with("/libc.so.6"); }));
  EXPECT_EQ(std::set<std::string>(d.begin(), d.end()).size(), d.size()) << "duplicates";
  for (const auto& p : d) {
    EXPECT_TRUE(p.starts_with("/")) << p;
    EXPECT_TRUE(fs::exists(p)) << p;
  }
}

TEST(Elf, RecursiveClosureMatchesLdd) {
  if (!have_program("ldd")) GTEST_SKIP() << "no ldd on this machine";
  // A binary with libraries that need libraries of their own.
  const std::string bin = fs::exists("/usr/bin/curl") ? "/usr/bin/curl" : "/bin/ls";
  auto deps = elf_dependencies(bin);
  ASSERT_TRUE(deps.ok()) << deps.error().message();
  std::set<std::string> ours;
  for (const auto& p : *deps) ours.insert(fs::canonical(p).string());
  auto [rc, out] = run("ldd " + bin);
  ASSERT_EQ(rc, 0) << out;
  std::istringstream lines(out);
  std::string line;
  while (std::getline(lines, line)) {
    std::string path;
    if (auto arrow = line.find("=> /"); arrow != std::string::npos) {
      path = line.substr(arrow + 3, line.find(" (", arrow) - arrow - 3);
    } else if (auto slash = line.find_first_not_of(" \t"); slash != std::string::npos && line[slash] == '/') {
      path = line.substr(slash, line.find(" (") - slash);
    }
    if (path.empty()) continue;
    EXPECT_TRUE(ours.count(fs::canonical(path).string())) << path << " (from ldd) missing";
  }
}

TEST(Elf, StaticBinaryHasNoDependencies) {
  auto deps = elf_dependencies(MODHOST_DATASTORE_BIN);
  ASSERT_TRUE(deps.ok()) << deps.error().message();
  auto [rc, out] = run(std::string("file -L ") + MODHOST_DATASTORE_BIN);
  if (out.find("statically linked") != std::string::npos) {
    EXPECT_TRUE(deps->empty());
  }
  if (fs::exists("/bin/busybox")) {
    auto bb = elf_dependencies("/bin/busybox");
    ASSERT_TRUE(bb.ok()) << bb.error().message();
    if (run("file -L /bin/busybox").second.find("statically linked") != std::string::npos) {
      EXPECT_TRUE(bb->empty());
    }
  }
}

TEST(Elf, RejectsNonElfAndMissingFiles) {
  auto r = elf_dependencies("/etc/passwd");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code(), ErrorCode::invalid_argument);
  EXPECT_NE(r.error().message().find("not an ELF file"), std::string::npos) << r.error().message();

  auto missing = elf_dependencies("/nonexistent/modhost-binary");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.error().code(), ErrorCode::not_found);

  TempDir dir;
  std::string truncated = read_file("/bin/ls").substr(0, 100);
  write_file(dir.path() / "trunc", truncated);
  auto t = elf_dependencies((dir.path() / "trunc").string());
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.error().code(), ErrorCode::invalid_argument);
}

TEST(Elf, SurvivesCorruptHeaders) {
  const std::string ls = read_file("/bin/ls");
  ASSERT_GT(ls.size(), 4096u);
  TempDir dir;
  const fs::path p = dir.path() / "mutant";
  std::mt19937 rng(44);
  for (int i = 0; i < 150; ++i) {
    std::string bad = ls;
    for (int flips = 0; flips < 8; ++flips) bad[4 + rng() % 4092] = static_cast<char>(rng() & 0xff);
    if (i % 5 == 0) bad.resize(64 + rng() % 4000);
    write_file(p, bad);
    static_cast<void>(elf_dependencies(p.string()));
  }
}

// ---------------------------------------------------------------- pack

struct Unpacked {
  json::value manifest;
  json::value config;
  std::string layer_tar;
  std::map<std::string, TarEntry> layer;
};

Unpacked unpack(const std::string& archive) {
  Unpacked u;
  auto outer = read_tar(archive);
  EXPECT_TRUE(outer.ok()) << outer.error().message();
  if (!outer.ok()) return u;
  auto files = by_path(*outer);
  EXPECT_TRUE(files.count("manifest.json"));
  u.manifest = json::parse(files["manifest.json"].content);
  const auto& m = u.manifest.as_array().at(0).as_object();
  u.config = json::parse(files[std::string(m.at("Config").as_string())].content);
  u.layer_tar = files[std::string(m.at("Layers").as_array().at(0).as_string())].content;
  auto layer = read_tar(u.layer_tar);
  EXPECT_TRUE(layer.ok()) << layer.error().message();
  if (layer.ok()) u.layer = by_path(*layer);
  return u;
}

// Resolves PATH inside the layer through its symlinks, as the image's kernel would.
std::optional<std::string> resolve_in_layer(const std::map<std::string, TarEntry>& layer, std::string path) {
  for (int hops = 0; hops < 40; ++hops) {
    std::vector<std::string> parts;
    for (const auto& p : fs::path(path).lexically_normal()) {
      if (p != "/" && !p.empty()) parts.push_back(p.string());
    }
    std::string cur;
    bool restarted = false;
    for (std::size_t i = 0; i < parts.size(); ++i) {
      const std::string next = cur.empty() ? parts[i] : cur + "/" + parts[i];
      auto it = layer.find(next);
      if (it == layer.end()) return std::nullopt;
      if (it->second.type == TarEntry::Type::symlink) {
        const std::string& t = it->second.link_target;
        std::string rest;
        for (std::size_t j = i + 1; j < parts.size(); ++j) rest += "/" + parts[j];
        path = (t.starts_with("/") ? t : "/" + cur + "/" + t) + rest;
        restarted = true;
        break;
      }
      cur = next;
    }
    if (!restarted) return cur;
  }
  return std::nullopt;
}

TEST(Pack, DatastoreImage) {
  PackSpec spec;
  spec.reference = "modhost-test/datastore:1";
  spec.entrypoint = MODHOST_DATASTORE_BIN;
  spec.args = {"--port", "1323"};
  const auto start = std::chrono::steady_clock::now();
  auto archive = pack(spec);
  const auto ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start).count();
  ASSERT_TRUE(archive.ok()) << archive.error().message();
  std::printf("packed datastore image: %zu bytes in %lld ms\n", archive->size(), static_cast<long long>(ms));

  Unpacked u = unpack(*archive);
  const auto& manifest = u.manifest.as_array();
  ASSERT_EQ(manifest.size(), 1u);
  EXPECT_EQ(manifest[0].at("Layers").as_array().size(), 1u);
  EXPECT_EQ(manifest[0].at("RepoTags").as_array().at(0).as_string(), "modhost-test/datastore:1");

  const auto& cfg = u.config.as_object();
  EXPECT_EQ(cfg.at("architecture").as_string(), "amd64");
  EXPECT_EQ(cfg.at("os").as_string(), "linux");
  EXPECT_EQ(cfg.at("config").at("Entrypoint").as_array().at(0).as_string(), "/bin/modhost-datastore");
  EXPECT_EQ(cfg.at("config").at("Cmd").as_array().size(), 2u);
  EXPECT_EQ(cfg.at("rootfs").at("type").as_string(), "layers");
  EXPECT_EQ(cfg.at("rootfs").at("diff_ids").as_array().at(0).as_string(),
            "sha256:" + sha256_hex(u.layer_tar));

  ASSERT_TRUE(u.layer.count("bin/modhost-datastore"));
  const auto& bin = u.layer["bin/modhost-datastore"];
  EXPECT_EQ(bin.type, TarEntry::Type::file);
  EXPECT_EQ(bin.mode & 0111, 0111u);
  EXPECT_EQ(bin.content, read_file(MODHOST_DATASTORE_BIN));
  EXPECT_EQ(u.layer["tmp"].mode, 01777u);
  EXPECT_NE(u.layer["etc/passwd"].content.find("root:x:0:0"), std::string::npos);
  EXPECT_TRUE(u.layer.count("etc/group"));

  // Same input, same bytes: images are reproducible.
  EXPECT_EQ(pack(spec).value(), *archive);
}

TEST(Pack, DynamicBinaryCarriesResolvableLibraries) {
  PackSpec spec;
  spec.reference = "modhost-test/ls";
  spec.entrypoint = "/bin/ls";
  auto archive = pack(spec);
  ASSERT_TRUE(archive.ok()) << archive.error().message();
  Unpacked u = unpack(*archive);
  EXPECT_EQ(u.manifest.as_array().at(0).at("RepoTags").as_array().at(0).as_string(),
            "modhost-test/ls:latest");
  auto deps = elf_dependencies("/bin/ls");
  ASSERT_TRUE(deps.ok());
  for (const auto& dep : *deps) {
    auto real = resolve_in_layer(u.layer, dep);
    ASSERT_TRUE(real.has_value()) << dep << " does not resolve inside the image";
    EXPECT_EQ(u.layer[*real].type, TarEntry::Type::file) << dep;
    EXPECT_EQ(u.layer[*real].content, read_file(dep)) << dep;
  }
  // Every symlink in the layer points at something in the layer.
  for (const auto& [path, e] : u.layer) {
    if (e.type == TarEntry::Type::symlink) {
      EXPECT_TRUE(resolve_in_layer(u.layer, "/" + path)) << path;
    }
  }
}

TEST(Pack, AddsFilesDirectoriesAndSymlinks) {
  TempDir dir;
  const fs::path src = dir.path() / "conf";
  write_file(src / "a.conf", "a=1\n");
  write_file(src / "sub/b.conf", "b=2\n");
  fs::create_symlink("a.conf", src / "current");
  write_file(dir.path() / "single", "single\n");
  fs::permissions(dir.path() / "single", fs::perms(0750));

  PackSpec spec;
  spec.reference = "modhost-test/add:1";
  spec.entrypoint = MODHOST_DATASTORE_BIN;
  spec.add = {{src.string(), "/etc/app"},
              {(dir.path() / "single").string(), "/opt/"},
              {(dir.path() / "single").string(), "/lib/x86_64-linux-gnu/renamed"}};
  spec.env = {"A=1", "PATH=/bin"};
  auto archive = pack_with_symlinks(spec, {{"/bin/sh", "modhost-datastore"}});
  ASSERT_TRUE(archive.ok()) << archive.error().message();
  Unpacked u = unpack(*archive);
  EXPECT_EQ(u.layer["etc/app/a.conf"].content, "a=1\n");
  EXPECT_EQ(u.layer["etc/app/sub/b.conf"].content, "b=2\n");
  EXPECT_EQ(u.layer["etc/app/sub"].type, TarEntry::Type::directory);
  EXPECT_EQ(u.layer["etc/app/current"].type, TarEntry::Type::symlink);
  EXPECT_EQ(u.layer["etc/app/current"].link_target, "a.conf");
  EXPECT_EQ(u.layer["opt/single"].content, "single\n");
  EXPECT_EQ(u.layer["opt/single"].mode, 0750u);
  EXPECT_TRUE(resolve_in_layer(u.layer, "/lib/x86_64-linux-gnu/renamed").has_value());
  EXPECT_EQ(u.layer["bin/sh"].type, TarEntry::Type::symlink);
  EXPECT_EQ(u.layer["bin/sh"].link_target, "modhost-datastore");
  EXPECT_TRUE(u.layer.count("etc/passwd"));  // defaults survive a merged /etc
  const auto& env = u.config.at("config").at("Env").as_array();
  ASSERT_EQ(env.size(), 2u);  // no default PATH when the spec sets one
  EXPECT_EQ(env[1].as_string(), "PATH=/bin");
}

// The libraries /bin/ls needs that the datastore does not: those only an
// added copy of ls can bring into the datastore's image.
std::vector<std::string> libraries_only_ls_needs() {
  auto ls = elf_dependencies("/bin/ls");
  auto datastore = elf_dependencies(MODHOST_DATASTORE_BIN);
  EXPECT_TRUE(ls.ok() && datastore.ok());
  if (!ls.ok() || !datastore.ok()) return {};
  std::vector<std::string> out;
  for (const auto& lib : *ls) {
    if (std::find(datastore->begin(), datastore->end(), lib) == datastore->end()) out.push_back(lib);
  }
  return out;
}

TEST(Pack, AddedElfFilesBringTheirLibraries) {
  TempDir dir;
  const fs::path tools = dir.path() / "tools";
  fs::create_directories(tools / "bin");
  fs::copy_file("/bin/ls", tools / "bin/ls");
  // Not for the entrypoint's loader (32-bit), and not ELF at all: added as they are.
  write_file(tools / "lib32/old.so", std::string("\x7f"
                                                 "ELF\x01\x01\x01",
                                                 7) +
                                         std::string(60, '\0'));
  write_file(tools / "README", "tools\n");
  const std::vector<std::string> only_ls = libraries_only_ls_needs();
  ASSERT_FALSE(only_ls.empty()) << "the datastore needs every library /bin/ls needs; nothing to show";

  PackSpec spec;
  spec.reference = "modhost-test/closure:1";
  spec.entrypoint = MODHOST_DATASTORE_BIN;
  spec.add = {{tools.string(), "/opt/tools"}, {"/bin/ls", "/usr/local/bin/ls2"}};
  auto archive = pack(spec);
  ASSERT_TRUE(archive.ok()) << archive.error().message();
  Unpacked u = unpack(*archive);
  EXPECT_EQ(u.layer["opt/tools/bin/ls"].content, read_file("/bin/ls"));
  EXPECT_EQ(u.layer["opt/tools/README"].content, "tools\n");
  EXPECT_EQ(u.layer["opt/tools/lib32/old.so"].type, TarEntry::Type::file);
  auto deps = elf_dependencies("/bin/ls");
  ASSERT_TRUE(deps.ok()) << deps.error().message();
  for (const auto& dep : *deps) {
    auto real = resolve_in_layer(u.layer, dep);
    ASSERT_TRUE(real.has_value()) << dep << " (needed by the added ls) does not resolve inside the image";
    EXPECT_EQ(u.layer[*real].content, read_file(dep)) << dep;
  }
  for (const auto& [path, e] : u.layer) {
    if (e.type == TarEntry::Type::symlink) {
      EXPECT_TRUE(resolve_in_layer(u.layer, "/" + path)) << path;
    }
  }
  EXPECT_EQ(pack(spec).value(), *archive) << "not reproducible";

  // Off: only the entrypoint's libraries.
  spec.add_libraries = false;
  auto bare = pack(spec);
  ASSERT_TRUE(bare.ok()) << bare.error().message();
  Unpacked b = unpack(*bare);
  EXPECT_TRUE(b.layer.count("opt/tools/bin/ls"));
  for (const auto& lib : only_ls) EXPECT_FALSE(resolve_in_layer(b.layer, lib).has_value()) << lib;
}

TEST(Pack, ExcludeLeavesOutMatchingEntries) {
  TempDir dir;
  const fs::path pkg = dir.path() / "pkg";
  write_file(pkg / "a.py", "a\n");
  write_file(pkg / "stale.pyc", "x");
  write_file(pkg / "__pycache__/a.cpython-311.pyc", "x");
  write_file(pkg / "sub/b.py", "b\n");
  write_file(pkg / "sub/test/t.py", "t\n");
  write_file(pkg / "other/test/kept.py", "kept\n");
  // An excluded ELF file brings no libraries either.
  fs::create_directories(pkg / "__pycache__/bin");
  fs::copy_file("/bin/ls", pkg / "__pycache__/bin/ls");
  const std::vector<std::string> only_ls = libraries_only_ls_needs();

  PackSpec spec;
  spec.reference = "modhost-test/exclude:1";
  spec.entrypoint = MODHOST_DATASTORE_BIN;
  spec.add = {{pkg.string(), "/app"}};
  spec.exclude = {"__pycache__", "*.pyc", (pkg / "sub/test").string()};
  auto archive = pack(spec);
  ASSERT_TRUE(archive.ok()) << archive.error().message();
  Unpacked u = unpack(*archive);
  EXPECT_EQ(u.layer["app/a.py"].content, "a\n");
  EXPECT_EQ(u.layer["app/sub/b.py"].content, "b\n");
  EXPECT_EQ(u.layer["app/other/test/kept.py"].content, "kept\n") << "a pattern with '/' matches one path";
  for (const char* gone : {"app/stale.pyc", "app/__pycache__", "app/__pycache__/a.cpython-311.pyc",
                           "app/__pycache__/bin/ls", "app/sub/test", "app/sub/test/t.py"}) {
    EXPECT_FALSE(u.layer.count(gone)) << gone;
  }
  for (const auto& lib : only_ls) EXPECT_FALSE(resolve_in_layer(u.layer, lib).has_value()) << lib;
}

TEST(Pack, ReportsClearErrors) {
  PackSpec spec;
  spec.reference = "modhost-test/bad:1";
  spec.entrypoint = "/nonexistent/binary";
  auto r = pack(spec);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code(), ErrorCode::not_found);
  EXPECT_NE(r.error().message().find("/nonexistent/binary"), std::string::npos);

  spec.entrypoint = "/etc/passwd";
  r = pack(spec);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message().find("not an ELF file"), std::string::npos) << r.error().message();

  spec.entrypoint = MODHOST_DATASTORE_BIN;
  spec.add = {{"/nonexistent/src", "/x"}};
  r = pack(spec);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message().find("/nonexistent/src"), std::string::npos);

  spec.add = {{"/etc/hostname", "relative/dest"}};
  EXPECT_FALSE(pack(spec).ok());

  spec.add = {};
  spec.reference = "name@sha256:abc";
  EXPECT_FALSE(pack(spec).ok());
}

// ---------------------------------------------------------------- Docker

bool docker_socket_answers() {
  const int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
  if (fd < 0) return false;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", "/var/run/docker.sock");
  const bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  ::close(fd);
  return ok;
}

// One HTTP/1.1 request over a fresh connection; returns the raw response or "".
std::string http(int port, const std::string& request) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return {};
  timeval tv{5, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<std::uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  std::string out;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 &&
      ::send(fd, request.data(), request.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(request.size())) {
    char buf[4096];
    ssize_t n;
    while ((n = ::recv(fd, buf, sizeof(buf), 0)) > 0) out.append(buf, static_cast<std::size_t>(n));
  }
  ::close(fd);
  return out;
}

// Removes the container and the image however the test ends.
struct DockerCleanup {
  std::string container, image;
  ~DockerCleanup() {
    if (!container.empty()) run("docker rm -f " + container);
    if (!image.empty()) run("docker rmi -f " + image);
  }
};

TEST(Docker, DOCKER_LoadsPackedDatastoreImage) {
  if (!fs::exists("/var/run/docker.sock") || !docker_socket_answers()) {
    GTEST_SKIP() << "no Docker engine answers at /var/run/docker.sock";
  }
  if (!have_program("docker")) GTEST_SKIP() << "the docker CLI is not installed";

  // A unique name: other runs may share this engine.
  const std::string ref =
      "modhost-test/datastore:" + std::to_string(::getpid()) + "-" +
      std::to_string(std::chrono::steady_clock::now().time_since_epoch().count() % 1000000);
  DockerCleanup cleanup;
  TempDir dir;
  PackSpec spec;
  spec.reference = ref;
  spec.entrypoint = MODHOST_DATASTORE_BIN;
  auto archive = pack(spec);
  ASSERT_TRUE(archive.ok()) << archive.error().message();
  const fs::path file = dir.path() / "datastore.tar";
  write_file(file, *archive);

  cleanup.image = ref;
  auto [load_rc, load_out] = run("docker load -i " + file.string());
  ASSERT_EQ(load_rc, 0) << load_out;
  EXPECT_NE(load_out.find(ref), std::string::npos) << load_out;

  auto [run_rc, id] = run("docker run -d -p 127.0.0.1::1323 " + ref);
  ASSERT_EQ(run_rc, 0) << id;
  cleanup.container = trim(id);

  auto [port_rc, port_out] = run("docker port " + cleanup.container + " 1323/tcp");
  ASSERT_EQ(port_rc, 0) << port_out;
  const std::string mapping = trim(port_out.substr(0, port_out.find('\n')));
  const int port = std::atoi(mapping.substr(mapping.rfind(':') + 1).c_str());
  ASSERT_GT(port, 0) << port_out;

  std::string response;
  for (int i = 0; i < 100 && response.find("\r\n\r\nok") == std::string::npos; ++i) {
    if (i > 0) std::this_thread::sleep_for(std::chrono::milliseconds(100));
    response = http(port, "GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
  }
  EXPECT_EQ(response.substr(0, 15), "HTTP/1.1 200 OK") << response;
  EXPECT_NE(response.find("\r\n\r\nok"), std::string::npos) << response;

  // The store works and SIGTERM (docker stop) ends it with status 0.
  EXPECT_EQ(
      http(port, "PUT /kv/k HTTP/1.1\r\nContent-Length: 5\r\nConnection: close\r\n\r\nvalue").substr(0, 12),
      "HTTP/1.1 201");
  const std::string got = http(port, "GET /kv/k HTTP/1.1\r\nConnection: close\r\n\r\n");
  EXPECT_TRUE(got.ends_with("\r\n\r\nvalue")) << got;
  auto [stop_rc, stop_out] = run("docker stop -t 10 " + cleanup.container);
  EXPECT_EQ(stop_rc, 0) << stop_out;
  EXPECT_EQ(trim(run("docker inspect -f '{{.State.ExitCode}}' " + cleanup.container).second), "0");
}

}  // namespace
}  // namespace modhost::image

// --- Trees: tar_tree and extract_tar ---

namespace {

std::string fresh_dir(const std::string& name) {
  std::string d = ::testing::TempDir() + "/modhost-tree-" + name + "-" + std::to_string(::getpid());
  std::filesystem::remove_all(d);
  std::filesystem::create_directories(d);
  return d;
}

}  // namespace

TEST(Tree, RoundTripsADirectory) {
  std::string src = fresh_dir("src");
  std::filesystem::create_directories(src + "/a/b");
  std::ofstream(src + "/a/b/file.txt") << "hello";
  std::ofstream(src + "/top") << "top";
  std::filesystem::create_symlink("a/b/file.txt", src + "/link");
  auto tar = modhost::image::tar_tree(src);
  ASSERT_TRUE(tar.ok()) << tar.error().message();
  std::string dst = fresh_dir("dst");
  auto s = modhost::image::extract_tar(tar.value(), dst);
  ASSERT_TRUE(s.ok()) << s.error().message();
  std::ifstream in(dst + "/a/b/file.txt");
  std::string content((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(content, "hello");
  EXPECT_TRUE(std::filesystem::is_symlink(dst + "/link"));
  EXPECT_EQ(std::filesystem::read_symlink(dst + "/link"), "a/b/file.txt");
  std::filesystem::remove_all(src);
  std::filesystem::remove_all(dst);
}

TEST(Tree, ASingleFileKeepsItsName) {
  std::string src = fresh_dir("single");
  std::ofstream(src + "/config.json") << "{}";
  auto tar = modhost::image::tar_tree(src + "/config.json");
  ASSERT_TRUE(tar.ok());
  auto entries = modhost::image::read_tar(tar.value());
  ASSERT_TRUE(entries.ok());
  ASSERT_EQ(entries->size(), 1u);
  EXPECT_EQ(entries->front().path, "config.json");
  std::filesystem::remove_all(src);
}

TEST(Tree, RefusesEntriesThatEscapeTheDestination) {
  std::string outside = fresh_dir("outside");
  std::string dst = fresh_dir("escape");
  for (const std::string& evil :
       {std::string("../escaped"), std::string("a/../../escaped"), std::string("a/b/../../../escaped")}) {
    modhost::image::TarWriter w;
    w.add_file("fine.txt", "ok");
    w.add_file(evil, "pwned");
    auto s = modhost::image::extract_tar(w.finish(), dst);
    EXPECT_FALSE(s.ok()) << evil;
    EXPECT_FALSE(std::filesystem::exists(dst + "/fine.txt")) << "wrote before checking every path";
  }
  // An absolute entry path lands under the destination, never at its own path.
  modhost::image::TarWriter w;
  w.add_file(outside + "/abs", "contained");
  ASSERT_TRUE(modhost::image::extract_tar(w.finish(), dst).ok());
  EXPECT_TRUE(std::filesystem::exists(dst + outside + "/abs"));
  EXPECT_TRUE(std::filesystem::is_empty(outside));
  std::filesystem::remove_all(outside);
  std::filesystem::remove_all(dst);
}

TEST(Tree, NeverWritesThroughASymlink) {
  std::string outside = fresh_dir("outside2");
  std::string dst = fresh_dir("symlink");
  modhost::image::TarWriter w;
  w.add_symlink("evil", outside);           // an absolute symlink to a directory outside
  w.add_file("evil/planted.txt", "pwned");  // then a file through it
  auto s = modhost::image::extract_tar(w.finish(), dst);
  EXPECT_FALSE(s.ok());
  EXPECT_FALSE(std::filesystem::exists(outside + "/planted.txt"));
  modhost::image::TarWriter w2;
  w2.add_symlink("f", outside + "/target.txt");  // a symlink, then a file of the same name
  w2.add_file("f", "replaced");
  std::string dst2 = fresh_dir("symlink2");
  ASSERT_TRUE(modhost::image::extract_tar(w2.finish(), dst2).ok());
  EXPECT_FALSE(std::filesystem::exists(outside + "/target.txt"));
  EXPECT_FALSE(std::filesystem::is_symlink(dst2 + "/f"));
  std::filesystem::remove_all(outside);
  std::filesystem::remove_all(dst);
  std::filesystem::remove_all(dst2);
}
