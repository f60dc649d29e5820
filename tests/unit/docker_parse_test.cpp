// What the Docker backend reads from the engine's answers: malformed fields
// read as absent, never as a throw (tests/fuzz/docker_fuzz.cpp keeps
// trying more).
#include <gtest/gtest.h>

#include <boost/json.hpp>

#include "backends/docker/docker_impl.hpp"

namespace docker = modhost::backend::docker;

TEST(DockerParse, PortsLabelSkipsWhatIsNotAPort) {
  const auto ports = docker::decode_ports("http:80/tcp,dns:53/udp");
  ASSERT_EQ(ports.size(), 2u);
  EXPECT_EQ(ports[1].name, "dns");
  EXPECT_EQ(ports[1].number, 53);
  EXPECT_EQ(docker::encode_ports(ports), "http:80/tcp,dns:53/udp");
  // These used to throw (std::stoi) out of every listing of the enclave.
  EXPECT_TRUE(docker::decode_ports("x:/tcp").empty());
  EXPECT_TRUE(docker::decode_ports("x:abc/tcp").empty());
  EXPECT_TRUE(docker::decode_ports("x:99999999999/tcp").empty());
  EXPECT_TRUE(docker::decode_ports("x:0/tcp").empty());
  EXPECT_EQ(docker::decode_ports("x:8o/tcp,ok:1/udp").size(), 1u);
}

TEST(DockerParse, AnInspectWithBadFieldsReadsAsAbsent) {
  const auto inspect = boost::json::parse(R"({
    "Id": "abc",
    "Config": {"Image": 7, "Labels": {"io.modhost.name": "web", "io.modhost.ports": "http:80/tcp",
                                      "io.modhost.enclave": ["not", "a", "string"]}},
    "State": {"Status": "exited", "ExitCode": "three"},
    "NetworkSettings": {"Networks": {"n": {"IPAddress": "10.0.0.2"}},
                        "Ports": {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": "http"}]}}})");
  docker::Enclave e;
  e.network_name = "n";
  const modhost::ServiceInfo s = docker::service_info(inspect, e);
  EXPECT_EQ(s.name, "web");
  EXPECT_EQ(s.enclave_id, "");
  EXPECT_EQ(s.image, "");
  EXPECT_EQ(s.status, modhost::ServiceStatus::exited);
  EXPECT_EQ(s.ip, "10.0.0.2");
  ASSERT_EQ(s.ports.size(), 1u);
  // A HostPort that is not a number used to throw (std::stoul).
  EXPECT_EQ(s.ports[0].host_port, 0);

  const auto net = boost::json::parse(R"({"Id": 1, "Name": "n", "IPAM": {"Config": "none"}})");
  const docker::Enclave from = docker::enclave_from_network(net);
  EXPECT_EQ(from.network_id, "");
  EXPECT_EQ(from.network_name, "n");
  EXPECT_EQ(from.info.subnet, "");
}
