// The native backend's image store on real files: docker-save archives and
// OCI layouts unpacked into shared layers, whiteouts as overlayfs reads them
// (and applied without it), and archives that must be refused leaving the
// store as it was. Needs root (whiteouts are device nodes and xattrs).
#include <gtest/gtest.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <boost/json.hpp>
#include <filesystem>
#include <fstream>
#include <random>

#include "backends/image/image.hpp"
#include "backends/image/sha256.hpp"
#include "backends/native/image_store.hpp"

namespace modhost::backend::native {
namespace {

namespace fs = std::filesystem;
namespace json = boost::json;
using image::TarWriter;

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

void spit(const fs::path& p, std::string_view s) {
  fs::create_directories(p.parent_path());
  std::ofstream(p, std::ios::binary) << s;
}

// A docker-save archive of LAYERS (uncompressed tars), lowest first.
std::string docker_save(const std::string& ref, const std::vector<std::string>& layers,
                        std::vector<std::string> diff_ids = {}) {
  if (diff_ids.empty()) {
    for (const auto& l : layers) diff_ids.push_back("sha256:" + image::sha256_hex(l));
  }
  json::array ids;
  for (const auto& d : diff_ids) ids.emplace_back(d);
  const std::string config =
      json::serialize(json::object{{"config", json::object{{"Entrypoint", json::array{"/bin/app"}},
                                                           {"Env", json::array{"A=1"}},
                                                           {"WorkingDir", "/w"}}},
                                   {"rootfs", json::object{{"type", "layers"}, {"diff_ids", ids}}}});
  const std::string config_name = image::sha256_hex(config) + ".json";
  TarWriter tar;
  json::array layer_paths;
  for (size_t i = 0; i < layers.size(); ++i) {
    const std::string p = "l" + std::to_string(i) + "/layer.tar";
    tar.add_file(p, layers[i]);
    layer_paths.emplace_back(p);
  }
  tar.add_file(config_name, config);
  tar.add_file("manifest.json",
               json::serialize(json::array{json::object{
                   {"Config", config_name}, {"RepoTags", json::array{ref}}, {"Layers", layer_paths}}}));
  return tar.finish();
}

class ImageStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root: layer whiteouts are device nodes and trusted xattrs";
    std::random_device rd;
    dir_ = fs::temp_directory_path() / ("modhost-image-store-" + std::to_string(rd()));
    auto s = ImageStore::open((dir_ / "store").string());
    ASSERT_TRUE(s.ok()) << s.error().message();
    store_ = std::move(s).value();
  }
  void TearDown() override {
    if (!dir_.empty()) {
      ::umount2((dir_ / "merged").c_str(), MNT_DETACH);
      fs::remove_all(dir_);
    }
  }

  std::string archive(const std::string& name, const std::string& bytes) {
    spit(dir_ / name, bytes);
    return (dir_ / name).string();
  }

  // Every entry under ROOT (relative paths), for comparing trees.
  static std::set<std::string> tree(const fs::path& root) {
    std::set<std::string> out;
    for (auto it = fs::recursive_directory_iterator(root); it != fs::recursive_directory_iterator(); ++it)
      out.insert(it->path().lexically_relative(root).string());
    return out;
  }

  std::set<std::string> layers_on_disk() { return tree(dir_ / "store" / "layers"); }

  fs::path dir_;
  std::unique_ptr<ImageStore> store_;
};

std::string base_layer() {
  TarWriter t;
  t.add_directory("bin");
  t.add_file("bin/app", "#!/bin/sh\n", 0755);
  t.add_file("a", "gone in the top layer");
  t.add_directory("dir");
  t.add_file("dir/x", "x");
  t.add_file("dir/y", "y");
  t.add_symlink("link", "bin/app");
  return t.finish();
}

std::string top_layer() {
  TarWriter t;
  t.add_file(".wh.a", "");
  t.add_directory("dir");
  t.add_file("dir/.wh..wh..opq", "");
  t.add_file("dir/z", "z");
  t.add_file("new", "new");
  return t.finish();
}

