"""A checkpoint in S3 (or MinIO), guarded by conditional writes on the ETag."""
from __future__ import annotations

from typing import Any

from state.base import StoreConflict, StoreError


class S3Store:
    max_bytes: int | None = None

    def __init__(self, bucket: str, key: str, endpoint_url: str | None = None) -> None:
        import boto3  # deferred: only S3 users pay for importing boto3

        self.bucket = bucket
        self.key = key
        self.name = f"s3://{bucket}/{key}"
        self.client = boto3.client("s3", endpoint_url=endpoint_url or None)

    def load(self) -> tuple[bytes | None, str | None]:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            obj = self.client.get_object(Bucket=self.bucket, Key=self.key)
            return obj["Body"].read(), obj["ETag"]
        except ClientError as exc:
            if _code(exc) in ("NoSuchKey", "404"):
                return None, None
            raise StoreError(self._explain("read", exc)) from None
        except BotoCoreError as exc:
            raise StoreError(f"cannot read checkpoint {self.name}: {exc}") from None

    def save(self, data: bytes, version: str | None) -> str:
        from botocore.exceptions import BotoCoreError, ClientError

        cond: dict[str, Any] = {"IfNoneMatch": "*"} if version is None else {"IfMatch": version}
        try:
            resp = self.client.put_object(Bucket=self.bucket, Key=self.key, Body=data, **cond)
        except ClientError as exc:
            if _code(exc) in ("PreconditionFailed", "412", "ConditionalRequestConflict", "409"):
                raise StoreConflict(
                    f"checkpoint {self.name} was changed by someone else since it was read; not overwriting it"
                ) from None
            raise StoreError(self._explain("write", exc)) from None
        except BotoCoreError as exc:
            raise StoreError(f"cannot write checkpoint {self.name}: {exc}") from None
        return str(resp["ETag"])

    def _explain(self, verb: str, exc: Any) -> str:
        code = _code(exc)
        hint = {
            "NoSuchBucket": "; create the bucket or fix --state",
            "AccessDenied": f"; allow s3:GetObject and s3:PutObject on {self.name}",
            "403": f"; allow s3:GetObject and s3:PutObject on {self.name}",
        }.get(code, "")
        return f"cannot {verb} checkpoint {self.name}: {code}: {exc.response.get('Error', {}).get('Message', '')}{hint}"


def _code(exc: Any) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))
