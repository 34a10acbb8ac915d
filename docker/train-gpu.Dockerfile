# GPU training image: crawlmill's `train` stage (Megatron-Core with Transformer Engine) on NVIDIA GPUs.
# Build from the repository root (no Docker engine runs in this project's CI: the file is linted, not built):
#   docker build -f docker/train-gpu.Dockerfile -t crawlmill-train-gpu:0.1.0 .
# Run one node with torchrun, or submit to a Ray cluster made of this image (see docs/deploy.md):
#   docker run --gpus all --ipc=host -v /shared:/shared crawlmill-train-gpu:0.1.0 \
#     torchrun --nproc-per-node 8 -m crawlmill.cli train --config 1b --data /shared/shards --output /shared/runs/1b
#
# Base: NGC PyTorch 26.06 (Ubuntu 24.04, Python 3.12, CUDA 13.3, NVIDIA's torch build with Transformer
# Engine preinstalled). It is the image Megatron-Core 0.19's own CI builds on (Megatron-LM
# docker/.ngc_version.dev at tag core_v0.19.0). The build prints the torch and Transformer Engine versions
# it carries (gpu-stack.txt) and fails when Transformer Engine is not installed.
# megatron-core 0.19.2: the newest release (Python >= 3.12); crawlmill's train extra takes the newest
# release on 3.12+ (0.16.1 on 3.11). It requires only torch>=2.6, numpy and packaging.
# Ray 2.60.0 as on the CPU cluster; a Ray cluster needs one Python version on every node, so GPU Ray
# workers of this image (Python 3.12) form their own cluster (docker/k8s/rayjob-train.yaml); they do not
# join the Python 3.11 ray-worker cluster.
FROM nvcr.io/nvidia/pytorch:26.06-py3

# NGC images (since 25.03) constrain pip to /etc/pip/constraint.txt, every package's version as built; we
# turn that off (PIP_CONSTRAINT, pip's config files) and keep the GPU stack that matters, torch, Transformer
# Engine and numpy, by pinning exactly the installed versions (gpu-stack.txt below).
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_CONSTRAINT="" \
    PIP_CONFIG_FILE=/dev/null \
    RAY_USAGE_STATS_ENABLED=0 \
    PYTHONUNBUFFERED=1

SHELL ["/bin/bash", "-o", "pipefail", "-c"]

# Ubuntu 24.04 images already have uid 1000 (user "ubuntu"); create one only where it is missing.
RUN (id -u 1000 >/dev/null 2>&1 || useradd --create-home --uid 1000 crawlmill) \
    && mkdir -p /shared \
    && chown 1000:1000 /shared
WORKDIR /opt/crawlmill

COPY pyproject.toml constraints.txt README.md ./
COPY crawlmill ./crawlmill
COPY pipeline ./pipeline
COPY tokenizer ./tokenizer
COPY shards ./shards
COPY training ./training
COPY corpora ./corpora

# 1. Pin the base image's GPU stack so that nothing below replaces it (crawlmill's train extra says
#    torch==2.13.0, the PyPI build; here NVIDIA's torch build, which Transformer Engine is compiled against, stays).
# 2. crawlmill itself without dependencies, then its base and train dependencies (tests/docker checks these
#    pins equal pyproject.toml's), with megatron-core for Python 3.12 and Ray Train.
RUN python -c "from importlib.metadata import version; print(*(f'{n}=={version(n)}' for n in ('torch', 'transformer_engine', 'numpy')), sep=chr(10))" \
        > /opt/crawlmill/gpu-stack.txt
RUN cat /opt/crawlmill/gpu-stack.txt \
    && pip install --no-deps . \
    && pip install -c /opt/crawlmill/gpu-stack.txt \
        "pyarrow==26.0.1" "typer==0.29.2" "rich==15.0.0" "pyyaml==6.0.3" "fsspec==2026.9.0" "universal_pathlib==0.3.10" "s3fs==2026.9.0" \
        "megatron-core==0.19.2" "psutil==7.2.2" "tensorboard==2.21.0" "safetensors==0.8.0" \
        "ray[default,train]==2.60.0" \
    && python -c "import crawlmill.training.trainer, megatron.core; print('megatron-core', megatron.core.__version__)"

USER 1000
CMD ["crawlmill", "train", "--help"]
