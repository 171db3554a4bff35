"""Assets without HTTP, on SQLite and local storage: jobs' snapshots, and the sweep of unused assets."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from PIL import Image
from sqlalchemy import delete, update

from cmet_core.errors import ErrorCode
from cmet_core.media.photo import is_photo
from cmet_core.media.sample import write_sample_clip
from cmet_jobs import probes, uploads
from cmet_jobs.db.models import ApiKey, Asset, now
from cmet_jobs.db.session import migrate, session_scope
from cmet_jobs.errors import RequestError
from cmet_jobs.inputs import SNIFF_BYTES, sniff_asset
from cmet_jobs.settings import JobsSettings
from cmet_jobs.storage import LocalStorage, storage_for
from tests.records import new_key
from worker.sweeper import sweep_assets

RETENTION_S = 3600


@pytest.fixture
def settings(tmp_path: Path) -> JobsSettings:
    made = JobsSettings(data_dir=tmp_path / "data", asset_retention_s=RETENTION_S, public_url="http://cmet.test")
    migrate(made.db_url)
    return made


@pytest.fixture
def clip(tmp_path: Path) -> Path:
    return write_sample_clip(tmp_path / "talk.mp4", seconds=0.2)


def _asset(
    settings: JobsSettings, key_id: str, file: Path | None, age_s: float = 0, used_s: float | None = None
) -> str:
    """An asset made `age_s` ago (last used `used_s` ago), with `file` uploaded to it."""
    storage = storage_for(settings)
    with session_scope(settings.db_url) as session:
        key = session.get(ApiKey, key_id)
        assert key is not None
        most = settings.max_video_bytes  # signed for the kind's limit: these tests PUT files of several sizes
        asset = uploads.new_upload(session, settings, storage, key, "video", most, "talk.mp4", "video/mp4").asset
        asset.created_at = now() - timedelta(seconds=age_s)
        asset.last_used_at = None if used_s is None else now() - timedelta(seconds=used_s)
        if file is not None:
            storage.put_file(asset.storage_key, file, "video/mp4")
        return asset.id


def _left(settings: JobsSettings) -> set[str]:
    with session_scope(settings.db_url) as session:
        return {a.id for a in session.query(Asset)}


def test_unused_assets_are_swept_after_the_retention(settings: JobsSettings, clip: Path) -> None:
    key = new_key(settings.db_url)
    stale = _asset(settings, key, clip, age_s=RETENTION_S + 60)
    _asset(settings, key, None, age_s=RETENTION_S + 60)  # never uploaded
    used_lately = _asset(settings, key, clip, age_s=RETENTION_S + 60, used_s=600)
    fresh = _asset(settings, key, clip)
    storage = storage_for(settings)
    storage.copy(f"assets/{key}/{stale}", "jobs/edt_x/input/video")  # a job's snapshot of the stale one

    assert sweep_assets(settings) == 2  # what the workers' sweeper runs every minute
    assert _left(settings) == {used_lately, fresh}
    assert storage.size(f"assets/{key}/{stale}") is None
    assert storage.size(f"assets/{key}/{used_lately}") == storage.size(f"assets/{key}/{fresh}") == clip.stat().st_size
    assert storage.size("jobs/edt_x/input/video") == clip.stat().st_size  # edits keep their copies
    assert sweep_assets(settings) == 0


def test_using_an_asset_starts_its_retention_again(settings: JobsSettings, clip: Path) -> None:
    key_id = new_key(settings.db_url)
    asset_id = _asset(settings, key_id, clip, age_s=RETENTION_S + 60)  # due for the sweep
    storage = storage_for(settings)
    with session_scope(settings.db_url) as session:
        key = session.get(ApiKey, key_id)
        assert key is not None
        uploads.usable(session, storage, key, asset_id, "video")
    with session_scope(settings.db_url) as session:
        asset = session.get(Asset, asset_id)
        assert asset is not None and asset.last_used_at is not None
        assert uploads.expires_at(asset, RETENTION_S) > now() + timedelta(seconds=RETENTION_S - 5)
    assert sweep_assets(settings) == 0 and _left(settings) == {asset_id}


def test_a_snapshot_is_checked_again_and_outlives_a_new_put(settings: JobsSettings, clip: Path, tmp_path: Path) -> None:
    key_id = new_key(settings.db_url)
    asset_id = _asset(settings, key_id, clip)
    storage = storage_for(settings)
    assert isinstance(storage, LocalStorage)
    text = tmp_path / "notes.txt"  # not media (a photo would pass now: dubs animate photos)
    text.write_bytes(b"just some text, neither a video nor an image\n" * 4)
    with session_scope(settings.db_url) as session:
        key = session.get(ApiKey, key_id)
        assert key is not None
        asset = uploads.usable(session, storage, key, asset_id, "video")
        uploads.snapshot(storage, asset, "jobs/edt_a/input/video", "video")
        storage.put_file(asset.storage_key, text, "text/plain")  # a PUT after the job was accepted
        assert storage.path("jobs/edt_a/input/video").read_bytes() == clip.read_bytes()
        # a PUT between the check and the copy: the copy is what is checked, and refused
        with pytest.raises(RequestError) as refused:
            uploads.snapshot(storage, asset, "jobs/edt_b/input/video", "video")
        assert refused.value.code is ErrorCode.NOT_MEDIA
        storage.delete_prefix(asset.storage_key)
        with pytest.raises(RequestError) as gone:
            uploads.snapshot(storage, asset, "jobs/edt_c/input/video", "video")
        assert gone.value.code is ErrorCode.ASSET_NOT_FOUND


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "GIF", "TIFF"])
def test_a_photo_is_taken_as_an_asset_as_it_is_as_a_part(tmp_path: Path, fmt: str) -> None:
    """One rule: an image the submission takes as a photo part passes the asset's sniff too."""
    path = tmp_path / f"face.{fmt.lower()}"
    Image.new("RGB", (64, 64), (200, 150, 120)).save(path, fmt)
    assert is_photo(path)
    sniff_asset(path.read_bytes()[:SNIFF_BYTES], "video", "ast_x")
    with pytest.raises(RequestError):
        sniff_asset(b"GIF is not a format of this text" * 16, "video", "ast_x")


