#!/usr/bin/env bash
# Writes the seed corpora checked in under tests/fuzz/corpus/<target>/: a few valid and invalid
# inputs per fuzzer. Protobuf seeds are encoded from the text below with protoc --encode. The
# seeds are checked in; rerun this only to change them (it replaces every seed-* file).
#
# Usage: tests/fuzz/make_corpus.sh
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
corpus="${root}/tests/fuzz/corpus"

# target DIR: starts a fresh seed directory.
target() {
  dir="${corpus}/$1"
  mkdir -p "${dir}"
  rm -f "${dir}"/seed-*
}

# le N BYTES: N as BYTES little-endian bytes.
le() {
  local n="$1" bytes="$2" i
  for ((i = 0; i < bytes; ++i)); do
    # shellcheck disable=SC2059
    printf "\\$(printf '%03o' $(((n >> (8 * i)) & 255)))"
  done
}

# encode MESSAGE PROTO: the text format on stdin in protobuf's binary form.
encode() {
  protoc --encode="$1" -I "${root}/proto" "${root}/proto/$2"
}

# --- safetensors_fuzz: a safetensors image ---------------------------------------------------
target safetensors
# st NAME HEADER [DATA]: the 8-byte header length, HEADER (ASCII), DATA (a printf format).
st() {
  # shellcheck disable=SC2059
  { le "${#2}" 8; printf '%s' "$2"; printf "${3:-}"; } > "${dir}/seed-$1"
}
entry() {  # entry NAME DTYPE SHAPE BEGIN END
  printf '"%s":{"dtype":"%s","shape":%s,"data_offsets":[%s,%s]}' "$@"
}
metadata='"__metadata__":{"format":"pt"}'
st valid "{$(entry w F32 '[2,2]' 0 16),$(entry b F16 '[2]' 16 20),${metadata}}" \
  "AAAABBBBCCCCDDDDEEFF"
st zero-size "{$(entry e F32 '[0,3]' 0 0),$(entry a U8 '[3]' 0 3)}" "abc"
st padded "{$(entry a I64 '[1]' 0 8)}        " "12345678"
st empty-header "{}"
st misaligned "{$(entry a U8 '[1]' 0 1),$(entry b F32 '[1]' 1 5),$(entry c BF16 '[1]' 5 7)}" \
  "abcdefg"
st overlap "{$(entry a F32 '[2]' 0 8),$(entry b F32 '[2]' 4 12)}" "aaaabbbbcccc"
st hole "{$(entry a F32 '[1]' 0 4),$(entry b F32 '[1]' 8 12)}" "aaaabbbbcccc"
st mismatch "{$(entry a F64 '[2,3]' 0 20)}" "aaaabbbbccccddddeeee"
st bad-json '{"a": {"dtype": "F32", "shape": [1, "data_offsets": [0, 4]}' "aaaa"
st duplicate "{$(entry a F32 '[1]' 0 4),$(entry a F32 '[1]' 0 4)}" "aaaa"
printf 'short' > "${dir}/seed-short"
{ le 1000 8; printf '{}'; } > "${dir}/seed-length-too-long"

# --- infer_request_fuzz: a config selector byte, then a ModelInferRequest --------------------
# Selectors (tests/fuzz/infer_request_fuzz.cc): 0 mlp, 1 text, 2 nobatch, 3 types.
target infer_request
# req NAME SELECTOR: the request's text format on stdin.
req() {
  { le "$2" 1; encode inference.ModelInferRequest grpc_service.proto; } > "${dir}/seed-$1"
}
zeros() { printf '\\000%.0s' $(seq "$1"); }  # N zero bytes as a text-format escape
req mlp-raw 0 <<EOF
model_name: "mlp" inputs { name: "x" datatype: "FP32" shape: [2, 16] }
outputs { name: "y" } raw_input_contents: "$(zeros 128)"
EOF
req mlp-typed 0 <<EOF
model_name: "mlp" inputs { name: "x" datatype: "FP32" shape: [1, 16]
  contents { fp32_contents: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 1.5] } }
