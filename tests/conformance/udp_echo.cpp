// udp-echo PORT: sends every datagram it gets on PORT back to its sender,
// prefixed with "echo ". Static, for the conformance suite's busybox image
// (whose nc has no UDP).
#include <netinet/in.h>
#include <sys/socket.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: udp-echo PORT\n");
    return 2;
  }
  const int fd = ::socket(AF_INET, SOCK_DGRAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<unsigned short>(std::atoi(argv[1])));
  a.sin_addr.s_addr = htonl(INADDR_ANY);
  if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    std::perror("udp-echo");
    return 1;
  }
  std::printf("listening on udp port %s\n", argv[1]);
  std::fflush(stdout);
  char buf[2048];
  std::memcpy(buf, "echo ", 5);
  while (true) {
    sockaddr_in from{};
    socklen_t len = sizeof from;
    const ssize_t n = ::recvfrom(fd, buf + 5, sizeof buf - 5, 0, reinterpret_cast<sockaddr*>(&from), &len);
    if (n < 0) continue;
    (void)::sendto(fd, buf, static_cast<std::size_t>(n) + 5, 0, reinterpret_cast<sockaddr*>(&from), len);
  }
}
