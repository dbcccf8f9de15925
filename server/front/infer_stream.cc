#include "server/front/infer_stream.h"

#include <deque>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"

namespace kiln {

// One stream. Its state machine, driven by Advance:
//   reading   a read is outstanding (at most one); reads_done: the client half-closed
//   writing   the front slot's response is being written (at most one write)
//   stopping  drain: no more reads; cancelled: the client is gone, nothing more is written
//   finished  Finish was called: the last operation; gRPC then calls OnDone
// Exactly one thread at a time (the one that set `acting`) starts gRPC operations, outside the
// mutex: gRPC may run a reaction inline, in the thread that started the operation.
// Ownership: shared by the reactor (until gRPC is done with it), by InferStreams (until then
// too) and by each started request's finish callback, so that a late finish finds it alive.
struct InferStreams::Stream : std::enable_shared_from_this<InferStreams::Stream> {
  class Reactor;

  struct Slot {
    inference::ModelInferRequest request;
    inference::ModelStreamInferResponse response;
    bool done = false;
  };

  enum class Op { kNone, kRead, kWrite, kFinish };

  Stream(InferStreams& streams, InferStarter start) : streams(streams), start(std::move(start)) {}

  // Applies `change` under the mutex, then starts whatever operations are due.
  void Advance(const std::function<void()>& change = nullptr) {
    mu.Lock();
    if (change) change();
    if (acting) {  // that thread looks again after its operation
      mu.Unlock();
      return;
    }
    acting = true;
    for (;;) {
      const Op op = Next();
      const inference::ModelStreamInferResponse* response =
          op == Op::kWrite ? &slots.front()->response : nullptr;
      if (op == Op::kNone) acting = false;
      mu.Unlock();
      switch (op) {
        case Op::kNone:
          return;
        case Op::kRead:
          reactor->StartRead(&incoming);
          break;
        case Op::kWrite:
          reactor->StartWrite(response);
          break;
        case Op::kFinish:
          // The reactor may be gone once this returns; `acting` stays set: nothing follows.
          reactor->Finish(final_status);
          return;
      }
      mu.Lock();
    }
  }

  // The next operation, its flags set. Called with the mutex held.
  Op Next() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    if (finished) return Op::kNone;
    if (cancelled) {  // nobody reads the answers any more
      while (!writing && !slots.empty() && slots.front()->done) slots.pop_front();
    } else if (!writing && !slots.empty() && slots.front()->done) {
      writing = true;
      return Op::kWrite;
    }
    if (!reading && !reads_done && !stopping && !cancelled &&
        static_cast<int>(slots.size()) < kMaxInFlightPerStream) {
      reading = true;
      return Op::kRead;
    }
    if (slots.empty() && !writing && (reads_done || stopping || cancelled)) {
      finished = true;
      if (cancelled) {
        final_status = grpc::Status::CANCELLED;
      } else if (stopping) {
        final_status = grpc::Status(grpc::StatusCode::UNAVAILABLE,
                                    absl::StrCat("the server is shutting down: the stream ended "
                                                 "after answering its ",
                                                 answered, " requests"));
      }
      return Op::kFinish;
    }
    return Op::kNone;
  }

  void ReadDone(bool ok) {
    if (!ok) {
      Advance([this] {
        reading = false;
        reads_done = true;
      });
      return;
    }
    Slot* slot = nullptr;
    {
      absl::MutexLock lock(&mu);
      reading = false;
      if (!finished && !cancelled) {
        slots.push_back(std::make_unique<Slot>());
        slot = slots.back().get();
        slot->request.Swap(&incoming);
      }
      incoming.Clear();
    }
    if (slot != nullptr) {
      start(
          slot->request, slot->response.mutable_infer_response(),
          [self = shared_from_this(), slot](absl::Status status) { self->Answered(slot, status); });
    }
    Advance();
  }

  // A started request's outcome: its response is complete (or it failed).
  void Answered(Slot* slot, const absl::Status& status) {
    Advance([&] {
      slot->done = true;
      if (status.ok()) return;
      inference::ModelInferResponse* response = slot->response.mutable_infer_response();
      response->Clear();
      response->set_id(slot->request.id());
      response->set_model_name(slot->request.model_name());
      response->set_model_version(slot->request.model_version());
      slot->response.set_error_message(
          absl::StrCat(absl::StatusCodeToString(status.code()), ": ", status.message()));
    });
  }

  void WriteDone(bool ok) {
    Advance([&] {
      writing = false;
      slots.pop_front();
      if (ok) ++answered;
      if (!ok) cancelled = true;
    });
  }

  InferStreams& streams;
  const InferStarter start;
  // What gRPC holds (a Reactor); set once, before the first Advance.
  grpc::ServerBidiReactor<inference::ModelInferRequest, inference::ModelStreamInferResponse>*
      reactor = nullptr;

  absl::Mutex mu;
  // The read buffer: gRPC writes it while a read is outstanding; ReadDone moves it into a slot.
  inference::ModelInferRequest incoming;
  std::deque<std::unique_ptr<Slot>> slots ABSL_GUARDED_BY(mu);  // arrival order; front: next out
  int64_t answered ABSL_GUARDED_BY(mu) = 0;
  bool acting ABSL_GUARDED_BY(mu) = false;
  bool reading ABSL_GUARDED_BY(mu) = false;
  bool reads_done ABSL_GUARDED_BY(mu) = false;
  bool writing ABSL_GUARDED_BY(mu) = false;
  bool stopping ABSL_GUARDED_BY(mu) = false;
  bool cancelled ABSL_GUARDED_BY(mu) = false;
  bool finished ABSL_GUARDED_BY(mu) = false;
  grpc::Status final_status;  // written with `finished`, read by the acting thread
};

// What gRPC holds: forwards its reactions to the stream. Deletes itself when gRPC is done.
class InferStreams::Stream::Reactor final
    : public grpc::ServerBidiReactor<inference::ModelInferRequest,
                                     inference::ModelStreamInferResponse> {
 public:
  explicit Reactor(std::shared_ptr<Stream> stream) : stream_(std::move(stream)) {}

  void OnReadDone(bool ok) override { stream_->ReadDone(ok); }
  void OnWriteDone(bool ok) override { stream_->WriteDone(ok); }
  void OnCancel() override {
    stream_->Advance([stream = stream_.get()] { stream->cancelled = true; });
  }
  void OnDone() override {
    stream_->streams.Closed(stream_.get());
    delete this;
  }

 private:
  const std::shared_ptr<Stream> stream_;
};

grpc::ServerBidiReactor<inference::ModelInferRequest, inference::ModelStreamInferResponse>*
InferStreams::Open(InferStarter start) {
  auto stream = std::make_shared<Stream>(*this, std::move(start));
  auto* reactor = new Stream::Reactor(stream);
  stream->reactor = reactor;
  bool stop = false;
  {
    absl::MutexLock lock(&mu_);
    streams_[stream.get()] = stream;
    stop = stopped_;
  }
  stream->Advance([&] { stream->stopping = stop; });
  return reactor;
}

void InferStreams::StopAll() {
  std::vector<std::shared_ptr<Stream>> open;
  {
    absl::MutexLock lock(&mu_);
    stopped_ = true;
    for (const auto& [key, stream] : streams_) open.push_back(stream);
  }
  // Outside the mutex: a stream that finishes may be closed (Closed) from this thread.
  for (const std::shared_ptr<Stream>& stream : open) {
    stream->Advance([&] { stream->stopping = true; });
  }
}

void InferStreams::Closed(const Stream* stream) {
  absl::MutexLock lock(&mu_);
  streams_.erase(stream);
}

}  // namespace kiln