outputs { name: "z" } outputs { name: "y" }
EOF
req mlp-short-raw 0 <<EOF
inputs { name: "x" datatype: "FP32" shape: [1, 16] } raw_input_contents: "$(zeros 10)"
EOF
req mlp-unknown-input 0 <<EOF
inputs { name: "w" datatype: "FP32" shape: [1, 16] contents { fp32_contents: [1] } }
EOF
req text-typed 1 <<EOF
model_name: "text" inputs { name: "text" datatype: "BYTES" shape: [2, 1]
  contents { bytes_contents: ["hello", "world"] } }
EOF
req text-raw 1 <<EOF
inputs { name: "text" datatype: "BYTES" shape: [1, 1] }
raw_input_contents: "\\005\\000\\000\\000hello"
EOF
req text-tokens 1 <<EOF
inputs { name: "input_ids" datatype: "INT64" shape: [1, 3] contents { int64_contents: [5, 6, 7] } }
inputs { name: "attention_mask" datatype: "INT64" shape: [1, 3]
  contents { int64_contents: [1, 1, 1] } }
EOF
req nobatch-raw 2 <<EOF
inputs { name: "a" datatype: "INT32" shape: [2, 3] }
inputs { name: "b" datatype: "BOOL" shape: [3] }
inputs { name: "c" datatype: "FP16" shape: [2] }
raw_input_contents: ["$(zeros 24)", "\\001\\000\\001", "$(zeros 4)"]
EOF
req types-raw 3 <<EOF
inputs { name: "t_bool" datatype: "BOOL" shape: [1, 2] }
inputs { name: "t_u8" datatype: "UINT8" shape: [1, 2] }
inputs { name: "t_i8" datatype: "INT8" shape: [1, 2] }
inputs { name: "t_i16" datatype: "INT16" shape: [1, 2] }
inputs { name: "t_i32" datatype: "INT32" shape: [1, 2] }
inputs { name: "t_i64" datatype: "INT64" shape: [1, 2] }
inputs { name: "t_f16" datatype: "FP16" shape: [1, 2] }
inputs { name: "t_f32" datatype: "FP32" shape: [1, 2] }
inputs { name: "t_f64" datatype: "FP64" shape: [1, 2] }
inputs { name: "t_bf16" datatype: "BF16" shape: [1, 2] }
raw_input_contents: ["\\001\\000", "ab", "cd", "$(zeros 4)", "$(zeros 8)", "$(zeros 16)",
                     "$(zeros 4)", "$(zeros 8)", "$(zeros 16)", "$(zeros 4)"]
EOF
req types-typed 3 <<EOF
inputs { name: "t_bool" datatype: "BOOL" shape: [1, 2] contents { bool_contents: [true, false] } }
inputs { name: "t_u8" datatype: "UINT8" shape: [1, 2] contents { uint_contents: [0, 255] } }
inputs { name: "t_i8" datatype: "INT8" shape: [1, 2] contents { int_contents: [-128, 127] } }
inputs { name: "t_i16" datatype: "INT16" shape: [1, 2] contents { int_contents: [-1, 300] } }
inputs { name: "t_i32" datatype: "INT32" shape: [1, 2] contents { int_contents: [1, 2] } }
inputs { name: "t_i64" datatype: "INT64" shape: [1, 2] contents { int64_contents: [1, 2] } }
inputs { name: "t_f16" datatype: "FP16" shape: [1, 2] contents { fp32_contents: [1, 2] } }
inputs { name: "t_f32" datatype: "FP32" shape: [1, 2] contents { fp32_contents: [1, 2] } }
inputs { name: "t_f64" datatype: "FP64" shape: [1, 2] contents { fp64_contents: [1, 2] } }
inputs { name: "t_bf16" datatype: "BF16" shape: [1, 2] }
EOF
req types-out-of-range 3 <<EOF
inputs { name: "t_bool" datatype: "BOOL" shape: [1, 2] contents { bool_contents: [true, false] } }
inputs { name: "t_u8" datatype: "UINT8" shape: [1, 2] contents { uint_contents: [0, 256] } }
inputs { name: "t_i8" datatype: "INT8" shape: [1, 2] contents { int_contents: [-129, 0] } }
inputs { name: "t_i16" datatype: "INT16" shape: [1, 2] contents { int_contents: [1, 2] } }
inputs { name: "t_i32" datatype: "INT32" shape: [1, 2] contents { int_contents: [1, 2] } }
inputs { name: "t_i64" datatype: "INT64" shape: [1, 2] contents { int64_contents: [1, 2] } }
inputs { name: "t_f16" datatype: "FP16" shape: [1, 2] }
inputs { name: "t_f32" datatype: "FP32" shape: [1, 2] contents { fp32_contents: [1, 2] } }
inputs { name: "t_f64" datatype: "FP64" shape: [1, 2] contents { fp64_contents: [1, 2] } }
inputs { name: "t_bf16" datatype: "BF16" shape: [1, 2] }
EOF

