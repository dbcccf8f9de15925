#!/usr/bin/env bash
# Fuzzes the safetensors reader (ParseSafetensors) with libFuzzer + ASan + UBSan.
#
# Usage: scripts/fuzz.sh [SECONDS]     (default 60)
#
# Configures build-fuzz/ with clang and -DKILN_FUZZ=ON, builds only the fuzzer, seeds a corpus
# (build-fuzz/fuzz/corpus/safetensors, kept between runs) with a few valid and invalid files,
# and fuzzes for SECONDS. Exits non-zero when the fuzzer finds a crash; the input that crashed
# is saved under build-fuzz/fuzz/artifacts/; rerun one with
#   build-fuzz/tests/fuzz/safetensors_fuzz build-fuzz/fuzz/artifacts/crash-...
set -euo pipefail

seconds="${1:-60}"
if ! [[ "${seconds}" =~ ^[0-9]+$ ]]; then
  echo "usage: $0 [SECONDS]" >&2
  exit 2
fi

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${root}/build-fuzz"
corpus="${build}/fuzz/corpus/safetensors"
artifacts="${build}/fuzz/artifacts"
dict="${build}/fuzz/safetensors.dict"

CC=clang CXX=clang++ cmake -S "${root}" -B "${build}" -G Ninja \
  -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=RelWithDebInfo -DKILN_FUZZ=ON
cmake --build "${build}" --target safetensors_fuzz -j2

mkdir -p "${corpus}" "${artifacts}"

# le64 N: the 8-byte little-endian header length.
le64() {
  local n="$1" i
  for i in 0 1 2 3 4 5 6 7; do
    # shellcheck disable=SC2059
    printf "\\x$(printf '%02x' $(((n >> (8 * i)) & 255)))"
  done
}

# seed NAME HEADER [DATA]: writes length + HEADER + DATA (ASCII only) into the corpus.
seed() {
  local name="$1" header="$2" data="${3:-}"
  { le64 "${#header}"; printf '%s' "${header}" "${data}"; } > "${corpus}/seed-${name}"
}

entry() {  # entry NAME DTYPE SHAPE BEGIN END
  printf '"%s":{"dtype":"%s","shape":%s,"data_offsets":[%s,%s]}' "$@"
}

metadata='"__metadata__":{"format":"pt"}'
seed valid "{$(entry w F32 '[2,2]' 0 16),$(entry b F16 '[2]' 16 20),${metadata}}" \
  "AAAABBBBCCCCDDDDEEFF"
seed zero-size "{$(entry e F32 '[0,3]' 0 0),$(entry a U8 '[3]' 0 3)}" "abc"
seed padded "{$(entry a I64 '[1]' 0 8)}        " "12345678"
seed empty-header "{}"
seed misaligned "{$(entry a U8 '[1]' 0 1),$(entry b F32 '[1]' 1 5),$(entry c BF16 '[1]' 5 7)}" \
  "abcdefg"
seed overlap "{$(entry a F32 '[2]' 0 8),$(entry b F32 '[2]' 4 12)}" "aaaabbbbcccc"
seed hole "{$(entry a F32 '[1]' 0 4),$(entry b F32 '[1]' 8 12)}" "aaaabbbbcccc"
seed mismatch "{$(entry a F64 '[2,3]' 0 20)}" "aaaabbbbccccddddeeee"
seed bad-json '{"a": {"dtype": "F32", "shape": [1, "data_offsets": [0, 4]}' "aaaa"
seed duplicate "{$(entry a F32 '[1]' 0 4),$(entry a F32 '[1]' 0 4)}" "aaaa"
printf 'short' > "${corpus}/seed-short"
{ le64 1000; printf '{}'; } > "${corpus}/seed-length-too-long"

cat > "${dict}" <<'DICT'
"{"
"}"
"["
"]"
":"
","
"\"dtype\""
"\"shape\""
"\"data_offsets\""
"\"__metadata__\""
"\"BOOL\""
"\"U8\""
"\"I8\""
"\"U16\""
"\"I16\""
"\"U32\""
"\"I32\""
"\"U64\""
"\"I64\""
"\"F8_E4M3\""
"\"F8_E5M2\""
"\"F16\""
"\"BF16\""
"\"F32\""
"\"F64\""
"18446744073709551615"
"9223372036854775807"
"-1"
"1.5"
"1e3"
"true"
"null"
DICT

# Exits non-zero (and set -e stops us) when libFuzzer reports a crash, leak or timeout.
"${build}/tests/fuzz/safetensors_fuzz" \
  -max_total_time="${seconds}" -timeout=10 -print_final_stats=1 \
  -dict="${dict}" -artifact_prefix="${artifacts}/" "${corpus}"
echo "fuzz.sh: no crash in ${seconds} s"
