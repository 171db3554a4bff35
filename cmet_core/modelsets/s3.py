"""The one way this project builds an S3 client, for the model registry here and the service's storage.

Model distribution (the hub pull, the registry) is the part of `cmet_core` that talks to the
network; the edit pipeline itself only sees local paths.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cmet_core.settings import CoreSettings

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client  # types only: boto3-stubs[s3], in the dev extra


def s3_client(settings: CoreSettings, endpoint_url: str | None = None) -> S3Client:
    """A boto3 S3 client with SigV4, bounded retries and timeouts; `endpoint_url` overrides the setting."""
    import boto3
    from botocore.config import Config

    config = Config(
        signature_version="s3v4", retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=5, read_timeout=60
    )
    return boto3.client(
        "s3",
        endpoint_url=endpoint_url or settings.s3_endpoint_url,
        region_name=settings.s3_region,
        aws_access_key_id=settings.s3_access_key_id,
        aws_secret_access_key=settings.s3_secret_access_key,
        config=config,
    )
