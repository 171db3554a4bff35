"""The bad-input corpus: every case gets its documented 4xx status and code, and leaves nothing behind.

The app runs in-process (SQLite, local storage, strict URL policy: no private addresses); the
queue is real Redis, but only the few valid set-up requests ever reach it.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from cmet_core.media.sample import write_sample_clip
from cmet_jobs.db.models import JobRow
from cmet_jobs.db.session import session_scope
from cmet_jobs.keys import create_key
from cmet_jobs.settings import JobsSettings
from service.app import create_app
from service.body_limit import limit_for
from tests.media_factory import make_audio, make_dense_video, make_video
from tests.service.stack import REDIS_URL

pytestmark = pytest.mark.stack("Redis")  # the broker; the database is SQLite

MAX_VIDEO = 2_000_000


class Corpus:
    def __init__(
        self, client: TestClient, settings: JobsSettings, key: str, other_key: str, files: dict[str, bytes]
    ) -> None:
        self.client, self.settings, self.key, self.other_key, self.files = client, settings, key, other_key, files

    def post(self, key: str | None = None, **kwargs: Any):  # type: ignore[no-untyped-def]
        headers = kwargs.pop("headers", {})
        if key is not None or "Authorization" not in headers:
            headers.setdefault("Authorization", f"Bearer {key or self.key}")
        return self.client.post("/v1/edits", headers=headers, **kwargs)

    def auth(self, key: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {key or self.key}"}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Corpus]:
    tmp = tmp_path_factory.mktemp("corpus")
    settings = JobsSettings(
        data_dir=tmp / "data",
        broker_url=REDIS_URL,
        queue=f"cmet-corpus-{uuid.uuid4().hex[:8]}",
        max_video_bytes=MAX_VIDEO,
        max_speech_bytes=1_000_000,
        allow_private_urls=False,
        public_url="http://testserver",
    )
    app = create_app(settings)
    with session_scope(settings.db_url) as session:
        key = create_key(session, "corpus", max_concurrent_jobs=100, max_submissions_per_minute=1000).secret
        other = create_key(session, "other").secret
    video = write_sample_clip(tmp / "ok.mp4", seconds=0.2).read_bytes()
    silent = make_video(tmp / "small.mp4", frames=3, audio=False).read_bytes()
    files = {
        "video": video,
        "truncated": video[: len(video) // 3],
        "wav": make_audio(tmp / "tone.wav").read_bytes(),
        "text": b"this is not a video at all\n" * 10,
        "big": b"\x00" * (MAX_VIDEO + 10),
        "silent": silent,
        "dense": make_dense_video(tmp / "dense.mp4", frames=40_000, seconds=2.0).read_bytes(),
        "photo": _jpeg(),
        "huge_png": _png_header(30000, 30000),
        "long_flac": _long_flac(tmp / "long.flac", seconds=601),
    }
    with TestClient(app, raise_server_exceptions=False) as client:
        yield Corpus(client, settings, key, other, files)


def _jpeg() -> bytes:
    import io

    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (64, 48), (120, 90, 60)).save(out, "JPEG")
    return out.getvalue()


def _long_flac(path: Path, seconds: int) -> bytes:
    """Digital silence as FLAC: ten minutes in a few kB, its length declared in the header."""
    import numpy as np
    import soundfile

    soundfile.write(str(path), np.zeros(8000 * seconds, np.int16), 8000)
    return path.read_bytes()


def _dub(c: Corpus, video: str = "video", **fields: str):  # type: ignore[no-untyped-def]
    """A multipart dub request: part `video` from the corpus, the other parts named by `*_part` fields."""
    files = {"video": c.files[video]} | {
        name.removesuffix("_part"): c.files[value] for name, value in fields.items() if name.endswith("_part")
    }
    data = {"emotion": "happy"} | {k: v for k, v in fields.items() if not k.endswith("_part")}
    return c.post(files=files, data=data)


def _url_and_asset(c: Corpus, name: str, **fields: str):  # type: ignore[no-untyped-def]
    """A JSON request giving the input `name` twice: as a URL and as an asset."""
    twice = {f"{name}_url": "https://example.com/a.mp4", f"{name}_asset": "ast_" + "0" * 32}
    return c.post(json={"emotion": "happy", **fields, **twice})


def _png_header(width: int, height: int) -> bytes:
    """A PNG whose header declares `width` x `height` (its one tiny data chunk does not fill it): what a
    client sends to make the server decode 900 million pixels."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    data = chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + data


