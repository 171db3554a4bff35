"""Batches against the running stack (PostgreSQL, Redis, Celery worker, S3): one request queues several
edits, each with its own options; the batch streams every edit's events and a final `batch`, sends a signed
`batch.completed`, is idempotent as a whole, counts as its edits against the quotas (refused whole, nothing
stored) and is invisible to other keys."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from cmet_core.media.sample import write_sample_clip
from tests.service.conftest import new_key_and_webhook_secret
from tests.service.receiver import webhook_receiver
from tests.service.stack import Stack, wait_until


def _client(stack: Stack, name: str, **limits: int) -> tuple[httpx.Client, str]:
    secret, webhook_secret = new_key_and_webhook_secret(stack, name, **limits)
    client = httpx.Client(base_url=stack.api_url, headers={"Authorization": f"Bearer {secret}"}, timeout=60)
    return client, webhook_secret


def _asset(client: httpx.Client, clip: Path) -> str:
    made = client.post("/v1/uploads", json={"kind": "video", "filename": clip.name, "content_type": "video/mp4"})
    assert made.status_code == 201, made.text
    put = httpx.put(made.json()["upload_url"], content=clip.read_bytes(), headers=made.json()["headers"], timeout=30)
    assert put.status_code == 200, put.text
    return str(made.json()["id"])


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_sample_clip(tmp_path_factory.mktemp("batch") / "talk.mp4", seconds=0.2)


def _events(client: httpx.Client, batch_id: str) -> list[tuple[str, dict[str, Any]]]:
    """Every event of the batch's stream, to its end."""
    seen: list[tuple[str, dict[str, Any]]] = []
    event = ""
    with client.stream("GET", f"/v1/batches/{batch_id}/events", timeout=httpx.Timeout(10, read=60)) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        for line in r.iter_lines():
            if line.startswith("event: "):
                event = line.removeprefix("event: ")
            elif line.startswith("data: "):
                seen.append((event, json.loads(line.removeprefix("data: "))))
    return seen


def test_a_batch_runs_streams_and_completes_once_and_is_idempotent(stack: Stack, clip: Path) -> None:
    client, webhook_secret = _client(stack, "batches", max_concurrent_jobs=10, max_submissions_per_minute=20)
    asset = _asset(client, clip)
    with webhook_receiver(webhook_secret) as hook:
        body = {
            "edits": [
                {"video_asset": asset, "emotion": "happy", "intensity": 1.2},
                {"video_asset": asset, "emotion": "sad", "webhook_url": hook.url, "webhook_events": ["edit.succeeded"]},
            ],
            "webhook_url": hook.url,
        }
        made = client.post("/v1/batches", json=body, headers={"Idempotency-Key": "batch-1"})
        assert made.status_code == 202, made.text
        batch = made.json()
        assert batch["id"].startswith("bat_") and made.headers["location"] == f"/v1/batches/{batch['id']}"
        assert batch["total"] == 2 and all(i.startswith("edt_") for i in batch["edit_ids"])

        again = client.post("/v1/batches", json=body, headers={"Idempotency-Key": "batch-1"})
        assert (again.json()["id"], again.json()["edit_ids"]) == (batch["id"], batch["edit_ids"])
        other = {**body, "edits": body["edits"][:1]}
        reused = client.post("/v1/batches", json=other, headers={"Idempotency-Key": "batch-1"})
        assert (reused.status_code, reused.json()["code"]) == (422, "idempotency_key_reused")

        events = _events(client, batch["id"])
        wait_until(lambda: {"batch.completed", "edit.succeeded"} <= set(hook.events()), 30, "the webhooks")

    kinds = [kind for kind, _ in events]
    assert kinds[-1] == "batch" and kinds.count("batch") == 1, kinds
    results = {data["id"]: data for kind, data in events if kind == "result"}
    assert set(results) == set(batch["edit_ids"]) and all(j["state"] == "succeeded" for j in results.values())
    assert [results[i]["emotion"] for i in batch["edit_ids"]] == ["happy", "sad"]  # each its own options
    assert results[batch["edit_ids"][0]]["intensity"] == 1.2
    final = events[-1][1]
    assert (final["state"], final["counts"]["succeeded"], final["completed_at"] is not None) == ("completed", 2, True)
    assert client.get(f"/v1/batches/{batch['id']}").json() == final

    completed = [c for c in hook.calls if c.body["type"] == "batch.completed"]
    assert len(completed) == 1 and completed[0].verified, "signed like every webhook, sent once"
    assert completed[0].body["data"]["id"] == batch["id"] and completed[0].body["data"]["counts"]["succeeded"] == 2
    assert completed[0].headers["webhook-id"] == f"msg_{batch['id'].removeprefix('bat_')}_completed"
    listed = {j["id"] for j in client.get("/v1/edits", params={"limit": 100}).json()["data"]}
    assert listed == set(batch["edit_ids"]), "the replay made no new edits"

    stranger, _ = _client(stack, "batch-stranger")
    for path in (f"/v1/batches/{batch['id']}", f"/v1/batches/{batch['id']}/events"):
        r = stranger.get(path)
        assert (r.status_code, r.json()["code"]) == (404, "batch_not_found")


def test_a_batch_is_refused_whole_and_stores_nothing(stack: Stack, clip: Path) -> None:
    client, _ = _client(stack, "batch-limits", max_concurrent_jobs=4, max_submissions_per_minute=3)
    asset = _asset(client, clip)
    edit = {"video_asset": asset, "emotion": "happy"}

    def refused(edits: list[dict[str, Any]], status: int, code: str) -> str:
        r = client.post("/v1/batches", json={"edits": edits})
        assert (r.status_code, r.json()["code"]) == (status, code), r.text
        return str(r.json()["detail"])

    assert "at most 50" in refused([edit] * 51, 422, "batch_too_large")  # CMET_MAX_BATCH_EDITS
    assert "split the batch" in refused([edit] * 4, 422, "batch_too_large")  # more than 3 submissions a minute
    assert refused([edit, {**edit, "emotion": "no_such_feeling"}], 422, "unknown_emotion").startswith("edits[1]: ")
    assert refused([edit, {**edit, "dry_run": True}], 422, "invalid_request").startswith("edits[1]: ")
    assert refused([], 422, "invalid_request")
    r = client.post("/v1/batches", files={"video": clip.read_bytes()}, data={"emotion": "happy"})
    assert (r.status_code, r.json()["code"]) == (415, "unsupported_media_type")
    assert client.get("/v1/edits").json()["data"] == [], "nothing was stored"

    assert client.post("/v1/batches", json={"edits": [edit, edit]}).status_code == 202  # 2 of 3 a minute
    assert refused([edit, edit], 429, "rate_limit")  # 2 more do not fit: neither is taken
    assert len(client.get("/v1/edits").json()["data"]) == 2
    assert client.post("/v1/batches", json={"edits": [edit]}).status_code == 202  # the one that fits
