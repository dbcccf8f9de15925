#!/usr/bin/env bash
# Installs every Debian 12 package kiln needs to build, test and export its demo models, and the
# npm packages the deploy tests validate the Kubernetes manifests with.
# Idempotent: packages already present are skipped, and nothing is installed when all are there.
# Run as root (or with sudo available).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"

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
  # the naive baseline server of bench.sh step 14 and its tests (scripts/naive_server.py):
  # gRPC, protobuf messages generated at run time by protoc, and the SentencePiece tokenizer
  python3-grpcio python3-protobuf python3-sentencepiece
  # libFuzzer target (optional, scripts/fuzz.sh)
  clang
  # systemd-analyze verify, for the unit in deploy/systemd
  systemd
  # the gRPC load balancer in front of replicas (kiln-bench lb and its tests)
  nginx
  # the TLS tests make their CA and certificates with the openssl command
  openssl
)
# Node.js and npm validate deploy/kubernetes (tests/deploy/k8s). A node and npm already on the
# PATH are used as they are, wherever they came from (another vendor's nodejs package bundles its
# own npm and conflicts with Debian's).
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  PACKAGES+=(nodejs npm)
fi

# The npm packages of tests/deploy/k8s, exactly as its package-lock.json pins them; skipped while
# the lock file is the one last installed.
install_npm_packages() {
  local dir="$ROOT/tests/deploy/k8s"
  local stamp="$dir/node_modules/.kiln-installed-lock.json"
  if cmp -s "$dir/package-lock.json" "$stamp"; then
    echo "setup: npm packages of tests/deploy/k8s present"
    return
  fi
  echo "setup: installing the npm packages of tests/deploy/k8s"
  npm ci --prefix "$dir" --no-audit --no-fund
  cp "$dir/package-lock.json" "$stamp"
}

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all ${#PACKAGES[@]} packages present"
  install_npm_packages
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
# Installed here only for the tests, which start their own on loopback: do not leave a Prometheus
# server or an nginx enabled to start at boot.
for daemon in prometheus nginx; do
  if [[ " ${missing[*]} " == *" $daemon "* ]] && command -v systemctl >/dev/null; then
    $SUDO systemctl disable "$daemon" >/dev/null 2>&1 || true
  fi
done
install_npm_packages
echo "setup: done"
