# syntax=docker/dockerfile:1.7
# rollbot's container: the bot (Python) plus the pinned, checksum-verified helm binary it runs for Helm targets.
#
#   docker build -t ghcr.io/example/rollbot:0.1.0 .                        # amd64 or arm64 (TARGETARCH)
#   docker buildx build --platform linux/amd64,linux/arm64 -t … --push .
#
# Three stages: `helm` downloads and verifies helm, `build` installs rollbot into a virtualenv, and the final
# image copies just those two onto the slim Python base: no compiler, no curl, no pip cache, no tests or sandbox.
# Runs as uid/gid 10001 and works with a read-only root filesystem (write only to /tmp; see the Helm chart).
# Pin the base by digest for reproducible builds: --build-arg PYTHON_IMAGE=python:3.11.11-slim-bookworm@sha256:…

ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm

# ---- helm: pinned version, verified against the sha256 published with the release ------------------------
FROM ${PYTHON_IMAGE} AS helm
ARG TARGETARCH
# https://github.com/helm/helm/releases/tag/v4.1.4 (commit 05fa379), the version tests/ and .tools/bin use.
ARG HELM_VERSION=v4.1.4
ARG HELM_SHA256_AMD64=70b2c30a19da4db264dfd68c8a3664e05093a361cefd89572ffb36f8abfa3d09
ARG HELM_SHA256_ARM64=13d03672be289045d2ff00e4e345d61de1c6f21c1257a45955a30e8ae036d8f1
WORKDIR /helm
RUN set -eu; \
    arch="${TARGETARCH:-$(dpkg --print-architecture)}"; \
    case "$arch" in \
      amd64) sha="$HELM_SHA256_AMD64" ;; \
      arm64) sha="$HELM_SHA256_ARM64" ;; \
      *) echo "no pinned helm checksum for architecture $arch" >&2; exit 1 ;; \
    esac; \
    python -c "import sys, urllib.request; urllib.request.urlretrieve(sys.argv[1], 'helm.tar.gz')" \
      "https://get.helm.sh/helm-${HELM_VERSION}-linux-${arch}.tar.gz"; \
    echo "${sha}  helm.tar.gz" | sha256sum -c -; \
    tar -xzf helm.tar.gz "linux-${arch}/helm"; \
    install -m 0755 "linux-${arch}/helm" /usr/local/bin/helm; \
    /usr/local/bin/helm version --short

# ---- build: rollbot and its runtime dependencies, pinned by requirements.lock ----------------------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/rollbot
WORKDIR /src
COPY pyproject.toml requirements.lock README.md ./
COPY bot ./bot
COPY handlers ./handlers
# Runtime dependencies only (not [dev]/[sandbox]), at the versions the test suite ran with.
# pip itself is removed afterwards: nothing installs packages at run time.
RUN /opt/rollbot/bin/pip install -c requirements.lock . \
 && /opt/rollbot/bin/python -m compileall -q /opt/rollbot/lib \
 && /opt/rollbot/bin/rollbot check-config --help >/dev/null \
 && /opt/rollbot/bin/python -m pip uninstall -y -q pip

# ---- final ----------------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="rollbot" \
      org.opencontainers.image.description="Slack ChatOps rollbacks with approvals (Helm, Kubernetes, ECS)" \
      org.opencontainers.image.source="https://github.com/example/rollbot" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN groupadd --system --gid 10001 rollbot \
 && useradd --system --uid 10001 --gid 10001 --home-dir /tmp --no-create-home --shell /usr/sbin/nologin rollbot
COPY --from=helm /usr/local/bin/helm /usr/local/bin/helm
COPY --from=build /opt/rollbot /opt/rollbot
ENV PATH=/opt/rollbot/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/tmp \
    HELM_CACHE_HOME=/tmp/helm/cache \
    HELM_CONFIG_HOME=/tmp/helm/config \
    HELM_DATA_HOME=/tmp/helm/data \
    ROLLBOT_HELM=/usr/local/bin/helm \
    ROLLBOT_PORT=3000
USER 10001:10001
EXPOSE 3000
ENTRYPOINT ["rollbot"]
CMD ["serve"]
