// Triton's dynamic_batching.preserve_ordering (docs/batching.md, "Response order"): the
// responses of one model version leave in the order its requests were accepted, whichever worker
// finishes first. A response that is ready early is held, already encoded (its outputs were
// copied out of the worker's arena into it), until every earlier one has left.
#ifndef KILN_SERVER_FRONT_RESPONSE_ORDER_H_
#define KILN_SERVER_FRONT_RESPONSE_ORDER_H_

#include <cstdint>
#include <functional>
#include <map>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace kiln {

// Places in per-key sequences (a key is a model version), and the sends they hold.
//
// The state machine of one place: taken (Take) -> answered (Answered: its send is held) -> sent
// (every earlier place was sent; its send has run). Places are sent strictly in order, one at a
// time: one caller of Answered drains every send that has become due, in order, while the others
// only leave theirs.
//
// Ownership: owns the held sends. Thread-safety: safe from any thread; mu_ guards the sequences,
// and sends run without it (on the thread draining them: they must not block).
class ResponseOrder {
 public:
  // The next place in `key`'s order.
  uint64_t Take(const std::string& key);

  // Place `place` of `key` (from Take) is answered: `send` runs once every earlier place of the
  // key has been sent (at once when none is waiting). Null `send`: the place is given up (its
  // request was refused before it queued), and only lets the later places go. Exactly one call
  // per place taken.
  void Answered(const std::string& key, uint64_t place, std::function<void()> send);

  // Answered places still held behind an earlier one, over every key (for tests and metrics).
  int held() const;

 private:
  struct Sequence {
    uint64_t next_place = 0;                             // the place Take gives next
    uint64_t next_send = 0;                              // the place that must be sent next
    std::map<uint64_t, std::function<void()>> answered;  // held until their turn
    bool draining = false;  // a caller of Answered is running this key's sends
  };
  mutable absl::Mutex mu_;
  std::map<std::string, Sequence> sequences_ ABSL_GUARDED_BY(mu_);
};

}  // namespace kiln

#endif  // KILN_SERVER_FRONT_RESPONSE_ORDER_H_
