#include "tests/conformance/backend_factory.hpp"

#include <arpa/inet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <unistd.h>

#include <boost/json.hpp>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <random>
#include <set>
#include <sstream>

#include "backends/docker/docker_backend.hpp"
#include "backends/docker/http_client.hpp"
#include "backends/image/image.hpp"
#include "backends/native/native_backend.hpp"
#include "tests/support/native_leftovers.hpp"

namespace modhost::testing {
namespace {

namespace json = boost::json;
using backend::docker::EngineClient;
using backend::docker::Method;

std::string now_rfc3339() {
  std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

std::string scope_filter(const std::string& scope) {
  json::object f;
  f["label"] = json::array{json::value(std::string(backend::kLabelScope) + "=" + scope)};
  return "filters=" + backend::docker::url_encode(json::serialize(f));
}

Result<json::value> get_json(const EngineClient& client, const std::string& path) {
  MODHOST_ASSIGN_OR_RETURN(auto r, client.request(Method::get, "/v1.41" + path));
  if (r.status != 200)
    return Error(ErrorCode::unavailable, path + ": HTTP " + std::to_string(r.status) + " " + r.body);
  boost::system::error_code ec;
  json::value v = json::parse(r.body, ec);
  if (ec) return Error(ErrorCode::unavailable, path + ": bad JSON");
  return v;
}

std::string str(const json::value& v, const char* key) {
  if (const auto* o = v.if_object()) {
    if (const auto* m = o->if_contains(key); m != nullptr && m->is_string())
      return std::string(m->get_string());
  }
  return {};
}

struct Labelled {
  std::vector<std::string> containers;  // ids
  std::vector<std::string> networks;    // ids
  std::vector<std::string> volumes;     // names
  std::vector<std::string> described;
};

Result<Labelled> docker_labelled(const EngineClient& client, const std::string& scope) {
  Labelled out;
  const std::string f = scope_filter(scope);
  MODHOST_ASSIGN_OR_RETURN(json::value cs, get_json(client, "/containers/json?all=1&" + f));
  for (const auto& c : cs.as_array()) {
    out.containers.push_back(str(c, "Id"));
    std::string name = str(c, "Id").substr(0, 12);
    if (const auto* names = c.as_object().if_contains("Names");
        names != nullptr && names->is_array() && !names->as_array().empty()) {
      name = std::string(names->as_array()[0].as_string());
    }
    out.described.push_back("container " + name);
  }
  MODHOST_ASSIGN_OR_RETURN(json::value ns, get_json(client, "/networks?" + f));
  for (const auto& n : ns.as_array()) {
    out.networks.push_back(str(n, "Id"));
    out.described.push_back("network " + str(n, "Name"));
  }
  MODHOST_ASSIGN_OR_RETURN(json::value vs, get_json(client, "/volumes?" + f));
  if (const auto* arr = vs.as_object().if_contains("Volumes"); arr != nullptr && arr->is_array()) {
    for (const auto& v : arr->as_array()) {
      out.volumes.push_back(str(v, "Name"));
      out.described.push_back("volume " + str(v, "Name"));
    }
  }
  return out;
}

TestBackend make_docker(TestBackend tb) {
  backend::DockerOptions options;
  options.scope = tb.scope;
  auto made = backend::DockerBackend::create(options);
  if (!made.ok()) {
    tb.skip_reason = made.error().message();
    return tb;
  }
  if (auto ping = made.value()->ping(); !ping.ok()) {
    tb.skip_reason = ping.error().message();
    return tb;
  }
  auto address = backend::docker::parse_engine_address("");
  auto client = std::make_shared<EngineClient>(address.value(), std::chrono::seconds(60));
  const std::string scope = tb.scope;
  tb.backend = std::move(made).value();
  tb.list_labelled = [client, scope]() -> Result<std::vector<std::string>> {
    MODHOST_ASSIGN_OR_RETURN(Labelled l, docker_labelled(*client, scope));
    return l.described;
  };
  tb.purge = [client, scope]() {
    auto l = docker_labelled(*client, scope);
    if (!l.ok()) return;
    for (const auto& id : l->containers)
      (void)client->request(Method::del, "/v1.41/containers/" + id + "?force=1&v=1");
    for (const auto& v : l->volumes) (void)client->request(Method::del, "/v1.41/volumes/" + v + "?force=1");
    for (const auto& n : l->networks) (void)client->request(Method::del, "/v1.41/networks/" + n);
  };
  tb.make_half_made_enclave = [client, scope](const std::string& name) -> Status {
    json::object labels;
    labels[backend::kLabelApp] = "modhost";
    labels[backend::kLabelKind] = "enclave";
    labels[backend::kLabelEnclave] = random_suffix(32);
    labels[backend::kLabelName] = name;
    labels[backend::kLabelCreated] = now_rfc3339();
    labels[backend::kLabelScope] = scope;
    json::object body;
    body["Name"] = "modhost-" + name;
    body["CheckDuplicate"] = true;
    body["Labels"] = std::move(labels);
    MODHOST_ASSIGN_OR_RETURN(auto r,
                             client->request(Method::post, "/v1.41/networks/create", json::serialize(body)));
    if (r.status != 201)
      return Error(ErrorCode::internal, "network create: HTTP " + std::to_string(r.status) + r.body);
    return ok_status();
  };
  return tb;
}

// --- native ---

TestBackend make_native(TestBackend tb) {
  if (::geteuid() != 0) {
    tb.skip_reason = "the native backend needs root";
    return tb;
  }
  backend::NativeOptions options;
  options.scope = tb.scope;
  // One image store for every test of the run (the test image loads once).
  options.image_dir = "/var/lib/modhost/native-test-images";
  auto made = backend::NativeBackend::create(options);
  if (!made.ok()) {
    tb.skip_reason = made.error().message();
    return tb;
  }
  const std::string state_dir = made.value()->state_dir();
  const std::string scope = tb.scope;
  tb.backend = std::move(made).value();
  tb.list_labelled = [state_dir, scope]() -> Result<std::vector<std::string>> {
    return test::native_leftovers_settled(state_dir, scope);
  };
  tb.purge = [state_dir, scope]() {
    namespace fs = std::filesystem;
    std::error_code ec;
    for (const char* hierarchy : test::kNativeCgroupRoots) {
      const std::string base = std::string(hierarchy) + "/modhost/" + scope;
      for (const auto& c : fs::directory_iterator(base, ec)) {
        std::ifstream procs(c.path() / "cgroup.procs");
        for (int pid = 0; procs >> pid;) ::kill(pid, SIGKILL);
      }
    }
    for (const auto& l : test::native_leftovers(state_dir, scope)) {
      if (l.rfind("mount ", 0) == 0) ::umount2(l.substr(6).c_str(), MNT_DETACH);
      if (l.rfind("link ", 0) == 0)
        (void)std::system(("ip link del " + l.substr(5) + " 2>/dev/null").c_str());
    }
    for (const char* hierarchy : test::kNativeCgroupRoots) {
      const std::string base = std::string(hierarchy) + "/modhost/" + scope;
      for (const auto& c : fs::directory_iterator(base, ec)) ::rmdir(c.path().c_str());
      ::rmdir(base.c_str());
    }
    fs::remove_all(state_dir, ec);
  };
  tb.make_half_made_enclave = [state_dir, scope](const std::string& name) -> Status {
    // What a crash between writing the state and marking it ready leaves:
    // the state without "ready", and the bridge.
    const std::string id = random_suffix(32);
    const std::string dir = state_dir + "/enclaves/" + id;
    std::filesystem::create_directories(dir + "/services");
    std::ofstream(dir + "/enclave.json") << json::serialize(json::object{{"id", id},
                                                                         {"name", name},
                                                                         {"created", now_rfc3339()},
                                                                         {"subnet", "10.213.255.0/24"},
                                                                         {"gateway", "10.213.255.1"},
                                                                         {"state", "creating"}});
    const std::string bridge = "mhb" + id.substr(0, 12);
    if (std::system(("ip link add " + bridge + " type bridge && ip link set " + bridge + " alias 'modhost " +
                     scope + " " + id + "'")
                        .c_str()) != 0) {
      return Error(ErrorCode::internal, "cannot make bridge " + bridge);
    }
    return ok_status();
  };
  return tb;
}
}  // namespace

std::string random_suffix(std::size_t chars) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::random_device rd;
  std::string out;
  while (out.size() < chars) out.push_back(kHex[rd() & 0xF]);
  return out;
}

TestBackend make_backend_for_test(const std::string& name) {
  TestBackend tb;
  tb.scope = "test-" + random_suffix(10);
  if (name == "docker") return make_docker(std::move(tb));
  if (name == "native") return make_native(std::move(tb));
  tb.skip_reason = "unknown backend '" + name + "'";
  return tb;
}

Status ensure_test_image(backend::Backend& b) {
  static std::mutex mutex;
  std::lock_guard lock(mutex);
  MODHOST_ASSIGN_OR_RETURN(bool exists, b.image_exists(kTestImage));
  if (exists) return ok_status();

  std::ifstream in("/bin/busybox", std::ios::binary);
  if (!in) {
    return Error(ErrorCode::not_found,
                 "/bin/busybox not found: install busybox-static (apt-get install busybox-static)");
  }
  std::stringstream bin;
  bin << in.rdbuf();

  image::TarWriter layer;
  layer.add_directory("bin");
  layer.add_file("bin/busybox", bin.str(), 0755);
  for (const char* applet :
       {"sh",  "nc",   "cat", "sleep", "echo",  "httpd", "ls",   "true", "false", "mkdir", "wget", "printf",
        "seq", "head", "tr",  "dd",    "touch", "rm",    "kill", "ps",   "id",    "env",   "grep", "wc"}) {
    layer.add_symlink(std::string("bin/") + applet, "busybox");
  }
  for (const auto& [from, to] : {std::pair{MODHOST_TEST_UDP_ECHO, "bin/udp-echo"},
                                 std::pair{MODHOST_TEST_SYSCALL_PROBE, "bin/syscall-probe"}}) {
    std::ifstream in_file(from, std::ios::binary);
    std::stringstream content;
    content << in_file.rdbuf();
    if (!in_file || content.str().empty())
      return Error(ErrorCode::not_found, std::string(from) + " is missing: build the tests first");
    layer.add_file(to, content.str(), 0755);
  }
  layer.add_directory("www");
  layer.add_file("www/index.html", kTestIndexBody);
  layer.add_directory("etc");
  layer.add_file("etc/passwd", "root:x:0:0:root:/root:/bin/sh\napp:x:1234:5678:app:/tmp:/bin/sh\n");
  layer.add_file("etc/group", "root:x:0:\nstaff:x:5678:\naudio:x:4321:\n");
  layer.add_directory("tmp", 01777);
  layer.add_directory("root", 0700);

  image::ImageConfig config;
  config.reference = kTestImage;
  config.cmd = {"/bin/sh"};
  config.env = {"PATH=/bin"};
  config.labels["io.modhost.test"] = "true";
  MODHOST_ASSIGN_OR_RETURN(std::string archive, image::write_docker_archive(config, layer.finish()));

  const auto path =
      std::filesystem::temp_directory_path() / ("modhost-test-image-" + random_suffix() + ".tar");
  {
    std::ofstream out(path, std::ios::binary);
    out.write(archive.data(), static_cast<std::streamsize>(archive.size()));
  }
  Status loaded = b.load_image(path.string());
  std::filesystem::remove(path);
  return loaded;
}

Result<std::string> http_get_loopback(std::uint16_t port, const std::string& path) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return Error(ErrorCode::internal, "socket() failed");
  timeval tv{5, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);  // only ever 127.0.0.1
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    ::close(fd);
    return Error(ErrorCode::unavailable, "connect to 127.0.0.1:" + std::to_string(port) + " failed");
  }
  const std::string req = "GET " + path + " HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
  if (::send(fd, req.data(), req.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(req.size())) {
    ::close(fd);
    return Error(ErrorCode::unavailable, "send failed");
  }
  std::string out;
  char buf[4096];
  while (true) {
    const ssize_t n = ::recv(fd, buf, sizeof(buf), 0);
    if (n <= 0) break;
    out.append(buf, static_cast<std::size_t>(n));
  }
  ::close(fd);
  return out;
}

std::string make_tgz(const std::vector<std::pair<std::string, std::string>>& files) {
  image::TarWriter w;
  std::set<std::string> dirs;
  for (const auto& [path, content] : files) {
    for (auto slash = path.find('/'); slash != std::string::npos; slash = path.find('/', slash + 1)) {
      const std::string dir = path.substr(0, slash);
      if (dirs.insert(dir).second) w.add_directory(dir);
    }
    w.add_file(path, content);
  }
  auto gz = image::gzip_compress(w.finish());
  return gz.ok() ? gz.value() : std::string();
}

}  // namespace modhost::testing
