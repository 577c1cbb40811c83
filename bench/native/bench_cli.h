// Command-line pieces shared by the core benchmarks (bench_core, bench_fused, bench_half).
#pragma once

#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

namespace bnbench {

// The non-empty pieces of s between separators.
inline std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  size_t i = 0;
  while (i <= s.size()) {
    size_t j = s.find(sep, i);
    if (j == std::string::npos) j = s.size();
    if (j > i) out.push_back(s.substr(i, j - i));
    i = j + 1;
  }
  return out;
}

// "32x64x112x112" as dims (at least N and C, each >= 1); empty when s is not such a shape.
inline std::vector<int64_t> parse_dims(const std::string& s) {
  std::vector<int64_t> dims;
  size_t i = 0;
  while (i <= s.size()) {
    size_t j = s.find('x', i);
    if (j == std::string::npos) j = s.size();
    const std::string tok = s.substr(i, j - i);
    char* end = nullptr;
    const long long v = std::strtoll(tok.c_str(), &end, 10);
    if (tok.empty() || *end != '\0' || v < 1) return {};
    dims.push_back(v);
    i = j + 1;
  }
  if (dims.size() < 2) return {};
  return dims;
}

}  // namespace bnbench
