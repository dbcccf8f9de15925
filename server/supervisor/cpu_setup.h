// The master's CPU decisions (server/cpu_plan.h makes them once, before the zygote is forked): the
// CPUs the server sizes its threads to, the workers and intra-op threads per model
// (common/thread_plan.h), how OpenMP threads wait, and the priority workers warm at. The pool runs
// under them and KilnService reports them.
#ifndef KILN_SERVER_SUPERVISOR_CPU_SETUP_H_
#define KILN_SERVER_SUPERVISOR_CPU_SETUP_H_

#include <string>

#include "common/thread_plan.h"

namespace kiln {

// A value; no synchronisation.
struct CpuSetup {
  std::string limit;        // CpuLimit::Describe(), or --cpus
  ThreadPlan plan;          // plan.cpus: the CPUs it was sized to
  std::string openmp_wait;  // DescribeOpenMpWait()
  bool warm_at_idle_priority = false;
  std::string warm_priority;  // "idle (...)" or "normal: <why>"
};

}  // namespace kiln

#endif  // KILN_SERVER_SUPERVISOR_CPU_SETUP_H_
