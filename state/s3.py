"""A checkpoint in S3 (or MinIO), guarded by conditional writes on the ETag.

Only S3's own NoSuchKey answer means "no checkpoint yet". botocore names an error by its HTTP
status alone ("404", "502") when the body is not an S3 error document, which is what a proxy's or
a web server's HTML page gives: that is an error saying so, never an absent checkpoint. A missing
bucket (NoSuchBucket) is an error too, so `status` tells a typo from a first run.
"""
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
            if "ETag" not in obj:
                raise StoreError(f"cannot read checkpoint {self.name}: the answer has no ETag, so it is not from S3; "
                                 "is --s3-endpoint-url an S3 endpoint?")
            return obj["Body"].read(), obj["ETag"]
        except ClientError as exc:
            if _code(exc) == "NoSuchKey":
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
        if "ETag" not in resp:
            raise StoreError(f"cannot write checkpoint {self.name}: the answer has no ETag, so it is not from S3; "
                             "is --s3-endpoint-url an S3 endpoint?")
        return str(resp["ETag"])

    def _explain(self, verb: str, exc: Any) -> str:
        code = _code(exc)
        hint = {
            "NoSuchBucket": "; create the bucket or fix --state",
            "AccessDenied": f"; allow s3:GetObject and s3:PutObject on {self.name}",
            "403": f"; allow s3:GetObject and s3:PutObject on {self.name}",
        }.get(code, "")
        if code.isdigit() and not hint:  # no S3 error document: botocore could only read the status
            hint = " (not an S3 error answer: a proxy or web server in the way? check --s3-endpoint-url)"
        return f"cannot {verb} checkpoint {self.name}: {code}: {exc.response.get('Error', {}).get('Message', '')}{hint}"


def _code(exc: Any) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))
