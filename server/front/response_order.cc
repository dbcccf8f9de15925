#include "server/front/response_order.h"

#include <utility>
#include <vector>

namespace kiln {

uint64_t ResponseOrder::Take(const std::string& key) {
  absl::MutexLock lock(&mu_);
  return sequences_[key].next_place++;
}

void ResponseOrder::Answered(const std::string& key, uint64_t place, std::function<void()> send) {
  std::vector<std::function<void()>> due;
  {
    absl::MutexLock lock(&mu_);
    Sequence& sequence = sequences_[key];
    sequence.answered.emplace(place, std::move(send));
    if (sequence.draining) return;  // the caller draining this key sends it in its turn
    sequence.draining = true;
  }
  // This caller drains: whatever became due, in order, outside the lock, until nothing is.
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      Sequence& sequence = sequences_[key];
      for (auto it = sequence.answered.begin();
           it != sequence.answered.end() && it->first == sequence.next_send;
           it = sequence.answered.erase(it)) {
        due.push_back(std::move(it->second));
        ++sequence.next_send;
      }
      if (due.empty()) {
        sequence.draining = false;
        return;
      }
    }
    for (std::function<void()>& next : due) {
      if (next) next();
    }
    due.clear();
  }
}

int ResponseOrder::held() const {
  absl::MutexLock lock(&mu_);
  int held = 0;
  for (const auto& [key, sequence] : sequences_) held += static_cast<int>(sequence.answered.size());
  return held;
}

}  // namespace kiln
