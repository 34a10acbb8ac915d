# Airflow 3.3.2 with crawlmill installed, for the DAG in dags/ (crawlmill_pipeline: each stage a Ray job).
# Build from the repository root (no Docker engine runs in this project's CI: the file is linted, not built):
#   docker build -f docker/airflow.Dockerfile -t crawlmill-airflow:0.1.0 .
# docker/compose.yaml runs it as `airflow standalone` with dags/ mounted at /opt/airflow/dags. The DAG reads
# the stage list from crawlmill and submits jobs with ray[default]'s JobSubmissionClient, which sends the
# cluster's token from RAY_AUTH_TOKEN (set RAY_AUTH_MODE=token and RAY_AUTH_TOKEN in the container).
# Same base, torch and constraints as docker/ray-worker.Dockerfile, so the DAG's crawlmill is the workers'.
FROM python:3.11.7-slim-bookworm

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    RAY_USAGE_STATS_ENABLED=0 \
    PYTHONUNBUFFERED=1 \
    AIRFLOW_HOME=/opt/airflow \
    AIRFLOW__CORE__DAGS_FOLDER=/opt/airflow/dags \
    AIRFLOW__CORE__LOAD_EXAMPLES=False

# libmagic: datatrove's readers import python-magic (the pipeline extra is imported by the DAG's stage list).
RUN apt-get update \
    && apt-get install -y --no-install-recommends libmagic1=1:5.44-3 \
    && rm -rf /var/lib/apt/lists/*

RUN useradd --create-home --uid 1000 crawlmill \
    && mkdir -p /opt/airflow/dags /shared \
    && chown -R 1000:1000 /opt/airflow /shared
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
RUN pip install -c constraints.txt ".[pipeline,airflow,s3]"

USER 1000
WORKDIR /opt/airflow
EXPOSE 8080
CMD ["airflow", "standalone"]