def _jobs(settings: JobsSettings) -> int:
    with session_scope(settings.db_url) as session:
        return int(session.scalar(select(func.count()).select_from(JobRow)) or 0)


def _stored(settings: JobsSettings) -> int:
    root = settings.storage_dir
    return sum(1 for p in root.rglob("*") if p.is_file()) if root and root.exists() else 0


def _asset(c: Corpus, key: str | None = None, upload: bool = True, content: str = "video") -> str:
    r = c.client.post("/v1/uploads", headers=c.auth(key), json={"kind": "video", "size": len(c.files[content])})
    assert r.status_code == 201
    body = r.json()
    if upload:
        assert (
            c.client.put(body["upload_url"].replace("http://testserver", ""), content=c.files[content]).status_code
            == 200
        )
    return str(body["id"])


def _chunked(size: int):  # type: ignore[no-untyped-def]
    """A body sent without Content-Length (chunked), so only counting the bytes can stop it."""

    def chunks():  # type: ignore[no-untyped-def]
        for _ in range(size // (1 << 20) + 1):
            yield b"\x00" * (1 << 20)

    return chunks()


Case = Callable[[Corpus], Any]


def _plan(segments: list[tuple[float, float, str]]) -> dict[str, Any]:
    return {"segments": [{"start_s": a, "end_s": b, "target": t} for a, b, t in segments or [(0, 0.1, "sad")]]}


def _timeline_case(segments: list[tuple[float, float, str]]) -> Case:
    return lambda c: c.post(files={"video": c.files["video"]}, data={"timeline": json.dumps(_plan(segments))})


CASES: list[tuple[str, Case, int, str]] = [
    ("no auth header", lambda c: c.client.post("/v1/edits", json={"emotion": "happy"}), 401, "unauthorized"),
    ("unknown key", lambda c: c.post(key="cmet_nope", json={"emotion": "happy"}), 401, "unauthorized"),
    (
        "basic auth scheme",
        lambda c: c.client.post("/v1/edits", headers={"Authorization": "Basic abc"}, json={}),
        401,
        "unauthorized",
    ),
    (
        "text/plain body",
        lambda c: c.post(content=b"emotion=happy", headers={"Content-Type": "text/plain"}),
        415,
        "unsupported_media_type",
    ),
    (
        "malformed JSON",
        lambda c: c.post(content=b"{not json", headers={"Content-Type": "application/json"}),
        422,
        "invalid_request",
    ),
    ("JSON array", lambda c: c.post(json=[1, 2]), 422, "invalid_request"),
    ("empty JSON object", lambda c: c.post(json={}), 422, "video_missing"),
    ("unknown field", lambda c: c.post(json={"emotion": "happy", "colour": "red"}), 422, "invalid_request"),
    ("intensity not a number", lambda c: c.post(json={"emotion": "happy", "intensity": "abc"}), 422, "invalid_request"),
    ("intensity too high", lambda c: c.post(json={"emotion": "happy", "intensity": 5}), 422, "invalid_request"),
    ("negative intensity", lambda c: c.post(json={"emotion": "happy", "intensity": -1}), 422, "invalid_request"),
    ("huge emotion string", lambda c: c.post(json={"emotion": "h" * 5000}), 422, "invalid_request"),
    (
        "unknown emotion",
        lambda c: c.post(files={"video": c.files["video"]}, data={"emotion": "furious"}),
        422,
        "unknown_emotion",
    ),
    (
        "blend weight not a number",
        lambda c: c.post(files={"video": c.files["video"]}, data={"emotion": "happy=x"}),
        422,
        "bad_emotion",
    ),
    (
        "blend over max intensity",
        lambda c: c.post(files={"video": c.files["video"]}, data={"emotion": "happy=2,sad=2"}),
        422,
        "bad_emotion",
    ),
    ("no emotion, no speech", lambda c: c.post(files={"video": c.files["video"]}), 422, "emotion_missing"),
    *(
        (f"timeline: {name}", _timeline_case(segments), 422, code)
        for name, segments, code in [
            ("overlap", [(0.0, 0.15, "happy"), (0.1, 0.2, "sad")], "timeline_overlap"),
            ("past the clip's end", [(0.0, 5.0, "happy")], "timeline_past_end"),
            ("reversed", [(0.15, 0.05, "happy")], "timeline_bad_times"),
            ("negative", [(-1.0, 0.1, "happy")], "timeline_bad_times"),
            ("too many", [(i / 1000, (i + 1) / 1000, "sad") for i in range(65)], "timeline_too_many_segments"),
            ("unknown emotion", [(0.0, 0.1, "furious")], "unknown_emotion"),
            ("from_audio as a target", [(0.0, 0.1, "from_audio")], "bad_emotion"),
        ]
    ),
    (
        "timeline and emotion",
        lambda c: c.post(json={"emotion": "happy", "video_url": "https://x.example/v.mp4", "timeline": _plan([])}),
        422,
        "invalid_request",
    ),
    (
        "timeline and intensity",
        lambda c: c.post(files={"video": c.files["video"]}, data={"timeline": json.dumps(_plan([])), "intensity": "2"}),
        422,
        "invalid_request",
    ),
    (
        "timeline not JSON",
        lambda c: c.post(files={"video": c.files["video"]}, data={"timeline": "{segments"}),
        422,
        "invalid_request",
    ),
    (
        "from_audio on a video without audio",
        lambda c: c.post(files={"video": c.files["silent"]}, data={"emotion": "from_audio"}),
        422,
        "no_audio",
    ),
    (
        "custom emotion named from_audio",
        lambda c: c.client.post(
            "/v1/emotions", headers=c.auth(), data={"name": "from_audio"}, files={"speech": c.files["wav"]}
        ),
        422,
        "bad_emotion_name",
    ),
    *(
        (
            f"custom emotion named {name!r}",
            lambda c, name=name: c.client.post(
                "/v1/emotions", headers=c.auth(), data={"name": name}, files={"speech": c.files["wav"]}
            ),
            422,
            "bad_emotion_name",
        )
        for name in ("from_audio\n", "happy\n", "dry-wit\n")
    ),
    (
        "edit subscribed to preview events",
        lambda c: c.post(json={"emotion": "happy", "webhook_events": ["edit.succeeded", "preview.succeeded"]}),
        422,
        "invalid_request",
    ),
    (
        "clip preview subscribed to edit events",
        lambda c: c.post(json={"emotion": "happy", "preview_s": 1, "webhook_events": ["edit.succeeded"]}),
        422,
        "invalid_request",
    ),
    (
        "contact sheet subscribed to edit events",
        lambda c: c.client.post(
            "/v1/previews", headers=c.auth(), json={"emotions": ["happy"], "webhook_events": ["edit.failed"]}
        ),
        422,
        "invalid_request",
    ),
    (
        "neutral without from_audio",
        lambda c: c.post(files={"video": c.files["video"]}, data={"emotion": "happy", "neutral": "self"}),
        422,
        "invalid_request",
    ),
    ("no video", lambda c: c.post(json={"emotion": "happy"}), 422, "video_missing"),
    (
        "video part and asset",
        lambda c: c.post(files={"video": c.files["video"]}, data={"emotion": "happy", "video_asset": _asset(c)}),
        422,
        "invalid_request",
    ),
    (
        "url and asset",
        lambda c: c.post(
            json={"emotion": "happy", "video_url": "https://example.com/a.mp4", "video_asset": "ast_" + "0" * 32}
        ),
        422,
        "invalid_request",
    ),
    (
        "malformed asset id",
        lambda c: c.post(json={"emotion": "happy", "video_asset": "../../etc/passwd"}),
        422,
        "invalid_request",
    ),
    (
        "unknown asset",
        lambda c: c.post(json={"emotion": "happy", "video_asset": "ast_" + "0" * 32}),
        404,
        "asset_not_found",
    ),
    (
        "another key's asset",
        lambda c: c.post(json={"emotion": "happy", "video_asset": _asset(c, c.other_key)}),
        404,
        "asset_not_found",
    ),
    (
        "asset never uploaded",
        lambda c: c.post(json={"emotion": "happy", "video_asset": _asset(c, upload=False)}),
        422,
        "asset_not_uploaded",
    ),
    (
        "text file as video",
        lambda c: c.post(files={"video": ("a.mp4", c.files["text"], "video/mp4")}, data={"emotion": "happy"}),
        422,
        "not_media",
    ),
    (
        "empty video part",
        lambda c: c.post(files={"video": ("a.mp4", b"", "video/mp4")}, data={"emotion": "happy"}),
        422,
        "empty_file",
    ),
    (
        "audio file as video",
        lambda c: c.post(files={"video": ("a.mp4", c.files["wav"], "video/mp4")}, data={"emotion": "happy"}),
        422,
        "no_video_stream",
    ),
    (
        "truncated mp4",
        lambda c: c.post(files={"video": ("a.mp4", c.files["truncated"], "video/mp4")}, data={"emotion": "happy"}),
        422,
        "not_media",
    ),
    (
        "video over the size limit",
        lambda c: c.post(files={"video": ("a.mp4", c.files["big"], "video/mp4")}, data={"emotion": "happy"}),
        413,
        "file_too_large",
    ),
    (
        "unexpected file part",
        lambda c: c.post(files={"video": c.files["video"], "poster": c.files["video"]}, data={"emotion": "happy"}),
        422,
        "invalid_request",
    ),
    (
        "text file as speech",
        lambda c: c.post(files=[("video", c.files["video"]), ("speech", ("s.wav", c.files["text"]))]),
        422,
        "not_media",
    ),
    (
        "video file as speech",
        lambda c: c.post(files=[("video", c.files["video"]), ("speech", ("s.wav", c.files["silent"]))]),
        422,
        "no_audio",
    ),
    (
        "emotion and speech",
        lambda c: c.post(
            files=[("video", c.files["video"]), ("speech", ("s.wav", c.files["wav"]))], data={"emotion": "happy"}
        ),
        422,
        "invalid_request",
    ),
    (
        "too many speech parts",
        lambda c: c.post(files=[("video", c.files["video"])] + [("speech", ("s.wav", b"x"))] * 9),
        422,
        "invalid_request",
    ),
    (
        "faces: more than the limit",
        lambda c: c.post(
            files={"video": c.files["video"]},
            data={"faces": json.dumps([{"select": i, "emotion": "happy"} for i in range(5)])},
        ),
        422,
        "too_many_faces",
    ),
    (
        "faces: one face selected twice",
        lambda c: c.post(
            files={"video": c.files["video"]},
            data={"faces": json.dumps([{"select": 0, "emotion": "happy"}, {"select": 0, "emotion": "sad"}])},
        ),
        422,
        "face_selected_twice",
    ),
    (
        "faces: the speaker on a clip without audio",
        lambda c: c.post(
            files={"video": c.files["silent"]}, data={"faces": json.dumps([{"select": "speaker", "emotion": "happy"}])}
        ),
        422,
        "speaker_needs_audio",
    ),
    (
        "faces and a top-level emotion",
        lambda c: c.post(
            json={"emotion": "happy", "video_asset": "ast_" + "0" * 32, "faces": [{"select": 0, "emotion": "sad"}]}
        ),
        422,
        "invalid_request",
    ),
    (
        "faces: an unknown emotion",
        lambda c: c.post(
            files={"video": c.files["video"]}, data={"faces": json.dumps([{"select": 1, "emotion": "furious"}])}
        ),
        422,
        "unknown_emotion",
    ),
    (
        "faces: a face's timeline past the clip's end",
        lambda c: c.post(
            files={"video": c.files["video"]},
            data={
                "faces": json.dumps(
                    [{"select": 0, "timeline": {"segments": [{"start_s": 0, "end_s": 99, "target": "happy"}]}}]
                )
            },
        ),
        422,
        "timeline_past_end",
    ),
    (
        "faces: a face's reference as a path of the server",
        lambda c: c.post(
            files={"video": c.files["video"]},
            data={"faces": json.dumps([{"select": 0, "expression_reference": "/etc/passwd"}])},
        ),
        422,
        "invalid_request",
    ),
    (
        "faces: not JSON",
        lambda c: c.post(files={"video": c.files["video"]}, data={"faces": "[{select"}),
        422,
        "invalid_request",
    ),
    (
        "face index and box",
        lambda c: c.post(
            json={"emotion": "happy", "face_index": 0, "face_box": [0, 0, 9, 9], "video_asset": "ast_" + "0" * 32}
        ),
        422,
        "invalid_request",
    ),
    (
        "face box of two numbers",
        lambda c: c.post(files={"video": c.files["video"]}, data={"emotion": "happy", "face_box": "1,2"}),
        422,
        "invalid_request",
    ),
    (
        "face box with NaN",
        lambda c: c.post(files={"video": c.files["video"]}, data={"emotion": "happy", "face_box": "nan,0,9,9"}),
        422,
        "invalid_request",
    ),
    (
        "face box with NaN in JSON",
        lambda c: c.post(
            content=b'{"emotion": "happy", "video_asset": "ast_' + b"0" * 32 + b'", "face_box": [NaN, 0, 9, 9]}',
            headers={"Content-Type": "application/json"},
        ),
        422,
        "invalid_request",
    ),
    (
        "face box with infinity",
        lambda c: c.post(files={"video": c.files["video"]}, data={"emotion": "happy", "face_box": "0,0,inf,9"}),
        422,
        "invalid_request",
    ),
    (
        "inverted face box",
        lambda c: c.post(files={"video": c.files["video"]}, data={"emotion": "happy", "face_box": "9,9,0,0"}),
        422,
        "invalid_request",
    ),
    (
        "zero-area face box",
        lambda c: c.post(files={"video": c.files["video"]}, data={"emotion": "happy", "face_box": "5,0,5,9"}),
        422,
        "invalid_request",
    ),
    (
        "zero-area face box in JSON",
        lambda c: c.post(json={"emotion": "happy", "video_asset": "ast_" + "0" * 32, "face_box": [0, 4, 9, 4]}),
        422,
        "invalid_request",
    ),
    (
        "source frame past the clip",
        lambda c: c.post(files={"video": c.files["video"]}, data={"emotion": "happy", "source_frame": "1000"}),
        422,
        "bad_source_frame",
    ),
    (
        "enhance not a mode",
        lambda c: c.post(files={"video": c.files["video"]}, data={"emotion": "happy", "enhance": "max"}),
        422,
        "invalid_request",
    ),
    (
        "enhance strength above 1",
        lambda c: c.post(json={"emotion": "happy", "video_asset": "ast_" + "0" * 32, "enhance_strength": 1.5}),
        422,
        "invalid_request",
    ),
    (
        "upscale with the restorer off",
        lambda c: c.post(
            files={"video": c.files["video"]}, data={"emotion": "happy", "upscale": "2", "enhance": "off"}
        ),
        422,
        "bad_upscale",
    ),
    (
        "preview window past the clip",
        lambda c: c.post(
            files={"video": c.files["video"]}, data={"emotion": "happy", "preview_s": "1", "preview_start_s": "9"}
        ),
        422,
        "bad_preview_window",
    ),
    (
        "preview start without a length",
        lambda c: c.post(json={"emotion": "happy", "video_url": "https://example.com/a.mp4", "preview_start_s": 1}),
        422,
        "invalid_request",
    ),
    (
        "preview longer than allowed",
        lambda c: c.post(json={"emotion": "happy", "video_url": "https://example.com/a.mp4", "preview_s": 300}),
        422,
        "invalid_request",
    ),
    (
        "sheet frame past the clip",
        lambda c: c.client.post(
            "/v1/previews",
            headers=c.auth(),
            files={"video": c.files["video"]},
            data={"emotions": "happy", "frame": "99"},
        ),
        422,
        "bad_preview_frame",
    ),
    (
        "sheet without emotions",
        lambda c: c.client.post("/v1/previews", headers=c.auth(), json={"video_asset": "ast_" + "0" * 32}),
        422,
        "invalid_request",
    ),
    (
        "sheet with an unknown emotion",
        lambda c: c.client.post(
            "/v1/previews", headers=c.auth(), files={"video": c.files["video"]}, data={"emotions": ["happy", "glum"]}
        ),
        422,
        "unknown_emotion",
    ),
    (
        "sheet without a video",
        lambda c: c.client.post("/v1/previews", headers=c.auth(), json={"emotions": ["happy"]}),
        422,
        "video_missing",
    ),
    (
        "sheet as plain text",
        lambda c: c.client.post("/v1/previews", headers=c.auth(), content=b"x", params={}),
        415,
        "unsupported_media_type",
    ),
    (
        "another key's preview",
        lambda c: c.client.get("/v1/previews/edt_" + "0" * 32, headers=c.auth(c.other_key)),
        404,
        "preview_not_found",
    ),
    (
        "empty Idempotency-Key",
        lambda c: c.post(files={"video": c.files["video"]}, data={"emotion": "happy"}, headers={"Idempotency-Key": ""}),
        422,
        "invalid_request",
    ),
    (
        "clip with 40,000 frames in 2 s",
        lambda c: c.post(files={"video": ("d.mp4", c.files["dense"], "video/mp4")}, data={"emotion": "happy"}),
        422,
        "too_many_frames",
    ),
    (
        "negative face index",
        lambda c: c.post(files={"video": c.files["video"]}, data={"emotion": "happy", "face_index": "-1"}),
        422,
        "invalid_request",
    ),
    (
        "unknown webhook event",
        lambda c: c.post(json={"emotion": "happy", "webhook_events": ["edit.exploded"]}),
        422,
        "invalid_request",
    ),
    (
        "body over the size limit",
        lambda c: c.post(content=b"{}", headers={"Content-Type": "application/json", "Content-Length": str(10**10)}),
        413,
        "body_too_large",
    ),
    (
        "chunked body over the size limit",
        lambda c: c.post(content=_chunked(12 << 20), headers={"Content-Type": "multipart/form-data; boundary=x"}),
        413,
        "body_too_large",
    ),
    (
        "JSON over 1 MiB to edits",
        lambda c: c.post(content=b"{" + b" " * (2 << 20) + b"}", headers={"Content-Type": "application/json"}),
        413,
        "body_too_large",
    ),
    (
        "chunked JSON over 1 MiB to edits",
        lambda c: c.post(content=_chunked(2 << 20), headers={"Content-Type": "application/json"}),
        413,
        "body_too_large",
    ),
    (
        "chunked JSON over 1 MiB to uploads",
        lambda c: c.client.post(
            "/v1/uploads", headers={**c.auth(), "Content-Type": "application/json"}, content=_chunked(2 << 20)
        ),
        413,
        "body_too_large",
    ),
    (
        "chunked body over the limit to emotions",
        lambda c: c.client.post(
            "/v1/emotions",
            headers={**c.auth(), "Content-Type": "multipart/form-data; boundary=x"},
            content=_chunked(10 << 20),
        ),
        413,
        "body_too_large",
    ),
    (
        "loopback video URL",
        lambda c: c.post(json={"emotion": "happy", "video_url": "https://127.0.0.1/a.mp4"}),
        422,
        "url_private_address",
    ),
    (
        "private video URL",
        lambda c: c.post(json={"emotion": "happy", "video_url": "https://10.0.0.7/a.mp4"}),
        422,
        "url_private_address",
    ),
    (
        "cloud metadata URL",
        lambda c: c.post(json={"emotion": "happy", "video_url": "https://169.254.169.254/latest/meta-data/"}),
        422,
        "url_private_address",
    ),
    (
        "plain http video URL",
        lambda c: c.post(json={"emotion": "happy", "video_url": "http://example.com/a.mp4"}),
        422,
        "url_scheme",
    ),
    (
        "credentials in a URL",
        lambda c: c.post(json={"emotion": "happy", "video_url": "https://user:pw@example.com/a.mp4"}),
        422,
        "url_host",
    ),
    (
        "IPv6 loopback speech URL",
        lambda c: c.post(files={"video": c.files["video"]}, data={"speech_urls": "https://[::1]/a.wav"}),
        422,
        "url_private_address",
    ),
    (
        "webhook to a LAN address",
        lambda c: c.post(
            files={"video": c.files["video"]}, data={"emotion": "happy", "webhook_url": "https://192.168.1.10/hook"}
        ),
        422,
        "url_private_address",
    ),
    (
        "text file uploaded as a video asset",
        lambda c: c.post(json={"emotion": "happy", "video_asset": _asset(c, content="text")}),
        422,
        "not_media",
    ),
    ("unknown job", lambda c: c.client.get("/v1/edits/edt_" + "0" * 32, headers=c.auth()), 404, "edit_not_found"),
    (
        "cancel unknown job",
        lambda c: c.client.post("/v1/edits/edt_nope/cancel", headers=c.auth()),
        404,
        "edit_not_found",
    ),
    ("delete unknown job", lambda c: c.client.delete("/v1/edits/edt_nope", headers=c.auth()), 404, "edit_not_found"),
    (
        "list with a forged cursor",
        lambda c: c.client.get("/v1/edits", params={"cursor": "!!!"}, headers=c.auth()),
        422,
        "bad_cursor",
    ),
    (
        "list limit too large",
        lambda c: c.client.get("/v1/edits", params={"limit": 1000}, headers=c.auth()),
        422,
        "invalid_request",
    ),
    (
        "misspelt query parameter",
        lambda c: c.client.get("/v1/edits", params={"stat": "failed"}, headers=c.auth()),
        422,
        "invalid_request",
    ),
    (
        "list unknown state",
        lambda c: c.client.get("/v1/edits", params={"state": "exploded"}, headers=c.auth()),
        422,
        "invalid_request",
    ),
    (
        "upload of unknown kind",
        lambda c: c.client.post("/v1/uploads", headers=c.auth(), json={"kind": "image"}),
        422,
        "invalid_request",
    ),
    (
        "forged download signature",
        lambda c: c.client.get("/v1/files/jobs/x/output.mp4", params={"expires": 9999999999, "signature": "00"}),
        403,
        "bad_signature",
    ),
    (
        "expired upload URL",
        lambda c: c.client.put(
            "/v1/files/assets/x/y", params={"expires": 1, "signature": "00", "size": 1}, content=b"x"
        ),
        403,
        "bad_signature",
    ),
    ("unknown route", lambda c: c.client.get("/v1/nothing", headers=c.auth()), 404, "not_found"),
    ("photo without lips speech", lambda c: _dub(c, "photo"), 422, "photo_needs_speech"),
    (
        "photo of 30000x30000 pixels",
        lambda c: _dub(c, "huge_png", lips="speech", speech_track_part="wav"),
        422,
        "bad_photo",
    ),
    (
        "clip preview of a dub",
        lambda c: _dub(c, lips="speech", speech_track_part="wav", preview_s="1"),
        422,
        "bad_preview_window",
    ),
    (
        "clip preview following a separate speech track",
        lambda c: _dub(c, emotion="from_audio", speech_track_part="wav", preview_s="1"),
        422,
        "bad_preview_window",
    ),
    ("lips speech without a speech track", lambda c: _dub(c, lips="speech"), 422, "speech_track_missing"),
    ("speech track without lips speech", lambda c: _dub(c, speech_track_part="wav"), 422, "speech_track_unused"),
    (
        "pose video with a video input",
        lambda c: _dub(c, lips="speech", speech_track_part="wav", pose_video_part="video"),
        422,
        "pose_video_needs_photo",
    ),
    ("gaze clip without an eye video", lambda c: _dub(c, gaze="clip"), 422, "eye_video_missing"),
    ("eye video without gaze or blink clip", lambda c: _dub(c, eye_video_part="video"), 422, "eye_video_unused"),
    ("eye video as URL and asset", lambda c: _url_and_asset(c, "eye_video", blink="clip"), 422, "invalid_request"),
    (
        "speech track without an audio stream",
        lambda c: _dub(c, lips="speech", speech_track_part="silent"),
        422,
        "no_audio",
    ),
    (
        "speech track over the duration limit",
        lambda c: _dub(c, lips="speech", speech_track_part="long_flac"),
        422,
        "speech_too_long",
    ),
    (
        "speech track as URL and asset",
        lambda c: _url_and_asset(c, "speech_track", lips="speech"),
        422,
        "invalid_request",
    ),
    ("unknown pose_fill", lambda c: _dub(c, lips="speech", pose_fill="spin"), 422, "invalid_request"),
    (
        "quality not a bool",
        lambda c: c.post(json={"emotion": "happy", "video_asset": "ast_" + "0" * 32, "quality": "maybe"}),
        422,
        "invalid_request",
    ),
]


@pytest.mark.parametrize(("name", "case", "status", "code"), CASES, ids=[c[0] for c in CASES])
def test_bad_input(corpus: Corpus, name: str, case: Case, status: int, code: str) -> None:
    jobs_before, stored_before = _jobs(corpus.settings), _stored(corpus.settings)
    response = case(corpus)
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert problem["code"] == code and problem["status"] == status and problem["detail"]
    assert problem["type"] == "about:blank"  # no URL of a domain the project does not own; `code` says it
    assert _jobs(corpus.settings) == jobs_before, "a refused request left a job record"
    uploads = name in (
        "video part and asset",
        "another key's asset",
        "asset never uploaded",
        "text file uploaded as a video asset",
    )
    assert uploads or _stored(corpus.settings) == stored_before, "a refused request left files"


def test_idempotency_misuse(corpus: Corpus) -> None:
    headers = {**corpus.auth(), "Idempotency-Key": "corpus-1"}
    first = corpus.client.post(
        "/v1/edits", headers=headers, files={"video": corpus.files["video"]}, data={"emotion": "happy"}
    )
    assert first.status_code == 202
    other_body = corpus.client.post(
        "/v1/edits", headers=headers, files={"video": corpus.files["video"]}, data={"emotion": "sad"}
    )
    assert other_body.status_code == 422 and other_body.json()["code"] == "idempotency_key_reused"
    other_key = corpus.client.post(
        "/v1/edits",
        headers={**corpus.auth(corpus.other_key), "Idempotency-Key": "corpus-1"},
        files={"video": corpus.files["video"]},
        data={"emotion": "sad"},
    )
    assert other_key.status_code == 202 and other_key.json()["id"] != first.json()["id"]  # keys are scoped per API key
    peek = corpus.client.get(f"/v1/edits/{first.json()['id']}", headers=corpus.auth(corpus.other_key))
    assert peek.status_code == 404


def test_quota_gives_429_with_retry_after(corpus: Corpus) -> None:
    with session_scope(corpus.settings.db_url) as session:
        tight = create_key(session, "tight", max_concurrent_jobs=1).secret
    ok = corpus.client.post(
        "/v1/edits", headers=corpus.auth(tight), files={"video": corpus.files["video"]}, data={"emotion": "happy"}
    )
    assert ok.status_code == 202
    again = corpus.client.post(
        "/v1/edits", headers=corpus.auth(tight), files={"video": corpus.files["video"]}, data={"emotion": "happy"}
    )
    assert (
        again.status_code == 429
        and again.json()["code"] == "concurrent_limit"
        and int(again.headers["retry-after"]) > 0
    )


def test_url_inputs_are_followed_and_checked_at_submission(tmp_path: Path) -> None:
    """A URL that redirects to a cloud-metadata address, or answers 404, or is too large, is a 4xx at
    submission: the API follows it as the worker would (every hop checked). Private targets are
    allowed here (LAN self-hosting), so the test server on 127.0.0.1 can be reached; metadata never is."""
    import http.server
    import threading

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            if self.path == "/to-metadata":
                self.send_response(302)
                self.send_header("Location", "http://169.254.169.254/latest/meta-data/")
            elif self.path == "/huge.mp4":
                self.send_response(200)
                self.send_header("Content-Length", str(MAX_VIDEO * 10))
            else:
                self.send_response(404)
                self.send_header("Content-Length", "0")
            self.end_headers()

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    settings = JobsSettings(
        data_dir=tmp_path / "data",
        broker_url=REDIS_URL,
        queue=f"cmet-lan-{uuid.uuid4().hex[:8]}",
        max_video_bytes=MAX_VIDEO,
        allow_private_urls=True,
        public_url="http://testserver",
    )
    app = create_app(settings)
    with session_scope(settings.db_url) as session:
        key = create_key(session, "lan").secret
    try:
        with TestClient(app, raise_server_exceptions=False) as client:
            for path, status, code in (
                ("/to-metadata", 422, "url_private_address"),
                ("/missing.mp4", 422, "url_fetch_failed"),
                ("/huge.mp4", 413, "url_too_large"),
            ):
                r = client.post(
                    "/v1/edits",
                    headers={"Authorization": f"Bearer {key}"},
                    json={"emotion": "happy", "video_url": base + path},
                )
                assert (r.status_code, r.json()["code"]) == (status, code), r.text
            assert _jobs(settings) == 0
    finally:
        server.shutdown()


def test_multipart_routes_take_their_files_whole() -> None:
    """A contact sheet's multipart body carries a whole video, as an edit's does; JSON stays small."""
    settings = JobsSettings(max_video_bytes=50 << 20, max_json_bytes=1 << 20)
    for route in ("/v1/edits", "/v1/previews"):
        assert limit_for(settings, "POST", route, "multipart/form-data; boundary=x") > settings.max_video_bytes
    assert limit_for(settings, "POST", "/v1/previews", "application/json") == settings.max_json_bytes


def test_a_sheets_webhook_deliveries_are_listed_under_previews(corpus: Corpus) -> None:
    c = corpus
    files, data = {"video": c.files["video"]}, {"emotions": "happy"}
    made = c.client.post("/v1/previews", headers=c.auth(), files=files, data=data)
    assert made.status_code == 202, made.text
    sheet = made.json()["id"]
    listed = c.client.get(f"/v1/previews/{sheet}/webhook-deliveries", headers=c.auth())
    assert listed.status_code == 200 and listed.json()["data"] == []
    replay = c.client.post(f"/v1/previews/{sheet}/webhook-deliveries/dlv_x/replay", headers=c.auth())
    assert (replay.status_code, replay.json()["code"]) == (404, "delivery_not_found")
    other = c.client.get(f"/v1/previews/{sheet}/webhook-deliveries", headers=c.auth(c.other_key))
    assert (other.status_code, other.json()["code"]) == (404, "preview_not_found")
    as_edit = c.client.get(f"/v1/edits/{sheet}/webhook-deliveries", headers=c.auth())
    assert (as_edit.status_code, as_edit.json()["code"]) == (404, "edit_not_found")