TEST_F(ImageStoreTest, DockerSaveLayersUnpackWithWhiteoutsAsOverlayfsReadsThem) {
  auto loaded = store_->load(archive("img.tar", docker_save("demo/app:1", {base_layer(), top_layer()})));
  ASSERT_TRUE(loaded.ok()) << loaded.error().message();
  ASSERT_EQ(loaded->size(), 1u);
  const StoredImage& img = loaded->front();
  EXPECT_EQ(img.references, std::vector<std::string>{"demo/app:1"});
  EXPECT_EQ(img.entrypoint, std::vector<std::string>{"/bin/app"});
  EXPECT_EQ(img.env, std::vector<std::string>{"A=1"});
  EXPECT_EQ(img.workdir, "/w");
  ASSERT_EQ(img.layers.size(), 2u);
  EXPECT_EQ(img.layers[0], image::sha256_hex(base_layer()));

  auto dirs = store_->layer_dirs(img);
  EXPECT_EQ(slurp(fs::path(dirs[0]) / "bin/app"), "#!/bin/sh\n");
  EXPECT_EQ(fs::read_symlink(fs::path(dirs[0]) / "link"), "bin/app");
  struct stat st {};
  ASSERT_EQ(::lstat((fs::path(dirs[1]) / "a").c_str(), &st), 0);
  EXPECT_TRUE(S_ISCHR(st.st_mode) && st.st_rdev == ::makedev(0, 0)) << "'.wh.a' is not a 0:0 device";
  EXPECT_FALSE(fs::exists(fs::path(dirs[1]) / ".wh.a"));
  char v = 0;
  EXPECT_EQ(::lgetxattr((fs::path(dirs[1]) / "dir").c_str(), "trusted.overlay.opaque", &v, 1), 1);
  EXPECT_EQ(v, 'y');

  // Without overlayfs: the layers applied in order give the image's tree.
  const fs::path flat = dir_ / "flat";
  for (const auto& d : dirs) ASSERT_TRUE(image::apply_layer_dir(d, flat.string()).ok());
  const std::set<std::string> expected = {"bin", "bin/app", "dir", "dir/z", "link", "new"};
  EXPECT_EQ(tree(flat), expected);

  // With overlayfs (where the kernel has it): the same view.
  std::ifstream filesystems("/proc/filesystems");
  if (std::string(std::istreambuf_iterator<char>(filesystems), {}).find("overlay") != std::string::npos) {
    fs::create_directories(dir_ / "merged");
    fs::create_directories(dir_ / "upper");
    fs::create_directories(dir_ / "work");
    const std::string opts = "lowerdir=" + dirs[1] + ":" + dirs[0] +
                             ",upperdir=" + (dir_ / "upper").string() +
                             ",workdir=" + (dir_ / "work").string();
    ASSERT_EQ(::mount("overlay", (dir_ / "merged").c_str(), "overlay", 0, opts.c_str()), 0)
        << std::strerror(errno);
    EXPECT_EQ(tree(dir_ / "merged"), expected);
    ::umount2((dir_ / "merged").c_str(), MNT_DETACH);
  }
}

TEST_F(ImageStoreTest, WhatImagePackWritesLoads) {
  const std::string packed = std::string(MODHOST_IMAGE_DIR) + "/modhost-busybox.tar";
  if (!fs::exists(packed)) GTEST_SKIP() << packed << " is not built";
  auto loaded = store_->load(packed);
  ASSERT_TRUE(loaded.ok()) << loaded.error().message();
  auto found = store_->find("modhost/busybox:1");
  ASSERT_TRUE(found.ok()) << found.error().message();
  bool has_busybox = false;
  for (const auto& d : store_->layer_dirs(found.value()))
    has_busybox |= fs::exists(fs::path(d) / "bin/busybox");
  EXPECT_TRUE(has_busybox);
}

