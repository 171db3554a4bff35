"""Assets against the running service (S3 storage, a worker): an accepted edit runs on the asset as it
was, and assets are listed, read and deleted per key."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from cmet_core.media.sample import write_sample_clip
from cmet_core.media.video import probe
from tests.service.conftest import new_key
from tests.service.stack import Stack
from tests.service.test_flow import wait_final

PNG = b"\x89PNG\r\n\x1a\n" + bytes(2000)


@pytest.fixture
def own(stack: Stack) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=stack.api_url, headers={"Authorization": f"Bearer {new_key(stack, 'assets')}"}, timeout=60
    ) as client:
        yield client


def _upload(client: httpx.Client, content: bytes, filename: str = "talk.mp4") -> dict:  # type: ignore[type-arg]
    body = {"kind": "video", "size": len(content), "filename": filename, "content_type": "video/mp4"}
    made = client.post("/v1/uploads", json=body)
    assert made.status_code == 201, made.text
    put = httpx.put(made.json()["upload_url"], content=content, headers=made.json()["headers"], timeout=30)
    assert put.status_code == 200, put.text
    return made.json()  # type: ignore[no-any-return]


def test_a_new_put_after_acceptance_does_not_change_the_edit(own: httpx.Client, tmp_path: Path) -> None:
    clip = write_sample_clip(tmp_path / "talk.mp4", seconds=0.4).read_bytes()
    asset = _upload(own, clip)
    job = own.post("/v1/edits", json={"video_asset": asset["id"], "emotion": "happy"})
    assert job.status_code == 202, job.text
    png = PNG.ljust(len(clip), b"\0")  # the URL is signed for the clip's size
    put = httpx.put(asset["upload_url"], content=png, headers=asset["headers"], timeout=30)  # at once, as the issue did
    assert put.status_code == 200
    assert own.delete(f"/v1/uploads/{asset['id']}").status_code == 204  # and the asset gone before the job ran
    done = wait_final(own, job.json()["id"])
    assert done["state"] == "succeeded", done
    (tmp_path / "out.mp4").write_bytes(httpx.get(done["output_url"], timeout=30).content)
    assert probe(tmp_path / "out.mp4").frame_count == 10  # the mp4 it was given, not the PNG


def test_assets_are_listed_read_and_deleted(own: httpx.Client, stack: Stack, tmp_path: Path) -> None:
    clip = write_sample_clip(tmp_path / "talk.mp4", seconds=0.2).read_bytes()
    uploaded = [_upload(own, clip, f"{i}.mp4")["id"] for i in range(3)]
    empty = own.post("/v1/uploads", json={"kind": "speech", "size": 100}).json()["id"]
    first = own.get("/v1/uploads", params={"limit": 2}).json()
    rest = own.get("/v1/uploads", params={"limit": 2, "cursor": first["next_cursor"]}).json()
    listed = {a["id"]: a for a in first["data"] + rest["data"]}
    assert [a["id"] for a in first["data"] + rest["data"]] == [empty, *reversed(uploaded)]  # newest first
    assert rest["next_cursor"] is None
    assert (listed[empty]["uploaded"], listed[empty]["size"]) == (False, None)
    assert all(listed[i]["uploaded"] and listed[i]["size"] == len(clip) for i in uploaded)
    one = own.get(f"/v1/uploads/{uploaded[0]}").json()
    assert one["filename"] == "0.mp4" and one["content_type"] == "video/mp4" and one["last_used_at"] is None
    assert one["expires_at"] > one["created_at"]

    assert own.post("/v1/edits", json={"video_asset": uploaded[0], "emotion": "sad"}).status_code == 202
    used = own.get(f"/v1/uploads/{uploaded[0]}").json()
    assert used["last_used_at"] is not None and used["expires_at"] > one["expires_at"]  # retention starts again

    other = {"Authorization": f"Bearer {new_key(stack, 'other-assets')}"}
    for method in ("GET", "DELETE"):
        r = httpx.request(method, f"{stack.api_url}/v1/uploads/{uploaded[1]}", headers=other)
        assert (r.status_code, r.json()["code"]) == (404, "asset_not_found")
    assert httpx.get(f"{stack.api_url}/v1/uploads", headers=other).json()["data"] == []

    assert own.delete(f"/v1/uploads/{uploaded[1]}").status_code == 204
    assert own.get(f"/v1/uploads/{uploaded[1]}").status_code == 404
    assert own.delete(f"/v1/uploads/{uploaded[1]}").status_code == 404
    assert uploaded[1] not in {a["id"] for a in own.get("/v1/uploads", params={"limit": 100}).json()["data"]}
    again = own.post("/v1/edits", json={"video_asset": uploaded[1], "emotion": "sad"})
    assert (again.status_code, again.json()["code"]) == (404, "asset_not_found")
    assert own.get("/v1/uploads", params={"cursor": "nonsense"}).json()["code"] == "bad_cursor"
