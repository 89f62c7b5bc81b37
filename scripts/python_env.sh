#!/usr/bin/env bash
# Create or update the Python virtualenv used for the Hugging Face parity checks
# (python/*.py loaded with trust_remote_code, tests/python/check_golden.py).
#
# Usage:
#   scripts/python_env.sh                          # transformers 4.55.4 (what the published models name)
#   TRANSFORMERS_VERSION=latest scripts/python_env.sh
#   TRANSFORMERS_VERSION=4.57.1 scripts/python_env.sh
#
# Environment:
#   VENV_DIR              virtualenv path (default: <repo>/.venv-parity)
#   TRANSFORMERS_VERSION  4.55.4 (default), "latest", or any version on PyPI
#   PIP_CACHE_DIR         pip's cache (default: ~/.cache/pip)
#   WHEELHOUSE            where the torch/nvidia wheels are kept between venv rebuilds
#                         (default: $PIP_CACHE_DIR/berthash-wheelhouse)
#   PYTHON                interpreter used to create the venv (default: python3, needs >= 3.10)
#
# Re-running with a ready venv only checks versions and returns in a few seconds.
#
# Why torch is installed the way it is:
#   PyPI has no CPU-only torch wheel for Linux x86_64 (those live on PyTorch's own
#   index, which is not reachable here). The PyPI wheel is a CUDA build whose
#   libraries are linked at load time against CUDA libraries shipped as separate
#   nvidia-* wheels, so `pip install torch --no-deps` alone fails at `import torch`
#   (libcudart/libcublas/... not found). A plain `pip install torch==2.11.0` pulls
#   ~2.6 GB of wheels. Instead we install torch --no-deps plus only the nvidia-*
#   wheels its shared libraries name in DT_NEEDED (checked with readelf for this
#   exact version), and skip what is only dlopen'ed on GPU use: triton (179 MB),
#   cusolver (191 MB, used by the lazily loaded libtorch_cuda_linalg), nvrtc (86 MB),
#   nvtx, cuda-bindings/cuda-toolkit. That is ~2.1 GB to download and works on CPU.
#   torch 2.11.0 is pinned: it is the first release whose wheel shrank to ~0.5 GB
#   (CUDA 13 build; 2.8-2.10 wheels are 0.85 GB and 2.8.0 pulls 3.7 GB in full
#   against 2.6 GB here; later releases are about the same size as 2.11), and it
#   satisfies both transformers 4.55.4 (torch>=2.1) and 5.x (torch>=2.6).
#   The nvidia pins below are the exact versions torch 2.11.0's metadata requires;
#   change them together with TORCH_VERSION. `pip check` will report the skipped
#   packages as missing; that is expected (installs here pass --no-warn-conflicts).
#
# Why a wheelhouse besides pip's cache: the PyPI mirror reachable here answers
# without ETag/Last-Modified/Cache-Control headers, so pip's HTTP cache never stores
# anything. `pip download` into a folder of our own is what makes a rebuild of the
# venv skip the 2 GB download.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV_DIR="${VENV_DIR:-$REPO_ROOT/.venv-parity}"
TRANSFORMERS_VERSION="${TRANSFORMERS_VERSION:-4.55.4}"
export PIP_CACHE_DIR="${PIP_CACHE_DIR:-$HOME/.cache/pip}"
PYTHON="${PYTHON:-python3}"
WHEELHOUSE="${WHEELHOUSE:-$PIP_CACHE_DIR/berthash-wheelhouse}"

TORCH_VERSION=2.11.0
ACCELERATE_VERSION=1.10.1
TENSORBOARD_VERSION=2.21.0
SENTENCE_TRANSFORMERS_VERSION=5.1.2
ONNXRUNTIME_VERSION=1.32.0
ONNX_VERSION=1.23.2
# Load-time CUDA libraries of torch 2.11.0 (cu130 build), see the note above.
TORCH_CUDA_LIBS=(
  nvidia-cuda-runtime==13.0.96
  nvidia-cublas==13.1.0.3
  nvidia-cudnn-cu13==9.19.0.56
  nvidia-cufft==12.0.0.61
  nvidia-cufile==1.15.1.6
  nvidia-curand==10.4.0.35
  nvidia-cusparse==12.6.3.3
  nvidia-cusparselt-cu13==0.8.0
  nvidia-nccl-cu13==2.28.9
  nvidia-nvshmem-cu13==3.4.5
  nvidia-cuda-cupti==13.0.85
  nvidia-nvjitlink==13.0.88
)
# torch's pure-Python requirements (its metadata, minus the CUDA ones).
TORCH_PY_DEPS=(filelock "typing-extensions>=4.10.0" "sympy>=1.13.3" "networkx>=2.5.1" jinja2 "fsspec>=0.8.5")

if [[ ! -x "$VENV_DIR/bin/python" ]]; then
  echo "python_env: creating $VENV_DIR"
  "$PYTHON" -m venv "$VENV_DIR"
fi
PY="$VENV_DIR/bin/python"
PIP=("$PY" -m pip --disable-pip-version-check)

# Prints the installed version of a distribution, or nothing.
installed_version() {
  "$PY" - "$1" <<'EOF'
import sys
from importlib import metadata
try:
    print(metadata.version(sys.argv[1]))
except metadata.PackageNotFoundError:
    pass
EOF
}