TEST_F(ImageStoreTest, LayersAreSharedBetweenImagesAndGoWithTheLastOne) {
  TarWriter other;
  other.add_file("other", "o");
  const std::string other_layer = other.finish();
  ASSERT_TRUE(store_->load(archive("a.tar", docker_save("a:1", {base_layer()}))).ok());
  ASSERT_TRUE(store_->load(archive("b.tar", docker_save("b:1", {base_layer(), other_layer}))).ok());
  auto layers = layers_on_disk();
  EXPECT_EQ(std::count_if(layers.begin(), layers.end(),
                          [](const std::string& p) { return p.find('/') == std::string::npos; }),
            2)
      << "the shared layer was unpacked twice";
  auto listed = store_->list();
  ASSERT_TRUE(listed.ok());
  EXPECT_EQ(listed->size(), 2u);
  ASSERT_TRUE(store_->find("b:1").ok());

  ASSERT_TRUE(store_->remove("a:1").ok());
  EXPECT_TRUE(fs::exists(dir_ / "store/layers" / image::sha256_hex(base_layer()))) << "b still uses it";
  ASSERT_TRUE(store_->remove("b:1").ok());
  EXPECT_TRUE(fs::is_empty(dir_ / "store/layers"));
  EXPECT_EQ(store_->find("b:1").error().code(), ErrorCode::not_found);
}

// As `docker load` does, a layer the store holds (by the diff id in the
// image's checked config) is taken from the store and its blob in the
// archive is not read: the archive's bytes for it never reach the store.
TEST_F(ImageStoreTest, ALayerTheStoreHoldsIsTakenFromTheStoreNotReadAgain) {
  const std::string base = base_layer();
  auto first = store_->load(archive("a.tar", docker_save("a:1", {base})));
  ASSERT_TRUE(first.ok()) << first.error().message();
  const auto before = layers_on_disk();
  const std::string junk(base.size(), 'j');
  auto again =
      store_->load(archive("again.tar", docker_save("a:1", {junk}, {"sha256:" + image::sha256_hex(base)})));
  ASSERT_TRUE(again.ok()) << again.error().message();
  EXPECT_EQ(again->front().id, first->front().id);
  EXPECT_EQ(again->front().size_bytes, first->front().size_bytes);
  EXPECT_EQ(layers_on_disk(), before);
  EXPECT_EQ(slurp(dir_ / "store/layers" / image::sha256_hex(base) / "dir/x"), "x");
  // A layer the store lacks is still read and checked.
  {
    auto r = store_->load(archive("new.tar", docker_save("b:1", {junk}, {"sha256:" + std::string(64, '1')})));
    ASSERT_FALSE(r.ok());
    EXPECT_NE(r.error().message().find("does not match its diff id"), std::string::npos)
        << r.error().message();
  }
}

TEST_F(ImageStoreTest, AReferenceMovesToTheImageLoadedLast) {
  TarWriter v2;
  v2.add_file("v2", "2");
  ASSERT_TRUE(store_->load(archive("1.tar", docker_save("app", {base_layer()}))).ok());
  auto second = store_->load(archive("2.tar", docker_save("app:latest", {v2.finish()})));
  ASSERT_TRUE(second.ok());
  auto found = store_->find("app");
  ASSERT_TRUE(found.ok());
  EXPECT_EQ(found->id, second->front().id);
  auto by_id = store_->find(second->front().id.substr(0, 8));
  ASSERT_TRUE(by_id.ok());
  EXPECT_EQ(by_id->id, second->front().id);
}