# --- worker_frames_fuzz: [n, 2 bytes LE][datagram of n bytes][arena bytes] --------------------
target worker_frames
# datagram MESSAGE NAME ARENA_BYTES: a frame of MESSAGE (text format on stdin) and the arena's
# first bytes (printf format), as the frame fuzzers read them.
datagram() {
  local frame
  frame="$(mktemp)"
  { printf '\001'; encode "$1" worker_frames.proto; } > "${frame}"
  # shellcheck disable=SC2059
  { le "$(stat -c %s "${frame}")" 2; cat "${frame}"; printf "$3"; } > "${dir}/seed-$2"
  rm -f "${frame}"
}
frame() { datagram kiln.internal.ToWorker "$@"; }  # frame NAME ARENA_BYTES
frame tensors 'abcdefgh' <<EOF
infer { call_id: 1 output_offset: 4096
  inputs { name: "x" dtype: "F32" shape: [2, 3, 2] offset: 0 nbytes: 48 }
  inputs { name: "m" dtype: "I64" shape: [2, 3] offset: 64 nbytes: 48 } }
EOF
frame split '' <<EOF
infer { call_id: 2 deadline_monotonic_ns: 1
  inputs { name: "x" dtype: "F32" shape: [8, 4, 2] offset: 0 nbytes: 256 }
  inputs { name: "m" dtype: "I64" shape: [8, 4] offset: 256 nbytes: 256 } }
EOF
frame padded '' <<EOF
infer { call_id: 3
  inputs { name: "x" dtype: "F32" shape: [3, 4, 2] offset: 0 nbytes: 96 }
  inputs { name: "m" dtype: "I64" shape: [3, 4] offset: 128 nbytes: 96 } }
EOF
frame outside '' <<EOF
infer { inputs { name: "x" dtype: "F32" shape: [1, 1, 2] offset: 65536 nbytes: 8 } }
EOF
frame text '\002\000\000\000hi\005\000\000\000there' <<EOF
infer { call_id: 4 text { name: "text" dtype: "BYTES" shape: [2, 1] offset: 0 nbytes: 15 } }
EOF
frame text-short '\002\000\000\000hi\005\000\000\000the' <<EOF
infer { text { name: "text" dtype: "BYTES" shape: [2, 1] offset: 0 nbytes: 13 } }
EOF
frame promote '' <<< 'promote {}'
printf '\000\000' > "${dir}/seed-empty"
printf '\003\000\002\010\001' > "${dir}/seed-bad-header"
printf '\003\000\001\377\377' > "${dir}/seed-unparsable"

# --- worker_results_fuzz: [n, 2 bytes LE][datagram of n bytes][arena bytes] -------------------
target worker_results
result() { datagram kiln.internal.FromWorker "$@"; }  # result NAME ARENA_BYTES
# y: FP32 [2, 3] (24 bytes at 0), z: I64 [2, 1] (16 bytes at 64).
result outputs 'abcdefghijklmnopqrstuvwx' <<EOF
result { call_id: 1 compute_ms: 1.5 ran_as { batch_size: 2 } chunks: 1
  outputs { name: "y" dtype: "F32" shape: [2, 3] offset: 0 nbytes: 24 }
  outputs { name: "z" dtype: "I64" shape: [2, 1] offset: 64 nbytes: 16 } }
