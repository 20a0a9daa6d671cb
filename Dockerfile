# One replica of the demo: `python -m server` (uvicorn) on port 8000, CPU only.
#   docker build -t xai-live .        (with registry access; see docs/deployment.md)
#   make image                        (without: a local Debian base and the local torch wheel)
#
# Build with BuildKit (DOCKER_BUILDKIT=1, or `docker buildx build`): the CA bundle of a
# TLS-intercepting proxy comes in as a build secret, mounted only while pip runs:
#   --secret id=ca,src=/etc/ssl/certs/ca-certificates.crt
# No `# syntax=` line: it would pull a Dockerfile frontend image from a registry; the
# built-in frontend of Docker >= 20.10 has RUN --mount.

# Any image with Python 3.11 and its venv module as `python`: the official one, or
# Debian's python3 on a locally made base (deploy/docker/python.Dockerfile).
ARG PYTHON_IMAGE=python:3.11-slim-bookworm
# Where the CPU-only torch 2.13.0 comes from: PyTorch's CPU index by default. PyPI's
# Linux torch is the CUDA build (~20 nvidia-* packages, several GB). Without that
# index, put the wheel in an image (`make image` imports pip's find-links folder as
# one) and pass TORCH_WHEELS_IMAGE=that image, TORCH_PIP_ARGS="--find-links /wheels".
ARG TORCH_WHEELS_IMAGE=scratch
ARG TORCH_PIP_ARGS="--index-url https://download.pytorch.org/whl/cpu"

FROM ${TORCH_WHEELS_IMAGE} AS torch-wheels

# ---- stage 1: the virtualenv with every runtime dependency --------------------------
FROM ${PYTHON_IMAGE} AS dependencies
ARG TORCH_PIP_ARGS
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/venv/bin:$PATH
RUN python -m venv /opt/venv
WORKDIR /build
COPY constraints.txt ./
# torch first, on a layer of its own (it depends on constraints.txt only, so an
# edit of pyproject.toml does not reinstall it), from TORCH_PIP_ARGS. The CPU
# build's version "2.13.0+cpu" satisfies constraints.txt's `torch==2.13.0`
# (PEP 440: a specifier without a local label ignores the candidate's "+cpu")
# and sorts above PyPI's plain 2.13.0.
# PIP_CERT only when the secret was given: pip refuses a missing bundle file.
RUN --mount=type=bind,from=torch-wheels,target=/wheels \
    --mount=type=secret,id=ca \
    if [ -f /run/secrets/ca ]; then export PIP_CERT=/run/secrets/ca; fi \
 && pip install ${TORCH_PIP_ARGS} -c constraints.txt "torch==2.13.0"
COPY pyproject.toml ./
# Then the runtime dependencies, read from pyproject.toml so there is one list
# and no requirements.txt to keep in step. torch is already installed and
# satisfies every requirement on it, so pip does not fetch PyPI's CUDA build.
# The project itself is not installed: the source is copied below and run
# from /app, so server/ finds static/ and model_store/ next to it.
RUN --mount=type=secret,id=ca \
    if [ -f /run/secrets/ca ]; then export PIP_CERT=/run/secrets/ca; fi \
 && python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > requirements.txt \
 && pip install -c constraints.txt -r requirements.txt \
 && python -c "import torch; assert not torch.version.cuda, torch.version.cuda; print('torch', torch.__version__)"

# ---- stage 2: the runtime image ----------------------------------------------------
FROM ${PYTHON_IMAGE}
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    MPLCONFIGDIR=/tmp/matplotlib \
    DATA_DIR=/tmp/xai-data \
    HOST=0.0.0.0 \
    PORT=8000
# An unprivileged user with no home and no shell; the code stays owned by root,
# so the process cannot rewrite it (or the shipped models).
RUN groupadd --system --gid 10001 xai \
 && useradd --system --uid 10001 --gid xai --home-dir /nonexistent --no-create-home \
        --shell /usr/sbin/nologin xai
COPY --from=dependencies /opt/venv /opt/venv
WORKDIR /app
# The shipped models (model_store/manifest.json + weights/) travel inside
# model_store/: the image needs no download at start-up.
COPY model_store ./model_store
COPY server ./server
COPY static ./static
USER xai
EXPOSE 8000
# Liveness only (the process serves HTTP); readiness (/readyz) is checked by
# compose and by the proxy's retries. A Python one-liner: the slim image has no curl.
HEALTHCHECK --interval=15s --timeout=3s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, sys, urllib.request; sys.exit(urllib.request.urlopen(f\"http://127.0.0.1:{os.environ.get('PORT', '8000')}/healthz\", timeout=2).status != 200)"]
# Exec form: python is PID 1 and receives SIGTERM itself (a shell form would
# wrap it in /bin/sh, which does not forward the signal). The server then
# closes every WebSocket with 1012 and exits within SHUTDOWN_GRACE_S.
STOPSIGNAL SIGTERM
CMD ["python", "-m", "server"]
