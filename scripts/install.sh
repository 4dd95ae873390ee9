#!/usr/bin/env bash
# Set up mmtools in ./.venv on a fresh machine.
#   scripts/install.sh          CPU (FAISS cpu; what CI and laptops use)
#   scripts/install.sh gpu      CUDA machines: faiss-gpu-cu12 and torchvision instead of faiss-cpu
# torch is installed first and pinned, so nothing after it can replace it with another build.
set -euo pipefail
cd "$(dirname "$0")/.."
flavour="${1:-cpu}"
case "$flavour" in cpu|gpu) ;; *) echo "usage: scripts/install.sh [cpu|gpu]" >&2; exit 2 ;; esac
python="${PYTHON:-python3}"
torch_version="${MMTOOLS_TORCH_VERSION:-2.13.0}"

[ -x .venv/bin/python ] || "$python" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet "torch==${torch_version}"
constraints="$(mktemp)"; trap 'rm -f "$constraints"' EXIT
echo "torch==${torch_version}" > "$constraints"
if [ "$flavour" = gpu ]; then
  .venv/bin/python -m pip uninstall --quiet --yes faiss-cpu 2>/dev/null || true
else
  .venv/bin/python -m pip uninstall --quiet --yes faiss-gpu faiss-gpu-cu12 torchvision 2>/dev/null || true
fi
.venv/bin/python -m pip install --quiet --constraint "$constraints" -e ".[${flavour},dev]"
echo "mmtools installed in .venv ($flavour): $(.venv/bin/mmtools --version)" >&2