EOF
result wrong-dims '' <<EOF
result { call_id: 2
  outputs { name: "y" dtype: "F32" shape: [2, 1, 3] offset: 0 nbytes: 24 }
  outputs { name: "z" dtype: "I64" shape: [2, 1] offset: 64 nbytes: 16 } }
EOF
result outside '' <<EOF
result { outputs { name: "y" dtype: "F32" shape: [2, 3] offset: 65530 nbytes: 24 } }
EOF
result error '' <<< 'result { call_id: 3 code: 8 message: "over the memory budget" }'
result ready '' <<EOF
ready { worker_id: 1 pid: 42 device: "cpu" intra_op_threads: 1 warmup_ms: 120
  shapes { batch_size: 1 calls: 5 first_ms: 9 steady_ms: 1.2 settled_after: 3 }
  shapes { batch_size: 4 calls: 5 first_ms: 20 steady_ms: 1e300 settled_after: 0 refused: true } }
EOF
result failed '' <<< 'failed { message: "the model cannot load" }'
printf '\003\000\001\377\377' > "${dir}/seed-unparsable"

# --- model_config_fuzz: config.pbtxt, then optionally a line "--- kiln.pbtxt" and kiln.pbtxt ----
target model_config
# kiln.pbtxt's part of a seed starts after this line (tests/fuzz/model_config_fuzz.cc).
separator='--- kiln.pbtxt'
cat > "${dir}/seed-mlp" <<EOF
name: "m"
backend: "pytorch"
max_batch_size: 8
input [ { name: "input" data_type: TYPE_FP32 dims: [ 16 ] } ]
output [ { name: "output" data_type: TYPE_FP32 dims: [ 4 ] } ]
instance_group [ { kind: KIND_CPU } ]
dynamic_batching { max_queue_delay_microseconds: 500 }
${separator}
warmup { batch_sizes: [1, 2, 4, 8] calls_per_shape: 3 }
EOF
cat > "${dir}/seed-text" <<EOF
max_batch_size: 8
input [ { name: "input_ids" data_type: TYPE_INT64 dims: [ -1 ] },
        { name: "attention_mask" data_type: TYPE_INT64 dims: [ -1 ] } ]
output [ { name: "logits" data_type: TYPE_FP32 dims: [ 4 ] } ]
${separator}
warmup { batch_sizes: [1, 4] sequence_lengths: [16, 32, 64, 128] calls_per_shape: 3 }
tokenizer { model_file: "tokenizer.model" max_length: 128 pad_id: 0 }
EOF
cat > "${dir}/seed-every-section" <<EOF
name: "m" platform: "pytorch_libtorch" max_batch_size: 0
version_policy { specific { versions: [ 1 ] } }
input [ { name: "a" data_type: TYPE_INT32 dims: [2, -1] },
        { name: "b" data_type: TYPE_BF16 dims: [3] } ]
output [ { name: "o" data_type: TYPE_FP64 dims: [1] } ]
instance_group [ { count: 2 kind: KIND_CPU } ]
parameters { key: "INTRA_OP_THREAD_COUNT" value { string_value: "1" } }
dynamic_batching { max_queue_delay_microseconds: 0 default_queue_policy { max_queue_size: 8 } }
${separator}
warmup { enabled: true sequence_lengths: [4, 8] data: DATA_RANDOM settle_tolerance: 0.2
         max_calls_per_shape: 20 steady_calls: 4 traffic_profile: "m.traffic.pbtxt"
         pad_to_warmed: false }
memory { limit_bytes: 1000000000 cgroup_share: 0.5 headroom_bytes: 1000 }
readiness { quorum: 2 check_requests: 5 check_concurrency: 1 max_p95_factor: 2
            check_allowance_ms: 0.5 min_ready: 1 }