def test_a_probe_answer_is_never_shown_for_a_newer_file(settings: JobsSettings, tmp_path: Path, clip: Path) -> None:
    """The answer belongs to the file it measured: after a new PUT to the asset it is pending again."""
    key_id = new_key(settings.db_url)
    text = tmp_path / "notes.txt"
    text.write_text("not a video\n" * 100)
    asset_id = _asset(settings, key_id, text)
    storage = storage_for(settings)
    (tmp_path / "work").mkdir()
    assert probes.run(settings, storage, asset_id, tmp_path / "work") == "failed"  # not_media, before any model

    def answer() -> str:
        with session_scope(settings.db_url) as session:
            key = session.get(ApiKey, key_id)
            assert key is not None
            return probes.read(session, storage, key, asset_id).state

    assert answer() == "failed"
    with session_scope(settings.db_url) as session:
        asset = session.get(Asset, asset_id)
        assert asset is not None
        storage.put_file(asset.storage_key, clip, "video/mp4")  # a new PUT: another file
    assert answer() == "pending"


def test_files_no_record_owns_or_over_their_limit_are_swept(settings: JobsSettings, clip: Path) -> None:
    """A PUT to a deleted asset's URL recreates its file, and an S3 presigned PUT has no size limit: the
    sweeper deletes both kinds of stray file, and leaves an asset's own files (and its probe's answer)."""
    key = new_key(settings.db_url)
    kept, deleted, large = (_asset(settings, key, clip) for _ in range(3))
    storage = storage_for(settings)
    storage.put_file(f"assets/{key}/{kept}.probe.json", clip, "application/json")
    with session_scope(settings.db_url) as session:
        session.execute(delete(Asset).where(Asset.id == deleted))
        session.execute(update(Asset).where(Asset.id == large).values(max_bytes=clip.stat().st_size - 1))
    assert sweep_assets(settings) == 2
    assert storage.size(f"assets/{key}/{deleted}") is None and storage.size(f"assets/{key}/{large}") is None
    assert storage.size(f"assets/{key}/{kept}") == clip.stat().st_size
    assert storage.size(f"assets/{key}/{kept}.probe.json") is not None
    assert sweep_assets(settings) == 0


def test_signed_local_urls_name_the_origin_of_the_request(tmp_path: Path) -> None:
    """A page opened at localhost (or a LAN name, or a proxy) gets upload URLs of its own origin, not
    127.0.0.1's, which the browser would block; a set public URL and, outside a request, the API's own win."""
    from cmet_jobs.storage import request_origin

    unset = LocalStorage(tmp_path / "a", None, b"secret", 60, "http://127.0.0.1:8123")
    fixed = LocalStorage(tmp_path / "b", "https://cmet.example.org/", b"secret", 60, "http://127.0.0.1:8123")
    with request_origin("http://localhost:8123/"):
        assert unset.upload_url("assets/x", 10)[0].startswith("http://localhost:8123/v1/files/assets/x?")
        assert fixed.download_url("jobs/y").startswith("https://cmet.example.org/v1/files/jobs/y?")
    assert unset.download_url("jobs/y").startswith("http://127.0.0.1:8123/v1/files/jobs/y?")  # a webhook's


def test_upload_urls_are_signed_for_the_files_size(settings: JobsSettings, tmp_path: Path) -> None:
    """Item 10: an upload URL is signed for the size the client declared. S3's signs `Content-Length` (S3
    refuses a PUT of any other length; moto, the tests' server, checks no signature, so this reads the
    URL); the local backend's signature covers the size, so the URL cannot be edited to another."""
    from urllib.parse import parse_qs, urlsplit

    from cmet_jobs.storage import S3Storage, verify

    s3_settings = {
        "storage": "s3",
        "s3_endpoint_url": "http://127.0.0.1:9",
        "s3_access_key_id": "a",
        "s3_secret_access_key": "b",
    }
    s3 = S3Storage(settings.model_copy(update=s3_settings))
    query = parse_qs(urlsplit(s3.upload_url("assets/k/ast_1", 1234)[0]).query)
    assert query["X-Amz-SignedHeaders"] == ["content-length;host"], query

    local = LocalStorage(tmp_path / "store", "http://cmet.test", b"secret", 60)
    signed = {k: v[0] for k, v in parse_qs(urlsplit(local.upload_url("assets/k/ast_1", 1234)[0]).query).items()}
    assert signed["size"] == "1234"
    args = (local.secret, "PUT", "assets/k/ast_1", int(signed["expires"]), signed["signature"])
    assert verify(*args, 1234) and not verify(*args, 1235)
