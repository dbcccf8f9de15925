// kiln-server's own getenv(), so that libgomp's threads wait passively without re-executing the
// binary (common/openmp_wait.h says why they should).
//
// libgomp reads OMP_WAIT_POLICY with getenv() in its constructor, before main(). A program that
// defines getenv() itself interposes it: the dynamic linker binds every shared library's getenv
// to the executable's definition. kiln-server's answers exactly what the environment holds,
// except that it answers "PASSIVE" for OMP_WAIT_POLICY while neither OMP_WAIT_POLICY nor
// GOMP_SPINCOUNT is set; main() then sets the variable for real (EnsurePassiveOpenMpWait), so
// every later reader and every child sees the same. Where libgomp never asked (a libgomp that
// reads the environment another way), main() falls back to the re-exec. The re-exec cost a
// second load of LibTorch and its libraries: about 0.5 s of every start on the demo machine.
//
// Only kiln-server's executable links passive_openmp_getenv.cc (an object in the executable,
// not an archive member: it must be in the program for the interposition to happen).
// Thread-safety: the flags are atomic; getenv reads the environment as glibc's does.
#ifndef KILN_SERVER_PASSIVE_OPENMP_GETENV_H_
#define KILN_SERVER_PASSIVE_OPENMP_GETENV_H_

namespace kiln {

// Whether this process's getenv answered "PASSIVE" for OMP_WAIT_POLICY (libgomp's constructor
// asked while the environment said nothing). From this call on, getenv answers exactly what the
// environment holds: main() calls it first, before it looks at the environment itself.
bool GetenvAnsweredPassiveOpenMpWait();

}  // namespace kiln

#endif  // KILN_SERVER_PASSIVE_OPENMP_GETENV_H_
