// The one clock kiln's processes agree on for deadlines: CLOCK_MONOTONIC is system-wide on
// Linux, so a deadline the master computes means the same instant in a worker.
#ifndef KILN_COMMON_CLOCK_H_
#define KILN_COMMON_CLOCK_H_

#include <time.h>

#include <chrono>
#include <cstdint>

namespace kiln {

inline int64_t MonotonicNowNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

// Milliseconds of std::chrono::steady_clock since `start`, for timing phases and calls.
inline double MillisecondsSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start)
      .count();
}

}  // namespace kiln

#endif  // KILN_COMMON_CLOCK_H_
