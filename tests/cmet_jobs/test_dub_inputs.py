"""What submission checks of a dub's inputs without a job: photo assets pass the sniff, speech tracks and photos."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import soundfile
from PIL import Image

from cmet_core.errors import ErrorCode
from cmet_core.options import Limits
from cmet_jobs.errors import RequestError
from cmet_jobs.inputs import check_photo, check_speech_track, sniff_asset


def _image(fmt: str, size: tuple[int, int] = (32, 24)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, (10, 200, 30)).save(out, fmt)
    return out.getvalue()


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_a_photo_asset_passes_as_a_video_but_not_as_speech(fmt: str) -> None:
    head = _image(fmt)[:512]
    sniff_asset(head, "video", "ast_x")
    with pytest.raises(RequestError) as err:
        sniff_asset(head, "speech", "ast_x")
    assert err.value.code == ErrorCode.NOT_MEDIA


def test_photo_and_speech_track_checks(tmp_path: Path) -> None:
    big = tmp_path / "big.png"
    big.write_bytes(_image("PNG", (2000, 1600)))
    with pytest.raises(RequestError) as err:
        check_photo(big, Limits(max_pixels_per_second=2000 * 1600 * 25 - 1))
    assert err.value.code == ErrorCode.BAD_PHOTO and "the uploaded file" in str(err.value)
    check_photo(big, Limits())
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff" + b"\x00" * 40)
    with pytest.raises(RequestError) as err:
        check_photo(tmp_path / "broken.jpg", Limits())
    assert err.value.code == ErrorCode.BAD_PHOTO
    track = tmp_path / "line.wav"
    soundfile.write(str(track), np.zeros(16000 * 3, np.float32), 16000)
    check_speech_track(track, 5.0)  # silence is found when it is decoded, by the worker
    with pytest.raises(RequestError) as err:
        check_speech_track(track, 2.0)
    assert err.value.code == ErrorCode.SPEECH_TOO_LONG
