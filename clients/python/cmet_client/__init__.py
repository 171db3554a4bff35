"""Python client of the cmet API.

    from cmet_client import Client
    job = Client().edits.run("talk.mp4", output="talk.happy.mp4", emotion="happy")   # CMET_API_KEY, CMET_SERVER

`Client` and `AsyncClient` have `edits`, `previews`, `uploads` and `emotions`; `webhooks.verify`
checks a delivery; every error is a `CmetError`, the server's with its problem `code`.
"""

from cmet_client import models, webhooks
from cmet_client.aio import AsyncClient
from cmet_client.client import Client
from cmet_client.errors import (
    ApiError,
    CmetError,
    InvalidRequestError,
    JobFailedError,
    WaitTimeoutError,
    WebhookVerificationError,
)

__all__ = [
    "ApiError",
    "AsyncClient",
    "Client",
    "CmetError",
    "InvalidRequestError",
    "JobFailedError",
    "WaitTimeoutError",
    "WebhookVerificationError",
    "models",
    "webhooks",
]
