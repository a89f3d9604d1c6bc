# syntax=docker/dockerfile:1
# loki-event-sync image: python -m job, running as a non-root user on a read-only root filesystem.
#
#   docker build -t ghcr.io/YOUR-ORG/loki-event-sync:0.1.0 .
#
# The base is pinned by tag. For reproducible builds pin it by digest as well, e.g.
#   docker buildx imagetools inspect python:3.11.7-slim-bookworm   # prints the index digest
#   FROM python:3.11.7-slim-bookworm@sha256:<digest> AS builder
# (use the same digest in both stages: the venv's python is a symlink into the base image).

FROM python:3.11.7-slim-bookworm AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
COPY requirements.txt /tmp/requirements.txt
# Only the runtime requirements (all pinned); the test tools in requirements-dev.txt stay out.
RUN /opt/venv/bin/pip install -r /tmp/requirements.txt \
 && /opt/venv/bin/pip check

FROM python:3.11.7-slim-bookworm
LABEL org.opencontainers.image.title="loki-event-sync" \
      org.opencontainers.image.description="Ships Kubernetes Events to Grafana Loki once each, from a CronJob"
# No .pyc files: the root filesystem is read-only in the pod, and writing them would fail anyway.
# Unbuffered output so the last log lines reach `kubectl logs` even when the pod is killed.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/venv/bin:$PATH \
    PYTHONPATH=/app
COPY --from=builder /opt/venv /opt/venv
WORKDIR /app
COPY job/ /app/job/
COPY state/ /app/state/
# 65532 is the conventional "nonroot" uid/gid (distroless); numeric so runAsNonRoot can verify it.
USER 65532:65532
ENTRYPOINT ["python", "-m", "job"]
CMD ["run"]
