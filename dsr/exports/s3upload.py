"""Export packages on S3 through boto3: an upload stream that carries server-side encryption on every request
(``exports_sse``: AES256 or aws:kms with ``exports_kms_key_id``) and makes the object appear only when it is
complete, and presigned GET links. The endpoint and credentials are the usual AWS_* environment variables
(``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL`` for an S3-compatible server)."""

from __future__ import annotations

from typing import Any

from dsr.delta import objects

__all__ = ["PART_BYTES", "S3Upload", "client", "exists", "presign", "split"]

PART_BYTES = 8 << 20  # a multipart upload's part (S3's minimum is 5 MiB, except the last)


client = objects.s3_client  # one home for the client and the split of an s3:// URI
split = objects.split


def sse_args(sse: str | None, kms_key_id: str | None) -> dict[str, str]:
    out: dict[str, str] = {}
    if sse:
        out["ServerSideEncryption"] = sse
    if kms_key_id:
        out["SSEKMSKeyId"] = kms_key_id
    return out


class S3Upload:
    """A write-only stream to one S3 object. Small objects go in one PUT at :meth:`close`; from ``PART_BYTES``
    on, a multipart upload (completed at close). :meth:`abort` drops everything: no half object is ever seen."""

    def __init__(self, uri: str, sse: str | None = None, kms_key_id: str | None = None,
                 part_bytes: int = PART_BYTES) -> None:
        self._s3 = client()
        self.bucket, self.key = split(uri)
        self._extra = sse_args(sse, kms_key_id)
        self._part_bytes = part_bytes
        self._buf = bytearray()
        self._upload_id: str | None = None
        self._parts: list[dict[str, Any]] = []

    def write(self, data: bytes) -> int:
        self._buf += data
        while len(self._buf) >= self._part_bytes * 2:  # keep a full part back: the last part may be small
            self._send(bytes(self._buf[:self._part_bytes]))
            del self._buf[:self._part_bytes]
        return len(data)

    def flush(self) -> None:
        return None

    def _send(self, body: bytes) -> None:
        if self._upload_id is None:
            made = self._s3.create_multipart_upload(Bucket=self.bucket, Key=self.key, **self._extra)
            self._upload_id = str(made["UploadId"])
        n = len(self._parts) + 1
        got = self._s3.upload_part(Bucket=self.bucket, Key=self.key, UploadId=self._upload_id, PartNumber=n,
                                   Body=body)
        self._parts.append({"PartNumber": n, "ETag": got["ETag"]})

    def close(self) -> None:
        if self._upload_id is None:
            self._s3.put_object(Bucket=self.bucket, Key=self.key, Body=bytes(self._buf), **self._extra)
        else:
            self._send(bytes(self._buf))
            self._s3.complete_multipart_upload(Bucket=self.bucket, Key=self.key, UploadId=self._upload_id,
                                               MultipartUpload={"Parts": self._parts})
        self._buf = bytearray()

    def abort(self) -> None:
        if self._upload_id is not None:
            self._s3.abort_multipart_upload(Bucket=self.bucket, Key=self.key, UploadId=self._upload_id)
            self._upload_id = None
        self._buf = bytearray()


def presign(uri: str, ttl_seconds: int) -> str:
    """A presigned GET URL (SigV4: ``X-Amz-Expires`` is the TTL) for the object at ``uri``."""
    bucket, key = split(uri)
    return str(client().generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": key},
                                               ExpiresIn=int(ttl_seconds)))


def exists(uri: str) -> bool:
    """Whether the object at ``uri`` is there (a HEAD request): False when S3 answers 404; any other failure
    (no such bucket, no access, no answer) raises ``InputError`` in one line."""
    from botocore.exceptions import BotoCoreError, ClientError

    from dsr.errors import InputError

    bucket, key = split(uri)
    try:
        client().head_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code in ("404", "NoSuchKey", "NotFound"):
            return False
        raise InputError(f"S3 refused to look up {uri} ({code or type(exc).__name__})") from None
    except BotoCoreError as exc:
        raise InputError(f"cannot reach S3 to look up {uri} ({type(exc).__name__})") from None
    return True
