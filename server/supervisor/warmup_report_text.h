// One line of text for a worker's warmup report, as the master logs it when the worker is ready.
#ifndef KILN_SERVER_SUPERVISOR_WARMUP_REPORT_TEXT_H_
#define KILN_SERVER_SUPERVISOR_WARMUP_REPORT_TEXT_H_

#include <string>

#include "proto/worker_frames.pb.h"

namespace kiln {

// "warm in 812 ms on cpu, 1 thread(s) at idle priority, peak RSS 310 MB; [b1 first 9.1 ms,
// steady 4.0 ms, settled after 3, peak 305 MB] ...": time, device, threads, priority, memory,
// the tokenizer's warmup and every shape (refused ones marked), or "no warmup".
std::string DescribeWarmupReport(const internal::WarmupReport& report);

}  // namespace kiln

#endif  // KILN_SERVER_SUPERVISOR_WARMUP_REPORT_TEXT_H_