supervision { compute_timeout_ms: 2500 }
EOF
cat > "${dir}/seed-version-policy" <<'EOF'
max_batch_size: 2
input [ { name: "x" data_type: TYPE_UINT8 dims: [] } ]
output [ { name: "y" data_type: TYPE_BOOL dims: [1] } ]
version_policy { latest { num_versions: 3 } }
EOF
# A defect in nearly every field of both files.
cat > "${dir}/seed-defects" <<EOF
name: "other" platform: "onnxruntime_onnx" backend: "onnxruntime" max_batch_size: -1
input [ { name: "x" data_type: TYPE_STRING dims: [0, -2] }, { name: "x" },
        { name: "u" data_type: TYPE_UINT32 dims: [1] format: FORMAT_NCHW } ]
output [ { name: "y" data_type: TYPE_UINT64 dims: [1] label_filename: "labels.txt" } ]
instance_group [ { count: -1 kind: KIND_MODEL }, { kind: KIND_CPU gpus: [0, -1] } ]
parameters { key: "INTRA_OP_THREAD_COUNT" value { string_value: "0" } }
parameters { key: "INFERENCE_MODE" value { string_value: "maybe" } }
default_model_filename: "../model.pt"
model_warmup [ { batch_size: 9 inputs { key: "z" value { data_type: TYPE_FP32 dims: [1, 2] } } } ]
version_policy { specific { versions: [1, 2] } }
${separator}
warmup { batch_sizes: [4, 2] calls_per_shape: -1 settle_tolerance: 2 steady_calls: -1 }
memory { cgroup_share: 1.5 limit_bytes: -1 }
readiness { quorum: -1 max_p95_factor: 0.5 min_ready: -2 }
supervision { compute_timeout_ms: -1 }
tokenizer { max_length: -1 pad_id: -1 ids_input: "x" model_file: "a/b.model" }
EOF
printf 'input [ { name: "x" data_type: TYPE_FP32 dims: [1' > "${dir}/seed-syntax-error"
{ sed -n '1,6p' "${dir}/seed-mlp"; printf '%s\nwarmup { batch_sizes: [1' "${separator}"; } \
  > "${dir}/seed-settings-syntax-error"
# Triton's fields kiln refuses, each at its line.
cat > "${dir}/seed-triton-refused" <<'EOF'
name: "m"
backend: "pytorch"
runtime: "libtorch.so"
max_batch_size: 4
input [ { name: "x" data_type: TYPE_FP32 dims: [ 2 ] optional: true allow_ragged_batch: true } ]
output [ { name: "y" data_type: TYPE_FP32 dims: [ 1 ] is_shape_tensor: true } ]
batch_input [ { kind: BATCH_ELEMENT_COUNT target_name: "n" data_type: TYPE_INT32 } ]
instance_group [ { count: 1 kind: KIND_CPU passive: true rate_limiter { priority: 2 } } ]
optimization { graph { level: 1 } input_pinned_memory { enable: true } }
model_warmup [ { batch_size: 1 inputs { key: "x" value { data_type: TYPE_FP32 dims: [ 2 ]
                 input_data_file: "raw_x" } } } ]
cc_model_filenames { key: "7.5" value: "model.pt" }
metric_tags { key: "team" value: "a" }
model_transaction_policy { decoupled: true }
response_cache { enable: true }
model_repository_agents { agents [ { name: "checksum" } ] }
model_operations { op_library_filename: "ops.so" }
EOF
cat > "${dir}/seed-triton-sequence" <<'EOF'
backend: "pytorch"
max_batch_size: 4
input [ { name: "x" data_type: TYPE_FP32 dims: [ 2 ] } ]
output [ { name: "y" data_type: TYPE_FP32 dims: [ 1 ] } ]
sequence_batching { max_sequence_idle_microseconds: 5000000 oldest { max_candidate_sequences: 4 } }
EOF
# Warmup samples of config.pbtxt beside kiln.pbtxt's: their batch sizes, lengths and counts.
cat > "${dir}/seed-model-warmup" <<EOF
name: "m"
backend: "pytorch"
max_batch_size: 8
input [ { name: "ids" data_type: TYPE_INT64 dims: [ -1 ] },
        { name: "feat" data_type: TYPE_FP16 dims: [ -1, 3 ] } ]
