"""Writes `cmet_client/client.py`, the synchronous client, from `cmet_client/aio.py`, the asynchronous one,
with unasync (the version pinned in the server's `dev` extra) and ruff, so the two cannot drift apart.

    python clients/python/unasync_client.py           # rewrite the file
    python clients/python/unasync_client.py --check   # exit 1 if it differs (the drift test does this)

Formatted as `generate_models.py` formats the models (`ruffed`).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from generate_models import ruffed, write_or_check  # the script beside this one (its folder is on sys.path)

HERE = Path(__file__).resolve().parent
SOURCE = HERE / "cmet_client" / "aio.py"
TARGET = HERE / "cmet_client" / "client.py"
RENAMED = {
    "AsyncClient": "Client",
    "_AsyncJobs": "_Jobs",
    "AsyncEdits": "Edits",
    "AsyncPreviews": "Previews",
    "AsyncBatches": "Batches",
    "AsyncUploads": "Uploads",
    "AsyncEmotions": "Emotions",
    "aclose": "close",
    "aread": "read",
    "aiter_bytes": "iter_bytes",
    "aiter_lines": "iter_lines",
    "asyncio": "time",
}
"""Names unasync does not know (besides `async`, `await`, `__aenter__`, `AsyncIterator`, ...): httpx's and
asyncio's async names, and this package's classes, which keep their plain names in the sync client."""
DOCSTRING = '''"""The synchronous client: `Client().edits.create(...)`, `.wait(...)`, `.download(...)`; `batches`,
`previews`, `uploads`, `emotions` likewise. Made from `aio.py` by `clients/python/unasync_client.py`: do not edit.
"""
'''


def render() -> str:
    """The sync client as unasync and ruff make it from `aio.py` today."""
    import unasync  # a dev tool: the installed client never imports it

    with tempfile.TemporaryDirectory() as scratch:
        source = Path(scratch) / "_async" / "client.py"
        source.parent.mkdir()
        shutil.copyfile(SOURCE, source)
        unasync.unasync_files([str(source)], [unasync.Rule("/_async/", "/_sync/", RENAMED)])
        text = (Path(scratch) / "_sync" / "client.py").read_text()
    end = text.index('"""', 3) + 4  # the module's docstring speaks of the async client
    return ruffed(DOCSTRING + text[end:], TARGET, "I,F401")


if __name__ == "__main__":
    write_or_check(render(), TARGET)
