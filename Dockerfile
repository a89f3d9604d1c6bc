# syntax=docker/dockerfile:1
# loki-event-sync image: python -m job, as a non-root user on a read-only root filesystem.
#
#   docker buildx build --platform linux/amd64,linux/arm64 -t ghcr.io/<owner>/loki-event-sync:v0.2.0 .
#
# Releases are built by .github/workflows/release.yml (both platforms, SBOM, provenance, signed).
#
# Base: Python 3.11 (the minor the tests run on), Debian 13 slim, pinned by its multi-arch index
# digest so a rebuild gets the same bytes. This digest could not be checked against Docker Hub from
# the machine it was written on (no registry access there): it is the python:3.11-slim-trixie index
# digest cited by many public repositories in late 2026. Refresh it, and check it, with
#   docker buildx imagetools inspect python:3.11-slim-trixie     # "Digest:" is the index digest
# and use the same digest in both stages: the venv's python is a symlink into the base image.

FROM python:3.11-slim-trixie@sha256:9534e5a8e315485d4061ed659af0fd78a284c015f9b73661b41d6bab25604534 AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
# --without-pip: the runtime venv never holds pip or setuptools; the base image's pip installs into it.
RUN python -m venv --without-pip /opt/venv
COPY requirements.lock /tmp/requirements.lock
# Every package, transitive ones included, is pinned and hash-checked (requirements.lock, made by
# pip-compile --generate-hashes from requirements.txt); --no-deps so nothing unlocked slips in.
RUN python -m pip --python /opt/venv/bin/python install --require-hashes --no-deps --only-binary=:all: \
        -r /tmp/requirements.lock \
 && python -m pip --python /opt/venv/bin/python check
COPY job/ /app/job/
COPY state/ /app/state/
# Compiled here: the pod's root filesystem is read-only, so without this every run would compile
# job/ and state/ again (0.01-0.03 CPU-s a run). --invalidation-mode unchecked-hash: the .pyc files
# stay valid whatever mtimes the layers end up with.
# Then owned by root, readable and traversable by everyone, writable by no one else: any UID works,
# including OpenShift's arbitrary UID with group 0.
RUN python -m compileall -q --invalidation-mode unchecked-hash /app/job /app/state \
 && chmod -R a+rX,go-w /app /opt/venv

FROM python:3.11-slim-trixie@sha256:9534e5a8e315485d4061ed659af0fd78a284c015f9b73661b41d6bab25604534
LABEL org.opencontainers.image.title="loki-event-sync" \
      org.opencontainers.image.description="Ships Kubernetes Events to Grafana Loki once each, from a CronJob" \
      org.opencontainers.image.version="0.2.0" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/loki-event-sync/loki-event-sync" \
      org.opencontainers.image.documentation="https://github.com/loki-event-sync/loki-event-sync#readme" \
      org.opencontainers.image.base.name="docker.io/library/python:3.11-slim-trixie"
# The base image's own pip, setuptools and wheel (and ensurepip's bundled copies) are build tools
# with advisories of their own; the job never installs anything at run time.
RUN python -m pip uninstall --yes --no-cache-dir pip setuptools wheel \
 && rm -rf /usr/local/lib/python3.11/ensurepip
# No .pyc files: the root filesystem is read-only in the pod, and writing them would fail anyway.
# Unbuffered output so the last log lines reach `kubectl logs` even when the pod is killed.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/venv/bin:$PATH \
    PYTHONPATH=/app
COPY --from=builder /opt/venv /opt/venv
COPY --from=builder /app /app
WORKDIR /app
# Numeric, so the kubelet can verify runAsNonRoot; group 0, as OpenShift runs an arbitrary UID.
# 65532 is the conventional "nonroot" uid (distroless). The manifests set no runAsUser.
USER 65532:0
ENTRYPOINT ["python", "-m", "job"]
CMD ["run"]
