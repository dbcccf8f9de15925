// What the zygote, the warm templates and the workers they fork know of one served model version
// (docs/ARCHITECTURE.md, "Processes"): the master loads it before the first fork, and every fork
// inherits it, pages shared.
#ifndef KILN_SERVER_ZYGOTE_ZYGOTE_MODEL_H_
#define KILN_SERVER_ZYGOTE_ZYGOTE_MODEL_H_

#include <vector>

#include "common/model_config_loader.h"
#include "common/tensor.h"
#include "worker/tokenizer.h"
#include "worker/torch_model.h"

namespace kiln {

// What a worker may be forked for: the model's spec, the master's loaded copy (null in the
// --share_weights=off baseline, where each worker loads its own) and its tokenizer (text models;
// always loaded by the master). All inherited by the fork, pages shared.
struct ZygoteModel {
  const ModelSpec* spec = nullptr;
  TorchModel* loaded = nullptr;
  const Tokenizer* tokenizer = nullptr;
  const std::vector<std::vector<Tensor>>* samples = nullptr;  // recorded requests to warm with
};

}  // namespace kiln

#endif  // KILN_SERVER_ZYGOTE_ZYGOTE_MODEL_H_