TEST_F(ImageStoreTest, AnOciLayoutLoadsAndItsDigestsAreChecked) {
  const fs::path oci = dir_ / "oci";
  const std::string layer = image::gzip_compress(top_layer()).value();
  const std::string base = base_layer();
  const std::string config = json::serialize(json::object{
      {"config", json::object{{"Cmd", json::array{"serve"}}}},
      {"rootfs", json::object{{"diff_ids", json::array{"sha256:" + image::sha256_hex(base),
                                                       "sha256:" + image::sha256_hex(top_layer())}}}}});
  auto put = [&](const std::string& bytes) {
    const std::string h = image::sha256_hex(bytes);
    spit(oci / "blobs/sha256" / h, bytes);
    return "sha256:" + h;
  };
  const std::string manifest = json::serialize(json::object{
      {"config", json::object{{"digest", put(config)}}},
      {"layers", json::array{json::object{{"digest", put(base)}}, json::object{{"digest", put(layer)}}}}});
  const std::string mdigest = put(manifest);
  spit(oci / "oci-layout", R"({"imageLayoutVersion":"1.0.0"})");
  spit(oci / "index.json",
       json::serialize(json::object{
           {"manifests",
            json::array{json::object{
                {"digest", mdigest},
                {"annotations", json::object{{"org.opencontainers.image.ref.name", "oci/app:2"}}}}}}}));
  auto loaded = store_->load(oci.string());
  ASSERT_TRUE(loaded.ok()) << loaded.error().message();
  EXPECT_EQ(loaded->front().references, std::vector<std::string>{"oci/app:2"});
  EXPECT_EQ(loaded->front().cmd, std::vector<std::string>{"serve"});
  EXPECT_EQ(loaded->front().layers.size(), 2u);

  // A blob changed after the fact is refused, and nothing new stays.
  TarWriter evil;
  evil.add_file("evil", "!");
  const std::string tampered = evil.finish();
  spit(oci / "blobs/sha256" / image::sha256_hex(base), tampered);
  ASSERT_TRUE(store_->remove("oci/app:2").ok());
  auto refused = store_->load(oci.string());
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.error().message().find("does not match its digest"), std::string::npos)
      << refused.error().message();
  EXPECT_TRUE(fs::is_empty(dir_ / "store/layers"));
  EXPECT_TRUE(store_->list()->empty());
}

TEST_F(ImageStoreTest, BadArchivesAreRefusedAndLeaveTheStoreAsItWas) {
  ASSERT_TRUE(store_->load(archive("ok.tar", docker_save("keep:1", {base_layer()}))).ok());
  const auto before = layers_on_disk();
  auto expect_refused = [&](const std::string& name, const std::string& bytes, const std::string& needle) {
    auto r = store_->load(archive(name, bytes));
    ASSERT_FALSE(r.ok()) << name;
    EXPECT_EQ(r.error().code(), ErrorCode::invalid_argument) << r.error().message();
    EXPECT_NE(r.error().message().find(needle), std::string::npos) << r.error().message();
    EXPECT_EQ(layers_on_disk(), before) << name << " left something in the store";
    EXPECT_EQ(store_->list()->size(), 1u);
  };
  const std::string good = docker_save("x:1", {top_layer()});
  expect_refused("truncated.tar", good.substr(0, good.size() / 2), "not a usable image archive");
  expect_refused("garbage.tar", std::string(4096, 'x'), "not a usable image archive");
  TarWriter empty;
  empty.add_file("hello.txt", "hi");
  expect_refused("nomanifest.tar", empty.finish(), "neither a manifest.json");

  TarWriter up;
  up.add_file("../../escaped", "x");
  expect_refused("dotdot.tar", docker_save("x:1", {base_layer(), up.finish()}), "leaves the destination");
  EXPECT_FALSE(fs::exists(dir_ / "escaped"));
  EXPECT_FALSE(fs::exists(dir_ / "store/escaped"));

  TarWriter through;
  through.add_symlink("etc", "/etc");
  through.add_file("etc/owned", "x");
  expect_refused("symlink.tar", docker_save("x:1", {through.finish()}), "symlink");
  EXPECT_FALSE(fs::exists("/etc/owned"));

  expect_refused("wrongdiff.tar", docker_save("x:1", {top_layer()}, {"sha256:" + std::string(64, '0')}),
                 "does not match its diff id");
  EXPECT_EQ(store_->find("x:1").error().code(), ErrorCode::not_found);
}

}  // namespace
}  // namespace modhost::backend::native
