// Which device a worker runs on, decided by the master without touching CUDA (invariant 1 in
// docs/ARCHITECTURE.md: no CUDA call before the fork, not even a device count).
#ifndef KILN_SERVER_SUPERVISOR_DEVICE_CHOICE_H_
#define KILN_SERVER_SUPERVISOR_DEVICE_CHOICE_H_

#include "proto/model_config.pb.h"

namespace kiln {

// CUDA devices visible without touching CUDA: the NVIDIA driver's /proc entries, narrowed by
// CUDA_VISIBLE_DEVICES when it lists ids.
int VisibleGpuCount();

// The CUDA device of the worker in `slot` of a model: -1 (CPU) unless KIND_GPU; then the
// config's gpus round-robin, or every visible one round-robin.
int DeviceIndex(const InstanceConfig& group, int slot);

}  // namespace kiln

#endif  // KILN_SERVER_SUPERVISOR_DEVICE_CHOICE_H_