output [ { name: "y" data_type: TYPE_FP32 dims: [ -1 ] } ]
model_warmup [
  { name: "short" batch_size: 2 count: 5
    inputs { key: "ids" value { data_type: TYPE_INT64 dims: [ 16 ] zero_data: true } }
    inputs { key: "feat" value { data_type: TYPE_FP16 dims: [ 16, 3 ] zero_data: true } } },
  { name: "long" batch_size: 8
    inputs { key: "ids" value { data_type: TYPE_INT64 dims: [ 64 ] random_data: true } }
    inputs { key: "feat" value { data_type: TYPE_FP16 dims: [ 64, 3 ] random_data: true } } }
]
dynamic_batching { preferred_batch_size: [ 4 ] max_queue_delay_microseconds: 100
                   default_queue_policy { max_queue_size: 32 timeout_action: DELAY } }
${separator}
warmup { sequence_lengths: [ 32 ] calls_per_shape: 2 }
EOF
# Several instance groups (summed into one kind), and GPU ids.
cat > "${dir}/seed-instance-groups" <<'EOF'
backend: "pytorch"
max_batch_size: 2
input [ { name: "x" data_type: TYPE_INT16 dims: [ 5 ] } ]
output [ { name: "y" data_type: TYPE_INT8 dims: [ 5 ] } ]
instance_group [ { name: "a" count: 2 kind: KIND_CPU }, { kind: KIND_AUTO }, { count: 3 } ]
EOF
cat > "${dir}/seed-instance-gpus" <<'EOF'
backend: "pytorch"
max_batch_size: 2
input [ { name: "x" data_type: TYPE_FP32 dims: [ 5 ] } ]
output [ { name: "y" data_type: TYPE_FP32 dims: [ 5 ] } ]
instance_group [ { count: 2 kind: KIND_GPU gpus: [ 0, 1 ] }, { kind: KIND_AUTO gpus: [ 2 ] } ]
EOF
# The PyTorch backend's parameters, and others; reshape, an image format, a label file that is
# there (config.pbtxt itself) and default_model_filename.
cat > "${dir}/seed-parameters" <<'EOF'
name: "m"
platform: "pytorch_libtorch"
max_batch_size: 1
default_model_filename: "model.pt"
input [ { name: "image" data_type: TYPE_UINT8 format: FORMAT_NCHW dims: [ 3, 4, 4 ]
          reshape { shape: [ 48 ] } } ]
