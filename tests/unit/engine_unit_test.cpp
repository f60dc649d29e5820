// Unit tests of the engine's pure logic: no processes, no plugins.
#include <gtest/gtest.h>

#include "engine/handshake.hpp"
#include "engine/module.hpp"
#include "engine/module_manager.hpp"
#include "engine/native_module.hpp"

using namespace modhost;
using namespace modhost::engine;

TEST(Handshake, RoundTrips) {
  Handshake h{1, 1, "unix", "/tmp/x/module.sock", "grpc"};
  std::string line = format_handshake(h);
  EXPECT_EQ(line, "1|1|unix|/tmp/x/module.sock|grpc");
  auto parsed = parse_handshake(line + "\n");
  ASSERT_TRUE(parsed.ok()) << parsed.error().message();
  EXPECT_EQ(parsed->address, "/tmp/x/module.sock");
  EXPECT_EQ(parsed->api_version, 1);
}

TEST(Handshake, RejectsMalformedLines) {
  for (const char* bad : {"", "hello world", "1|1|unix|/s", "2|1|unix|/s|grpc", "x|1|unix|/s|grpc",
                          "1|1|udp|/s|grpc", "1|1|unix||grpc", "1|1|unix|/s|http", "1|one|unix|/s|grpc"}) {
    auto r = parse_handshake(bad);
    EXPECT_FALSE(r.ok()) << bad;
    if (!r.ok()) {
      EXPECT_NE(r.error().message().find("handshake"), std::string::npos);
    }
  }
}

TEST(Handshake, NegotiatesNewestCommonVersion) {
  EXPECT_EQ(negotiate_api_version("1,2,3", {1, 2}), 2);
  EXPECT_EQ(negotiate_api_version("1", {1, 2}), 1);
  EXPECT_EQ(negotiate_api_version("3,4", {1, 2}), 0);
  EXPECT_EQ(negotiate_api_version("", {1}), 0);
  EXPECT_EQ(negotiate_api_version("x,1", {1}), 1);
}

TEST(ModuleReference, Parses) {
  auto b = parse_module_reference("builtin:hello");
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(b->kind, ModuleReference::Kind::builtin);
  EXPECT_EQ(b->value, "hello");
  EXPECT_EQ(b->display(), "builtin:hello");

  for (const char* path : {"/opt/m.so", "./m.so", "../x/m", "m.so", "libm.so.1"}) {
    auto p = parse_module_reference(path);
    ASSERT_TRUE(p.ok());
    EXPECT_EQ(p->kind, ModuleReference::Kind::plugin) << path;
  }
  for (const char* image : {"datastore-army:1", "org/module:latest", "module"}) {
    auto i = parse_module_reference(image);
    ASSERT_TRUE(i.ok());
    EXPECT_EQ(i->kind, ModuleReference::Kind::image) << image;
  }
  EXPECT_FALSE(parse_module_reference("").ok());
  EXPECT_FALSE(parse_module_reference("builtin:").ok());
}

namespace {
class Dummy final : public ExecutableModule {
 public:
  Result<std::string> execute(EnclaveContext&, std::string_view) override { return std::string("x"); }
};
}  // namespace

MODHOST_MODULE(dummy_unit, Dummy, "1.2.3", "unit test module", modhost::ParamsFormat::json)

TEST(ModuleRegistry, RefusesDuplicateNames) {
  ModuleRegistry r;
  ASSERT_TRUE(r.add(modhost_builtin_dummy_unit()).ok());
  auto again = r.add(modhost_builtin_dummy_unit());
  ASSERT_FALSE(again.ok());
  EXPECT_EQ(again.error().code(), ErrorCode::already_exists);
  EXPECT_NE(r.find("dummy_unit"), nullptr);
  EXPECT_EQ(r.find("other"), nullptr);
}

TEST(Descriptor, AbiMismatchNamesBothVersions) {
  ModuleDescriptor d = modhost_builtin_dummy_unit();
  d.abi_version = 7;
  auto s = check_descriptor(d, "m.so");
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().code(), ErrorCode::abi_mismatch);
  EXPECT_NE(s.error().message().find("version 7"), std::string::npos);
  EXPECT_NE(s.error().message().find("version " + std::to_string(kAbiVersion)), std::string::npos);
}

TEST(Descriptor, WrongKindIsRefused) {
  ModuleDescriptor d = modhost_builtin_dummy_unit();
  d.kind = static_cast<ModuleKind>(5);
  auto s = check_descriptor(d, "m.so");
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.error().message().find("kind 5"), std::string::npos);
}

TEST(Params, JsonModulesRejectMalformedJson) {
  ModuleMetadata json_meta = metadata_of(modhost_builtin_dummy_unit(), "builtin");
  EXPECT_TRUE(validate_params(json_meta, R"({"a": [1, 2]})", "execute params").ok());
  EXPECT_TRUE(validate_params(json_meta, "", "execute params").ok());
  auto bad = validate_params(json_meta, "{not json", "execute params");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().code(), ErrorCode::invalid_argument);
  EXPECT_NE(bad.error().message().find("malformed JSON in execute params"), std::string::npos);

  ModuleMetadata text_meta = json_meta;
  text_meta.params_format = ParamsFormat::text;
  EXPECT_TRUE(validate_params(text_meta, "{not json", "execute params").ok());
}

TEST(Result, CarriesValueOrError) {
  Result<int> v = 5;
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(*v, 5);
  Result<int> e = Error(ErrorCode::not_found, "x");
  ASSERT_FALSE(e.ok());
  EXPECT_EQ(e.error().context("loading").message(), "loading: x");
  EXPECT_EQ(to_string(ErrorCode::abi_mismatch), "abi_mismatch");
}
