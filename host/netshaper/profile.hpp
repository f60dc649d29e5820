// What one NFQUEUE queue does to the packets it sees, and the random source
// that decides it packet by packet.
#pragma once

#include <chrono>
#include <cstdint>
#include <random>
#include <string_view>

namespace modhost::netshaper {

enum class Distribution { uniform, normal };

std::string_view to_string(Distribution d);

// Like a netem qdisc: `delay` ± `jitter`, `loss` percent of the packets
// dropped; `correlation` percent ties each random draw to the previous one.
struct Profile {
  std::int64_t delay_us = 0;
  std::int64_t jitter_us = 0;
  double correlation_percent = 0;
  Distribution distribution = Distribution::uniform;
  double loss_percent = 0;

  bool operator==(const Profile&) const = default;
};

// Successive draws tied to each other by `correlation` percent, c = it / 100:
// a standard normal z' = c z + sqrt(1 - c²) n (n fresh), lag-1 correlation c,
// and from it a uniform u = Φ(z). Unlike netem's u' = c u + (1 - c) fresh,
// which squeezes values towards 0.5 (10% loss at 25% correlation loses 1.75%
// of the packets, at 50% 0.1%; a uniform jitter shrinks), both marginals stay
// exact whatever c: correlation makes losses bursty without changing their
// rate. With c = 0 every draw is fresh.
class CorrelatedRandom {
 public:
  explicit CorrelatedRandom(double correlation_percent = 0) { set_correlation(correlation_percent); }
  void set_correlation(double correlation_percent) { c_ = correlation_percent / 100.0; }
  double normal(std::mt19937_64& rng);
  double uniform(std::mt19937_64& rng);  // in [0, 1)

 private:
  double c_ = 0;
  double last_ = 0;
  bool started_ = false;
};

// The fate of one packet.
struct Decision {
  bool lost = false;
  std::chrono::microseconds delay{0};  // when not lost
};

// One per queue: the profile and the random state, seeded so that the same
// seed gives the same decisions.
class Sampler {
 public:
  Sampler(const Profile& profile, std::uint64_t seed);

  // A new profile keeps the random state, as `tc qdisc change` does.
  void set_profile(const Profile& profile);
  const Profile& profile() const { return profile_; }

  // Loss first (lost if u * 100 < loss; a lost packet draws no delay, as in
  // netem), then the delay, never below 0:
  //   uniform: delay + jitter * (2u - 1);
  //   normal:  delay + jitter * z.
  // Loss and delay have a correlated sequence each, as in netem.
  Decision sample();

 private:
  Profile profile_;
  std::mt19937_64 rng_;
  CorrelatedRandom loss_;
  CorrelatedRandom jitter_;
};

// A well-mixed seed for queue `queue` of the `namespace_index`-th namespace of
// a config with seed `seed`, so that queues do not share random sequences.
std::uint64_t queue_seed(std::uint64_t seed, std::size_t namespace_index, std::uint16_t queue);

// A uniform double in [0, 1) from the top 53 bits, and a standard normal by
// Box-Muller: the same on every platform (the std:: distributions are not).
double uniform01(std::mt19937_64& rng);
double standard_normal(std::mt19937_64& rng);

}  // namespace modhost::netshaper
