#!/usr/bin/env bash
# Installs every Debian 12 package kiln needs to build, test and export its demo models.
# Idempotent: packages already present are skipped, and nothing runs when all are there.
# Run as root (or with sudo available).
set -euo pipefail

PACKAGES=(
  # toolchain
  build-essential cmake ninja-build pkg-config git
  # LibTorch (CPU) and a fast OpenMP BLAS for it (the reference BLAS is ~7x slower)
  libtorch-dev libopenblas0-openmp
  # gRPC, protobuf, Abseil, glog, Catch2 v2
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler libabsl-dev
  libgoogle-glog-dev libgflags-dev catch2 grpc-proto
  # systemd notify, JSON, HTTP metrics, tokenizer
  libsystemd-dev nlohmann-json3-dev libcpp-httplib-dev libsentencepiece-dev sentencepiece
  # Prometheus: the client library the metrics are kept in, and for the tests a real server,
  # promtool and Python's text-format parser
  prometheus-cpp-dev prometheus python3-prometheus-client
  # model export (Debian's python3 at /usr/bin/python3)
  python3-torch python3-torchvision
  # libFuzzer target (optional, scripts/fuzz.sh)
  clang
)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all ${#PACKAGES[@]} packages present"
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "setup: need root (or sudo) to install: ${missing[*]}" >&2; exit 1; }
  SUDO="sudo"
fi

echo "setup: installing ${#missing[@]} package(s): ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
# Packages such as prometheus start their daemon when installed. The tests start their own, on
# loopback, and stop them: keep invoke-rc.d from starting any while we install (policy-rc.d
# answer 101, "action forbidden"), unless the machine already has a policy of its own.
POLICY=/usr/sbin/policy-rc.d
if [ ! -e "$POLICY" ]; then
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$POLICY" >/dev/null
  $SUDO chmod 755 "$POLICY"
  trap '$SUDO rm -f "$POLICY"' EXIT
fi
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
# Installed here only for the tests: do not leave a Prometheus server enabled to start at boot.
if [[ " ${missing[*]} " == *" prometheus "* ]] && command -v systemctl >/dev/null; then
  $SUDO systemctl disable prometheus >/dev/null 2>&1 || true
fi
echo "setup: done"
