// What a worker makes of one InferCall frame before it runs the model: the inputs read from its
// arena (or, for a text call, its texts read and tokenized), the shape the request has, the
// guard's plan for it, and the inputs padded to the plan's batch. Everything up to the forward
// pass, without LibTorch, so that tests/fuzz/worker_frames_fuzz.cc runs what the worker runs.
#ifndef KILN_WORKER_CALL_INPUTS_H_
#define KILN_WORKER_CALL_INPUTS_H_

#include <vector>

#include "absl/status/status.h"
#include "common/shape.h"
#include "common/shared_arena.h"
#include "common/tensor.h"
#include "proto/model_config.pb.h"
#include "proto/worker_frames.pb.h"
#include "worker/shape_guard.h"
#include "worker/text_batch.h"

namespace kiln {

// A call's inputs, what owns their bytes when they are not in the arena, and how to run them.
//
// Ownership: `views` point into the arena, into `text` or into `padded`, so the arena must outlive
// it and it must not be copied (a copy's views point into the original). A plain value without
// synchronisation, filled by PrepareCall and used by one thread.
struct CallInputs {
  std::vector<TensorView> views;  // in the config's input order, padded when plan.padded_rows > 0
  TextBatch text;                 // a text call's token ids and mask
  std::vector<Tensor> padded;     // copies padded with zero rows
  Shape request;                  // the shape the call arrived as (after a text call's padding)
  PassPlan plan;                  // the guard's plan for `request`
};

// Reads `call`'s inputs from `arena` (ViewsInArena), or for a text call its texts (TextInArena),
// tokenized with `tokenize` and padded to the guard's sequence buckets; then plans the request
// with `guard` and pads the inputs to the planned batch. Notes the tokenizing time and the
// unpadded length in `result`. What it accepts the model can run: the config's inputs in its
// order, with its dtypes and dims, one batch in [1, max_batch_size], bytes that hold each shape.
// Errors: a corrupt call (a ref outside the arena, a text ref that does not hold its rows, inputs
// that are not the model's as above) -> Internal; a text call to a model without a tokenizer ->
// InvalidArgument; the tokenizer's errors; the guard's ResourceExhausted.
absl::Status PrepareCall(const ModelConfig& config, const EncodeFn& tokenize,
                         const ShapeGuard& guard, const internal::InferCall& call,
                         const SharedArena& arena, CallInputs& inputs,
                         internal::InferResult& result);

}  // namespace kiln

#endif  // KILN_WORKER_CALL_INPUTS_H_
