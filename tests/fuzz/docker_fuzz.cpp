// What the Docker backend reads from the engine: container and network
// inspects, the ports label, and the multiplexed stream of exec output and
// logs. The first byte picks the reader; an engine that answers nonsense
// must give errors or empty fields, never a crash or a throw.
#include <boost/json.hpp>
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "backends/docker/docker_impl.hpp"
#include "backends/docker/mux_stream.hpp"
#include "tests/fuzz/fuzz_check.hpp"

namespace docker = modhost::backend::docker;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::string_view text(reinterpret_cast<const char*>(data + 1), size - 1);
  switch (data[0] % 3) {
    case 0: {
      boost::system::error_code ec;
      const boost::json::value v = boost::json::parse(text, ec);
      if (ec) return 0;
      docker::Enclave e = docker::enclave_from_network(v);
      const modhost::ServiceInfo s = docker::service_info(v, e);
      for (const auto& p : s.ports) FUZZ_CHECK(p.port.number >= 1);
      break;
    }
    case 1: {
      const auto ports = docker::decode_ports(text);
      for (const auto& p : ports) FUZZ_CHECK(p.number >= 1);
      // What is read back writes out and reads again as the same.
      const auto again = docker::decode_ports(docker::encode_ports(ports));
      FUZZ_CHECK(again.size() == ports.size());
      break;
    }
    default: {
      // Fed in two pieces, split where the second byte says.
      const std::size_t cut = text.empty() ? 0 : static_cast<unsigned char>(text[0]) % text.size();
      std::size_t payload = 0;
      docker::StreamDemuxer demux([&](int stream, std::string_view piece) {
        FUZZ_CHECK(stream >= 0 && stream <= 255);
        payload += piece.size();
        return true;
      });
      demux.feed(text.substr(0, cut));
      demux.feed(text.substr(cut));
      FUZZ_CHECK(payload <= text.size());
      break;
    }
  }
  return 0;
}
