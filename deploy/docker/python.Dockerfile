# Python 3.11 with its venv module as `python`, on a Debian bookworm base: the stand-in
# for python:3.11-slim-bookworm where no image registry can be reached (`make image`).
#   docker build -f deploy/docker/python.Dockerfile --build-arg DEBIAN_IMAGE=xai-debian:bookworm -t xai-python:3.11-bookworm deploy/docker
ARG DEBIAN_IMAGE=debian:bookworm-slim
FROM ${DEBIAN_IMAGE}
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv python-is-python3 ca-certificates \
 && rm -rf /var/lib/apt/lists/*
CMD ["python"]
