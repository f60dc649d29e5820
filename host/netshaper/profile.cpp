#include "netshaper/profile.hpp"

#include <algorithm>
#include <cmath>
#include <numbers>

namespace modhost::netshaper {

std::string_view to_string(Distribution d) { return d == Distribution::normal ? "normal" : "uniform"; }

double uniform01(std::mt19937_64& rng) { return static_cast<double>(rng() >> 11) * 0x1p-53; }

double standard_normal(std::mt19937_64& rng) {
  double u1 = 1.0 - uniform01(rng);  // (0, 1]: log() stays finite
  double u2 = uniform01(rng);
  return std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * std::numbers::pi * u2);
}

double CorrelatedRandom::normal(std::mt19937_64& rng) {
  double fresh = standard_normal(rng);
  // The first value has nothing to lean on.
  last_ = started_ ? c_ * last_ + std::sqrt(std::max(0.0, 1.0 - c_ * c_)) * fresh : fresh;
  started_ = true;
  return last_;
}

double CorrelatedRandom::uniform(std::mt19937_64& rng) {
  if (c_ == 0) {
    started_ = false;  // a later correlation starts afresh
    return uniform01(rng);
  }
  // Φ(z); below 1 even where erfc rounds to 2.
  double u = 0.5 * std::erfc(-normal(rng) / std::numbers::sqrt2);
  return std::min(u, std::nextafter(1.0, 0.0));
}

Sampler::Sampler(const Profile& profile, std::uint64_t seed) : rng_(seed) { set_profile(profile); }

void Sampler::set_profile(const Profile& profile) {
  profile_ = profile;
  loss_.set_correlation(profile.correlation_percent);
  jitter_.set_correlation(profile.correlation_percent);
}

Decision Sampler::sample() {
  Decision d;
  if (profile_.loss_percent > 0 && loss_.uniform(rng_) * 100.0 < profile_.loss_percent) {
    d.lost = true;
    return d;
  }
  double delay = static_cast<double>(profile_.delay_us);
  if (profile_.jitter_us > 0) {
    double jitter = static_cast<double>(profile_.jitter_us);
    if (profile_.distribution == Distribution::uniform) {
      delay += jitter * (2.0 * jitter_.uniform(rng_) - 1.0);
    } else {
      delay += jitter * jitter_.normal(rng_);
    }
  }
  d.delay = std::chrono::microseconds(static_cast<std::int64_t>(std::llround(std::max(0.0, delay))));
  return d;
}

std::uint64_t queue_seed(std::uint64_t seed, std::size_t namespace_index, std::uint16_t queue) {
  // splitmix64 over the three inputs.
  auto mix = [](std::uint64_t z) {
    z += 0x9e3779b97f4a7c15ULL;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  };
  return mix(mix(mix(seed) ^ static_cast<std::uint64_t>(namespace_index)) ^ queue);
}

}  // namespace modhost::netshaper
