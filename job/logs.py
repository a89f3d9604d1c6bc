"""Logging: one JSON object per line (or text for a terminal), with secrets scrubbed at the edge."""
from __future__ import annotations

import json
import logging
import re
import sys
import time
from typing import IO, Iterable

# user:password@ up to the LAST '@' of the token: a password with a raw '@' must not leave its tail.
_URL_PASSWORD = re.compile(r"(?<=://)([^/@\s:]+):(\S+)@")
# What a gateway echoes back from the request in an error body: the Authorization header in any
# scheme's encoding, and the tenant header (a tenant too short to be a known secret is still one).
_AUTH_HEADER = re.compile(r"(?i)\b(basic|bearer)\s+[A-Za-z0-9+/=._~-]{4,}")
_TENANT_HEADER = re.compile(r"(?i)(x-scope-orgid[\"']?\s*[:=]\s*[\"']?)[^\s,\"';}\]]+")


class Redactor:
    """Removes known secret values, any user:password@ in URLs and echoed auth or tenant headers."""

    def __init__(self, secrets: Iterable[str]) -> None:
        self.secrets = sorted({s for s in secrets if s}, key=len, reverse=True)

    def add(self, secret: str) -> None:
        """Learn a secret found after start-up, such as the Kubernetes token from a kubeconfig."""
        if len(secret) >= 3 and secret not in self.secrets:
            self.secrets = sorted([*self.secrets, secret], key=len, reverse=True)

    def __call__(self, text: str) -> str:
        text = _URL_PASSWORD.sub(r"\1:***@", text)
        text = _AUTH_HEADER.sub(r"\1 ***", text)
        text = _TENANT_HEADER.sub(r"\1***", text)
        for s in self.secrets:
            text = text.replace(s, "***")
        return text


class _JsonFormatter(logging.Formatter):
    converter = staticmethod(time.gmtime)  # UTC, whatever the pod's TZ

    def format(self, record: logging.LogRecord) -> str:
        out = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        out.update(getattr(record, "fields", {}))
        return json.dumps(out, ensure_ascii=False, default=str)


class _TextFormatter(logging.Formatter):
    converter = staticmethod(time.gmtime)

    def format(self, record: logging.LogRecord) -> str:
        # Structured fields repeat the message for machines; a person reads the message alone.
        return f"{self.formatTime(record, '%H:%M:%S')} {record.levelname:<7} {record.getMessage()}"


class _RedactingHandler(logging.StreamHandler):
    def __init__(self, stream: IO[str], redact: Redactor) -> None:
        super().__init__(stream)
        self.redact = redact

    def format(self, record: logging.LogRecord) -> str:
        return self.redact(super().format(record))


def setup(fmt: str, level: str, redact: Redactor, stream: IO[str] | None = None) -> None:
    """Configure the root logger; called by main(), never at import time."""
    handler = _RedactingHandler(stream or sys.stderr, redact)
    handler.setFormatter(_JsonFormatter() if fmt == "json" else _TextFormatter())
    # On the handler too: the kubernetes client re-sets urllib3's logger to WARNING when it is built.
    handler.setLevel(level)
    root = logging.getLogger()
    for h in list(root.handlers):
        if isinstance(h, _RedactingHandler):
            root.removeHandler(h)
    root.addHandler(handler)
    root.setLevel(level)
    for noisy in ("urllib3", "kubernetes", "botocore", "boto3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