if [[ "$(installed_version torch)" != "$TORCH_VERSION" ]] \
   || ! "$PY" -c 'import torch' >/dev/null 2>&1; then
  echo "python_env: installing torch $TORCH_VERSION (CPU use, CUDA libraries trimmed)"
  mkdir -p "$WHEELHOUSE"
  # Skips files already in the wheelhouse ("File was already downloaded").
  "${PIP[@]}" download -q --no-deps -d "$WHEELHOUSE" "torch==$TORCH_VERSION" "${TORCH_CUDA_LIBS[@]}"
  "${PIP[@]}" install -q "${TORCH_PY_DEPS[@]}"
  # --no-deps keeps pip from pulling the skipped CUDA packages back in.
  "${PIP[@]}" install -q --no-deps --no-index --find-links "$WHEELHOUSE" \
    "torch==$TORCH_VERSION" "${TORCH_CUDA_LIBS[@]}"
fi

if [[ "$TRANSFORMERS_VERSION" == "latest" ]]; then
  # -U asks the index once; it is a no-op when the newest release is installed.
  "${PIP[@]}" install -q --no-warn-conflicts -U transformers safetensors tokenizers numpy
elif [[ "$(installed_version transformers)" != "$TRANSFORMERS_VERSION" ]] \
     || [[ -z "$(installed_version safetensors)" ]] || [[ -z "$(installed_version numpy)" ]]; then
  # tokenizers is left to transformers' own pin (4.55.4 needs tokenizers<0.22).
  "${PIP[@]}" install -q --no-warn-conflicts "transformers==$TRANSFORMERS_VERSION" safetensors tokenizers numpy
fi

# accelerate: transformers.Trainer needs it (the parity suite's `--long` run_glue runs). With
# --no-deps, so that pip does not resolve torch's skipped CUDA packages back in; its other
# requirements come with transformers, but psutil.
if [[ -z "$(installed_version accelerate)" ]] || [[ -z "$(installed_version psutil)" ]]; then
  "${PIP[@]}" install -q --no-warn-conflicts --no-deps "accelerate==$ACCELERATE_VERSION" psutil
fi

# tensorboard: the parity suite reads berthash's event files back with its reader.
if [[ -z "$(installed_version tensorboard)" ]]; then
  "${PIP[@]}" install -q --no-warn-conflicts "tensorboard==$TENSORBOARD_VERSION"
fi

# sentence-transformers: the parity suite loads `export --sentence-transformers` dirs with it and
# trains embedding models with it. 5.1.2 is the newest release for transformers 4.x; with the
# newest transformers, the newest release. --no-deps for the same reason as accelerate.
if [[ "$TRANSFORMERS_VERSION" == "latest" ]]; then
  if [[ -z "$(installed_version sentence-transformers)" ]]; then
    "${PIP[@]}" install -q --no-warn-conflicts --no-deps -U sentence-transformers
  fi
elif [[ "$(installed_version sentence-transformers)" != "$SENTENCE_TRANSFORMERS_VERSION" ]]; then
  "${PIP[@]}" install -q --no-warn-conflicts --no-deps "sentence-transformers==$SENTENCE_TRANSFORMERS_VERSION"
fi
# Its trainer reads `datasets`; datasets' own requirements bring no torch, but would bring a
# huggingface-hub too new for transformers 4.x, hence the pin there.
HUB_PIN=()
[[ "$TRANSFORMERS_VERSION" == "latest" ]] || HUB_PIN=("huggingface-hub>=0.34.0,<1.0")
if [[ -z "$(installed_version scipy)" ]] || [[ -z "$(installed_version scikit-learn)" ]] \
   || [[ -z "$(installed_version pillow)" ]] || [[ -z "$(installed_version datasets)" ]]; then
  "${PIP[@]}" install -q --no-warn-conflicts scipy scikit-learn pillow tqdm datasets "${HUB_PIN[@]}"
fi

# onnxruntime and onnx: the parity suite's check of `export --onnx` and
# scripts/bench_vs_pytorch.py's onnxruntime side (torch.onnx.export, then an InferenceSession). Their requirements are light (flatbuffers, protobuf, ml_dtypes, numpy,
# packaging) and bring no torch, transformers or huggingface-hub.
if [[ -z "$(installed_version onnxruntime)" ]] || [[ -z "$(installed_version onnx)" ]]; then
  "${PIP[@]}" install -q --no-warn-conflicts "onnxruntime==$ONNXRUNTIME_VERSION" "onnx==$ONNX_VERSION"
fi

"$PY" - <<'EOF'
import accelerate, numpy, onnx, onnxruntime, safetensors, sentence_transformers, tokenizers, torch, transformers
print(f"python_env: torch {torch.__version__} (cuda available: {torch.cuda.is_available()}), "
      f"transformers {transformers.__version__}, tokenizers {tokenizers.__version__}, "
      f"safetensors {safetensors.__version__}, numpy {numpy.__version__}, "
      f"sentence-transformers {sentence_transformers.__version__}, "
      f"onnxruntime {onnxruntime.__version__}, onnx {onnx.__version__}")
EOF
echo "python_env: ready: $VENV_DIR (activate with: source $VENV_DIR/bin/activate)"
