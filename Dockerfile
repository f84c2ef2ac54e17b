# syntax=docker/dockerfile:1.7
# ktune's two images, one build:
#   docker build --target operator -t ghcr.io/ktune/operator:0.1.0 .   # the operator: slim Python, no torch
#     (so no gp sampler on a cluster: PyPI's torch would add 5.3 GB to its 0.55 GB venv; scipy for qmc is in)
#   docker build --target trainer  -t ghcr.io/ktune/trainer:0.1.0 .    # the reference trainer: CUDA-capable torch
# Base images are pinned to exact tags; pin digests too (image@sha256:...) with --build-arg in release builds.
ARG PYTHON_IMAGE=python:3.11.13-slim-bookworm
ARG TORCH_IMAGE=pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime

# --- the ktune wheel (operator and trainer packages in one distribution) ---
FROM ${PYTHON_IMAGE} AS wheel
WORKDIR /src
COPY pyproject.toml README.md ./
COPY operator/ktune operator/ktune
COPY trainer/ktune_trainer trainer/ktune_trainer
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

# --- the operator's virtual environment, built apart so that the final stage holds no pip cache ---
FROM ${PYTHON_IMAGE} AS operator-venv
RUN --mount=type=bind,from=wheel,source=/wheels,target=/wheels \
    python -m venv /opt/ktune \
    && /opt/ktune/bin/pip install --no-cache-dir /wheels/ktune-*.whl \
    && /opt/ktune/bin/pip uninstall --yes pip

# --- operator: `ktune operator`, serving Prometheus metrics on 9090 ---
FROM ${PYTHON_IMAGE} AS operator
RUN groupadd --gid 10001 ktune \
    && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /tmp --shell /usr/sbin/nologin ktune
COPY --from=operator-venv /opt/ktune /opt/ktune
ENV PATH=/opt/ktune/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
USER 10001:10001
EXPOSE 9090
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9090/metrics', timeout=4)"]
ENTRYPOINT ["ktune"]
CMD ["operator", "--metrics-port=9090"]

# --- trainer: `ktune-trainer`, one trial per pod, metrics on 9100 ---
FROM ${TORCH_IMAGE} AS trainer
RUN groupadd --gid 10001 ktune \
    && useradd --uid 10001 --gid 10001 --create-home --home-dir /home/ktune --shell /usr/sbin/nologin ktune
# torch comes with the base image; pip adds transformers, optuna and the rest of ktune[trainer].
# DL3013: the one package named is this build's own wheel; its dependencies are bounded in pyproject.toml.
# hadolint ignore=DL3013
RUN --mount=type=bind,from=wheel,source=/wheels,target=/wheels \
    WHEEL="$(find /wheels -name 'ktune-*.whl')" \
    && pip install --no-cache-dir "${WHEEL}[trainer]"
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HF_HOME=/home/ktune/.cache/huggingface
WORKDIR /home/ktune
USER 10001:10001
EXPOSE 9100
# A trial is a batch process: its pod's exit code is its health, so no HEALTHCHECK.
HEALTHCHECK NONE
ENTRYPOINT ["ktune-trainer"]
CMD ["train", "--help"]
