#include "server/supervisor/device_choice.h"

#include <dirent.h>

#include <algorithm>
#include <cstdlib>
#include <string>

namespace kiln {

int VisibleGpuCount() {
  int count = 0;
  if (DIR* dir = opendir("/proc/driver/nvidia/gpus")) {
    while (const dirent* entry = readdir(dir)) count += entry->d_name[0] != '.';
    closedir(dir);
  }
  if (const char* visible = std::getenv("CUDA_VISIBLE_DEVICES")) {
    const std::string list(visible);
    const int listed =
        list.empty() ? 0 : 1 + static_cast<int>(std::count(list.begin(), list.end(), ','));
    count = std::min(count, listed);
  }
  return count;
}

int DeviceIndex(const InstanceConfig& group, int slot) {
  if (group.kind() != InstanceConfig::KIND_GPU) return -1;
  if (!group.gpus().empty()) return group.gpus(slot % group.gpus().size());
  const int visible = VisibleGpuCount();
  return visible > 0 ? slot % visible : slot;
}

}  // namespace kiln
