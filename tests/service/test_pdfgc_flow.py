"""A PD-FGC set behind the running service: the same API, queue and worker as EDTalk's, end to end over HTTP (a
stack of its own serving the tiny PD-FGC set): a named emotion with gaze and blink off, and a reference photo with
the eyes driven by a clip."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from cmet_core.media.sample import write_sample_clip
from tests.service.conftest import new_key
from tests.service.stack import REDIS_URL, Stack, service_stack
from tests.service.test_flow import wait_final

pytestmark = pytest.mark.stack


@pytest.fixture(scope="module")
def pdfgc_client(tmp_path_factory: pytest.TempPathFactory, tiny_pdfgc_set: Path) -> Iterator[httpx.Client]:
    # the shared stack's Redis, named so it is not emptied: its own queue names keep the two apart
    with service_stack(tmp_path_factory.mktemp("pdfgc-stack"), tiny_pdfgc_set, REDIS_URL) as stack:
        yield _client(stack)


def _client(stack: Stack) -> httpx.Client:
    key = new_key(stack, "pdfgc", max_concurrent_jobs=10, max_submissions_per_minute=100)
    return httpx.Client(base_url=stack.api_url, headers={"Authorization": f"Bearer {key}"}, timeout=60)


@pytest.fixture(scope="module")
def talk(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_sample_clip(tmp_path_factory.mktemp("pdfgc-talk") / "talk.mp4", seconds=0.4)


def test_an_emotion_edits_with_the_eyes_still(pdfgc_client: httpx.Client, talk: Path) -> None:
    assert pdfgc_client.get("/v1/models").json()["backbone"] == "pdfgc"
    with talk.open("rb") as f:
        data = {"emotion": "happy", "gaze": "off", "blink": "off", "quality": "false"}
        r = pdfgc_client.post("/v1/edits", files={"video": ("talk.mp4", f, "video/mp4")}, data=data)
    assert r.status_code == 202, r.text
    done = wait_final(pdfgc_client, r.json()["id"])
    assert done["state"] == "succeeded", done
    assert done["result"]["frames"] == 10 and done["result"]["connector"]


def test_a_reference_photo_with_eyes_from_a_driving_clip(
    pdfgc_client: httpx.Client, talk: Path, test_data: Path, tmp_path: Path
) -> None:
    driver = write_sample_clip(tmp_path / "eyes.mp4", seconds=0.2)
    photo = test_data / "faces" / "ang_crop.png"
    with talk.open("rb") as f, photo.open("rb") as p, driver.open("rb") as e:
        files = {
            "video": ("talk.mp4", f, "video/mp4"),
            "expression_reference": ("ang.png", p, "image/png"),
            "eye_video": ("eyes.mp4", e, "video/mp4"),
        }
        data = {"gaze": "clip", "blink": "clip", "quality": "false"}
        r = pdfgc_client.post("/v1/edits", files=files, data=data)
    assert r.status_code == 202, r.text
    done = wait_final(pdfgc_client, r.json()["id"])
    assert done["state"] == "succeeded", done
    assert done["result"]["frames"] == 10 and done["result"]["connector"] is None
