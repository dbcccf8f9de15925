// How OpenMP's idle threads wait. Debian's LibTorch and OpenBLAS run on libgomp, whose threads
// by default spin for a while (GOMP_SPINCOUNT 300,000) after each parallel region before they
// sleep. On a CPU shared with anything else that spinning takes the CPU from the neighbour and
// from the model's own threads: measured here, one resnet50 worker of 2 intra-op threads beside
// two busy processes served at 4.3x its quiet latency and took 14x as long to become SERVING;
// with passive waiting 2.6x and 2.3x.
//
// libgomp reads OMP_WAIT_POLICY and GOMP_SPINCOUNT once, in its constructor, before main() runs,
// and offers no call to change them later (a .preinit_array hook runs too early: glibc resets
// the environment after it). kiln-server defines getenv() itself and answers libgomp "PASSIVE"
// (server/passive_openmp_getenv.h); main() then sets the variable for real. A binary whose
// libgomp was not told so sets the variable and re-executes itself, once, first thing in main().
// An operator's own setting of either variable wins: kiln then changes nothing.
//
// Thread-safety: EnsurePassiveOpenMpWait must run first in main(), before any thread exists;
// DescribeOpenMpWait may be called from any thread afterwards.
#ifndef KILN_COMMON_OPENMP_WAIT_H_
#define KILN_COMMON_OPENMP_WAIT_H_

#include <string>

namespace kiln {

// Set beside OMP_WAIT_POLICY when kiln set it, so that this process and its children can say how:
// "1" after a re-exec, "getenv" when libgomp read it from kiln's getenv.
inline constexpr char kOpenMpWaitMarker[] = "KILN_SET_OMP_WAIT_POLICY";

// When neither OMP_WAIT_POLICY nor GOMP_SPINCOUNT is set: sets OMP_WAIT_POLICY=PASSIVE (and the
// marker). When `libgomp_told_passive` (GetenvAnsweredPassiveOpenMpWait()), libgomp already waits
// passively and that is all; otherwise it re-executes /proc/self/exe with `argv`, and does not
// return then. Returns at once when either variable is set, and after a failed exec
// (DescribeOpenMpWait says why; the process then waits the default way).
void EnsurePassiveOpenMpWait(char** argv, bool libgomp_told_passive = false);

// For the log and the warmup report, e.g. "passive (OMP_WAIT_POLICY=PASSIVE, set by kiln before
// libgomp read it)", "passive (OMP_WAIT_POLICY=PASSIVE, set by kiln: the binary re-executed
// itself once)" or "OMP_WAIT_POLICY=active from the environment (the operator's setting, kept)".
std::string DescribeOpenMpWait();

// Whether this process's OpenMP threads spin while they wait (libgomp's default, an operator's
// OMP_WAIT_POLICY=active or GOMP_SPINCOUNT other than 0) rather than sleep. Then a multi-threaded
// forward pass's CPU time includes spinning, which grows when a neighbour takes the cores.
bool OpenMpThreadsSpin();

}  // namespace kiln

#endif  // KILN_COMMON_OPENMP_WAIT_H_