output [ { name: "scores" data_type: TYPE_FP32 dims: [ 10 ] label_filename: "config.pbtxt" } ]
parameters { key: "INTRA_OP_THREAD_COUNT" value { string_value: "3" } }
parameters { key: "INFERENCE_MODE" value { string_value: "true" } }
parameters { key: "DISABLE_OPTIMIZED_EXECUTION" value { string_value: "TRUE" } }
parameters { key: "ENABLE_JIT_EXECUTOR" value { string_value: "false" } }
parameters { key: "ENABLE_JIT_PROFILING" value { string_value: "0" } }
parameters { key: "ENABLE_TENSOR_FUSER" value { string_value: "no" } }
parameters { key: "ENABLE_WEIGHT_SHARING" value { string_value: "yes" } }
parameters { key: "INTER_OP_THREAD_COUNT" value { string_value: "2" } }
parameters { key: "ENABLE_NVFUSER" value { string_value: "true" } }
parameters { key: "kiln_config" value { string_value: "warmup {}" } }
version_policy { all {} }
EOF
# Sequence lengths for a model no length fits (a crash found by fuzz.sh: the largest shape had one).
cat > "${dir}/seed-lengths-without-variable-dim" <<EOF
max_batch_size: 4
input [ { name: "a" data_type: TYPE_INT32 dims: [3] } ]
output [ { name: "o" data_type: TYPE_FP64 dims: [1] } ]
${separator}
warmup { sequence_lengths: [4, 8] }
EOF
# The tokenizer file named by something the file system refuses (a CI crash: ENAMETOOLONG threw).
{
  sed -n '1,5p' "${dir}/seed-text"
  printf 'tokenizer { model_file: "%s.model" }\n' "$(printf 'x%.0s' {1..300})"
} > "${dir}/seed-tokenizer-name-too-long"
# Enums given as numbers no value has (a crash found by fuzz.sh: proto3's text format takes them).
cat > "${dir}/seed-enum-number" <<'EOF'
name: "m"
backend: "pytorch"
max_batch_size:8
input [ { name: "input" data_type: TYPE_FP16 dims: [16] } ]
output [ { name: "output" data_type:  32} ]
dynamic_batching { max_queue_delay_microseconds: 500 }
EOF
{ sed -n '1,6p' "${dir}/seed-mlp"; printf '%s\nwarmup { data: 7 }\n' "${separator}"; } \
  > "${dir}/seed-settings-enum-number"
# Numbers past what the resolved config holds: refused, not wrapped.
for overflow in \
    'instance-count:instance_group [ { count: 2147483647 kind: KIND_GPU gpus: [ 0, 1 ] } ]' \
    'queue-delay:dynamic_batching { max_queue_delay_microseconds: 18446744073709551615 }' \
    'warmup-length:model_warmup [ { batch_size: 1 inputs { key: "x" value { data_type: TYPE_FP32 dims: [ 4294967296 ] } } } ]'; do
  cat > "${dir}/seed-overflow-${overflow%%:*}" <<EOF
backend: "pytorch"
max_batch_size: 2
input [ { name: "x" data_type: TYPE_FP32 dims: [ -1 ] } ]
output [ { name: "y" data_type: TYPE_FP32 dims: [ 5 ] } ]
${overflow#*:}
${separator}
warmup { sequence_lengths: [ 4 ] }
EOF
done

# --- traffic_profile_fuzz: <model>.traffic.pbtxt or <model>.samples.safetensors ---------------
target traffic_profile
cat > "${dir}/seed-profile" <<'EOF'
# kiln traffic profile (kiln.TrafficProfile), written by kiln-server.
model: "m"
updated_unix_ms: 1700000000000
shapes { batch_size: 4 sequence_length: 32 requests: 120 }
shapes { batch_size: 1 sequence_length: 16 requests: 7 }
shapes { batch_size: 8 requests: 0 }
other_requests: 3
EOF
cat > "${dir}/seed-profile-defects" <<'EOF'
shapes { batch_size: 0 sequence_length: -1 requests: -5 }
shapes { batch_size: 2 } shapes { batch_size: 2 }
other_requests: -1
EOF
# Counts whose sum overflows int64 (a crash the fuzzer found, fixed in common/traffic_profile.cc).
printf 'shapes { batch_size: 1 requests: 9223372036854775807 }\nshapes { batch_size: 2 requests: %s }\nother_requests: 5\n' \
  9223372036854775807 > "${dir}/seed-profile-overflow"
printf 'shapes { batch_size: 1 bogus: 2 }' > "${dir}/seed-profile-unknown-field"
st samples "{$(entry 0.x F32 '[1,2]' 0 8),$(entry 0.m I64 '[1]' 8 16),$(entry 1.x F32 '[2,2]' 16 32),${metadata}}" \
  "aaaabbbbccccddddeeeeffffgggghhhh"
st samples-text "{$(entry 0.text U8 '[6]' 0 6)}" '\002\000\000\000hi'
st samples-bad-name "{$(entry x F32 '[1]' 0 4)}" "aaaa"

echo "make_corpus.sh: wrote $(find "${corpus}" -name 'seed-*' | wc -l) seeds under ${corpus}"
