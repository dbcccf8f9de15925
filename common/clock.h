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

// CPU time used so far, in milliseconds: by this whole process (all its threads, user and
// system), or by the calling thread alone. A call's CPU time, unlike its wall time, does not grow
// when a busy neighbour takes the core: the readiness check and the warmup's settling compare
// CPU times for that reason.
inline double CpuMs(bool whole_process) {
  timespec ts;
  clock_gettime(whole_process ? CLOCK_PROCESS_CPUTIME_ID : CLOCK_THREAD_CPUTIME_ID, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

// A call's wall-clock and CPU time, in milliseconds.
struct CallTime {
  double wall_ms = 0;
  double cpu_ms = 0;
};

// Started on construction; Elapsed() is the wall and CPU time since. The CPU time is the calling
// thread's when the call runs on it alone (`intra_op_threads` 1: no other thread of the process,
// such as a watchdog, is counted), else the whole process's (the intra-op threads do the work).
// Thread-compatible.
class CallTimer {
 public:
  explicit CallTimer(int intra_op_threads)
      : whole_process_(intra_op_threads > 1),
        start_(std::chrono::steady_clock::now()),
        cpu_start_(CpuMs(whole_process_)) {}
  CallTime Elapsed() const {
    return {MillisecondsSince(start_), CpuMs(whole_process_) - cpu_start_};
  }

 private:
  bool whole_process_;
  std::chrono::steady_clock::time_point start_;
  double cpu_start_;
};

}  // namespace kiln

#endif  // KILN_COMMON_CLOCK_H_
