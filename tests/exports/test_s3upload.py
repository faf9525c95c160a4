"""S3 uploads of packages (dsr/exports/s3upload.py) on moto's server: a large package goes up in parts and
still carries its server-side encryption on read-back; an aborted upload leaves no object."""

from __future__ import annotations

import os
from typing import Any

import pytest

from dsr.exports.s3upload import S3Upload


@pytest.mark.s3
def test_a_multipart_upload_keeps_sse_and_every_byte(s3: Any) -> None:
    data = os.urandom(11 << 20)  # 11 MiB in 5 MiB parts: 5 + 6 (the last part takes the rest)
    up = S3Upload("s3://exp/big/req_a.zip", "aws:kms", "alias/x", part_bytes=5 << 20)
    for i in range(0, len(data), 1 << 20):
        up.write(data[i:i + (1 << 20)])
    assert up._upload_id is not None  # the parts went up before close
    with pytest.raises(s3.exceptions.ClientError):
        s3.head_object(Bucket="exp", Key="big/req_a.zip")  # nothing visible until it is complete
    up.close()
    head = s3.head_object(Bucket="exp", Key="big/req_a.zip")
    assert head["ServerSideEncryption"] == "aws:kms" and head["SSEKMSKeyId"].endswith("alias/x")
    assert s3.get_object(Bucket="exp", Key="big/req_a.zip")["Body"].read() == data


@pytest.mark.s3
def test_an_aborted_upload_leaves_nothing(s3: Any) -> None:
    up = S3Upload("s3://exp/gone/req_b.zip", "AES256", part_bytes=5 << 20)
    up.write(os.urandom(12 << 20))
    up.abort()
    assert s3.list_objects_v2(Bucket="exp", Prefix="gone/").get("KeyCount", 0) == 0
    assert s3.list_multipart_uploads(Bucket="exp", Prefix="gone/").get("Uploads", []) == []
