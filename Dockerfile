# syntax=docker/dockerfile:1
# The mtls-operator image, published as ghcr.io/mtls-operator/mtls-operator:0.1.0:
#
#     docker build -t ghcr.io/mtls-operator/mtls-operator:0.1.0 .
#
# Non-root (65532), no shell tools beyond the base's, every Python dependency
# pinned by version and hash (requirements.lock, `make lock`), and no build
# tools in the final stage.

# Pinned by tag and by the digest of the tag's multi-architecture index, so a
# rebuild gets the same base on every platform. To move to a newer patch
# release, update both:
#     docker buildx imagetools inspect python:3.11.X-slim-bookworm
FROM python:3.11.14-slim-bookworm@sha256:65a93d69fa75478d554f4ad27c85c1e69fa184956261b4301ebaf6dbb0a3543d AS base

FROM base AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/mtls-operator
WORKDIR /src
# Dependencies first, in their own layer: they change less often than the code.
COPY requirements.lock build-requirements.lock ./
RUN /opt/mtls-operator/bin/pip install --no-cache-dir --require-hashes --no-deps \
        --requirement requirements.lock --requirement build-requirements.lock
COPY pyproject.toml README.md ./
COPY operator ./operator
# --no-deps: every dependency came from the lock above; --no-build-isolation:
# the wheel is built with the pinned setuptools just installed, nothing is
# fetched. The installer and the build backend are not needed at run time.
RUN /opt/mtls-operator/bin/pip install --no-cache-dir --no-deps --no-build-isolation . \
    && /opt/mtls-operator/bin/pip uninstall --yes pip setuptools \
    && /opt/mtls-operator/bin/mtls-operator --help > /dev/null

FROM base
LABEL org.opencontainers.image.title="mtls-operator" \
      org.opencontainers.image.description="Issues and renews mTLS certificates into Kubernetes Secrets" \
      org.opencontainers.image.version="0.1.0" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=builder /opt/mtls-operator /opt/mtls-operator
ENV PATH=/opt/mtls-operator/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# A numeric user, as runAsNonRoot can only verify numeric ones.
USER 65532:65532
EXPOSE 8080
# For `docker run`; Kubernetes ignores it and uses the Deployment's probes.
# Assumes the default --metrics-port 8080.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=4)"]
ENTRYPOINT ["mtls-operator"]
CMD ["run", "--all-namespaces"]
