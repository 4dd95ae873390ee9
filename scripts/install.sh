#!/usr/bin/env bash
# Set up mmtools in ./.venv on a fresh machine.
#   scripts/install.sh          what a user needs; auto flavour: gpu where `nvidia-smi` sees an NVIDIA GPU, cpu elsewhere
#   scripts/install.sh cpu      faiss-cpu and ONNX Runtime, no PyTorch: the main job runs on models already in ONNX
#   scripts/install.sh gpu      PyTorch's default (CUDA) build, faiss-gpu-cu12 and torchvision
#   scripts/install.sh --with-torch  (cpu) also PyTorch's CPU build (from PyTorch's CPU wheel index on Linux), for
#                               training, taggers, captioners, transcription and exporting models to ONNX
#   scripts/install.sh --dev    (with any flavour) also PyTorch and what the test suite needs: pytest, hypothesis,
#                               selenium, Milvus Lite, PyAV, the HTTP server, plots, LoRA, OCR and duplicates extras
# Where torch is installed, it comes first and is pinned, so nothing after it can replace it with another build.
# Environment: PYTHON (the interpreter to make the venv with), MMTOOLS_TORCH_VERSION (default below),
# MMTOOLS_TORCH_CPU_INDEX (PyTorch's CPU wheel index, or a mirror of it).
set -euo pipefail
cd "$(dirname "$0")/.."
usage="usage: scripts/install.sh [auto|cpu|gpu] [--with-torch] [--dev]"
flavour=auto
dev=""
with_torch=""
for arg in "$@"; do
  case "$arg" in
    auto|cpu|gpu) flavour="$arg" ;;
    --dev|dev) dev=",dev" ;;
    --with-torch) with_torch=1 ;;
    -h|--help) echo "$usage"; exit 0 ;;
    *) echo "$usage" >&2; exit 2 ;;
  esac
done
python="${PYTHON:-python3}"
torch_version="${MMTOOLS_TORCH_VERSION:-2.13.0}"
cpu_index="${MMTOOLS_TORCH_CPU_INDEX:-https://download.pytorch.org/whl/cpu}"

say() { echo "install.sh: $*" >&2; }

if [ "$flavour" = auto ]; then
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L 2>/dev/null | grep -q '^GPU'; then
    flavour=gpu
  else
    flavour=cpu
  fi
  say "no flavour given: $flavour ($( [ "$flavour" = gpu ] && echo 'an NVIDIA GPU is present' || echo 'no NVIDIA GPU found'))"
fi

[ -x .venv/bin/python ] || "$python" -m venv .venv
pip=(.venv/bin/python -m pip)
"${pip[@]}" install --quiet --upgrade pip

# True when $1 answers within a few seconds: an unreachable index must cost seconds, not pip's minutes of
# retries, before we fall back to the default one.
index_reachable() {
  .venv/bin/python - "$1" <<'PY'
import os, sys, urllib.parse, urllib.request
url = sys.argv[1].rstrip("/") + "/torch/"
if url.startswith("file:"):  # a local mirror
    sys.exit(0 if os.path.isdir(urllib.parse.urlsplit(url).path) else 1)
try:
    urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=5)
except Exception:
    sys.exit(1)
PY
}

installed_torch() { .venv/bin/python -c "import torch; print(torch.__version__)" 2>/dev/null || true; }

# The tests build tiny models with torch; the GPU flavour runs its encoders on it.
if [ -n "$dev" ] || [ "$flavour" = gpu ]; then with_torch=1; fi
constraints="$(mktemp)"; trap 'rm -f "$constraints"' EXIT
have="$(installed_torch)"
if [ -z "$with_torch" ]; then
  : # the main job runs on ONNX Runtime: no torch (a torch already in .venv is left as it is)
elif [ "$flavour" = cpu ] && [ "$(uname -s)" = Linux ] && [[ "$have" != "$torch_version"* ]]; then
  # On Linux the default index's torch is a CUDA build with several GB of NVIDIA libraries; the CPU index
  # has the same version without them. (macOS wheels on the default index are already CPU/MPS builds.)
  if index_reachable "$cpu_index" && \
     "${pip[@]}" install --quiet --index-url "$cpu_index" "torch==${torch_version}"; then
    say "torch ${torch_version}: CPU build from $cpu_index"
  else
    say "PyTorch's CPU index ($cpu_index) cannot be reached: installing torch ${torch_version} from the default index"
  fi
fi
if [ -n "$with_torch" ]; then
  "${pip[@]}" install --quiet "torch==${torch_version}"
  echo "torch==${torch_version}" > "$constraints"
fi
if [ "$flavour" = gpu ]; then
  "${pip[@]}" uninstall --quiet --yes faiss-cpu 2>/dev/null || true
else
  "${pip[@]}" uninstall --quiet --yes faiss-gpu faiss-gpu-cu12 torchvision 2>/dev/null || true
fi
# The CPU flavour runs its encoders through ONNX Runtime (the onnx extra); torch, where wanted, with the onnx
# package its exports need (the torch extra). A user's install holds no test tools; --dev adds them.
# ocr: the text detector and the in-process recogniser.
extras="${flavour},ocr${dev}"; [ "$flavour" = cpu ] && extras="cpu,onnx,ocr${dev}"
[ -n "$with_torch" ] && extras="${extras},torch"
"${pip[@]}" install --quiet --constraint "$constraints" -e ".[${extras}]"
# Tesseract for `mmtools ocr`, from the system's packages where this user may install them (else a hint).
scripts/install-system.sh ocr || say "mmtools ocr needs Tesseract with Vietnamese data (see above); everything else works without it"
torch_now="$(installed_torch)"
torch_said="torch ${torch_now}"
[ -n "$torch_now" ] || torch_said="no PyTorch: the main job runs on ONNX Runtime; scripts/install.sh --with-torch adds it"
say "mmtools installed in .venv ($flavour${dev:+ with the test tools}, $torch_said): $(.venv/bin/mmtools --version)"
