"""The optional face restorer in model sets: strict conversion of `params_ema`, the pinned pull from a
release URL (a local HTTP server here; no test reaches the internet), licence status, sets without it."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from cmet_core.modelsets.build import make_tiny_set, verify_set
from cmet_core.modelsets.checkpoints import load_gfpgan
from cmet_core.modelsets.convert import convert_gfpgan
from cmet_core.modelsets.manifests import ModelManifest
from cmet_core.modelsets.pull import RestorerPull, UrlFile, download_url, pull_restorer
from cmet_core.modelsets.sets import list_models, load_set
from cmet_core.networks.errors import ModelLoadError
from cmet_core.networks.gfpgan import GFPGAN, LICENCE, TINY_GFPGAN
from cmet_core.verify.fill import fill_module
from tests.cmet_core.test_sets import FakeHub, tiny_spec
from tests.cmet_core.test_sets import fake_hub as fake_hub  # noqa: F401 (a fixture)
from tests.cmet_core.test_sets import no_network as no_network  # noqa: F401 (an autouse fixture)


def _tiny_state() -> dict[str, torch.Tensor]:
    net = GFPGAN(TINY_GFPGAN)
    fill_module(net, "gfpgan")
    return net.state_dict()


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A file shaped like GFPGANv1.4.pth: `params_ema` (read) next to `params` (dropped)."""
    path = tmp_path_factory.mktemp("published") / "GFPGANv1.4.pth"
    state = _tiny_state()
    torch.save({"params_ema": state, "params": {k: v + 1 for k, v in state.items()}}, path)
    return path


class _Release:
    """Serves files by name over HTTP on 127.0.0.1, like a release page or a mirror."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self.requests: list[str] = []
        release = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_args: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802
                release.requests.append(self.path)
                body = files.get(self.path.rsplit("/", 1)[-1])
                self.send_response(200 if body is not None else 404)
                self.send_header("Content-Length", str(len(body or b"")))
                self.end_headers()
                self.wfile.write(body or b"")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def release(published: Path) -> Iterator[_Release]:
    server = _Release({published.name: published.read_bytes()})
    yield server
    server.close()


def _pin(published: Path, url: str) -> UrlFile:
    return UrlFile(
        url=f"{url}/download/v1.3.0/{published.name}", sha256=hashlib.sha256(published.read_bytes()).hexdigest()
    )


def test_conversion_reads_params_ema_strictly(published: Path, tmp_path: Path) -> None:
    manifest = convert_gfpgan(published, tmp_path, config=TINY_GFPGAN)
    net = load_gfpgan(manifest)
    assert all(torch.equal(net.state_dict()[k], v) for k, v in _tiny_state().items())
    assert ModelManifest.model_validate_json(manifest.read_text()).licence == LICENCE
    state = _tiny_state()
    del state["stylegan_decoder.noises.noise3"]
    torch.save({"params_ema": state}, tmp_path / "short.pth")
    with pytest.raises(ModelLoadError, match="1 missing keys: stylegan_decoder.noises.noise3"):
        convert_gfpgan(tmp_path / "short.pth", tmp_path / "out", config=TINY_GFPGAN)
    torch.save({"params": _tiny_state()}, tmp_path / "params.pth")
    with pytest.raises(ModelLoadError, match="no 'params_ema' entry"):
        convert_gfpgan(tmp_path / "params.pth", tmp_path / "out", config=TINY_GFPGAN)
    with pytest.raises(ModelLoadError, match="does not fit gfpgan"):
        convert_gfpgan(published, tmp_path / "out")  # declared as the published 512 network


def test_pull_restorer_from_release_url_and_mirror(published: Path, release: _Release, tmp_path: Path) -> None:
    spec = RestorerPull(file=_pin(published, release.url), config=TINY_GFPGAN.to_dict())
    manifest = pull_restorer(tmp_path / "set", spec, cache_dir=tmp_path / "cache")
    model = ModelManifest.model_validate_json(manifest.read_text())
    assert model.source.kind == "url" and model.source.url == spec.file.url and model.licence == LICENCE
    assert release.requests == ["/download/v1.3.0/GFPGANv1.4.pth"]
    pull_restorer(tmp_path / "again", spec, cache_dir=tmp_path / "cache")
    assert len(release.requests) == 1  # the pinned copy in the cache is used again
    path, source = download_url(spec.file, cache_dir=tmp_path / "other", mirror=f"{release.url}/mirror/")
    assert release.requests[-1] == "/mirror/GFPGANv1.4.pth" and source.url == f"{release.url}/mirror/GFPGANv1.4.pth"
    assert path.read_bytes() == published.read_bytes()


def test_pull_refuses_another_file_and_a_missing_one(published: Path, release: _Release, tmp_path: Path) -> None:
    wrong = UrlFile(url=_pin(published, release.url).url, sha256="0" * 64)
    with pytest.raises(ModelLoadError, match="is not the pinned 0000000000000000"):
        download_url(wrong, cache_dir=tmp_path)
    assert not list(tmp_path.rglob("GFPGANv1.4.pth"))  # nothing kept
    missing = UrlFile(url=f"{release.url}/GFPGANv9.pth", sha256="0" * 64)
    with pytest.raises(ModelLoadError, match="HTTP 404"):
        download_url(missing, cache_dir=tmp_path)


def test_sets_with_and_without_a_restorer(tmp_path: Path) -> None:
    with_one, without = make_tiny_set(tmp_path / "a"), make_tiny_set(tmp_path / "b", restorer=False)
    assert verify_set(with_one).ok and verify_set(without).ok
    assert isinstance(load_set(with_one).restorer, GFPGAN) and load_set(without).restorer is None
    rows, problems = list_models(tmp_path)
    assert not problems
    assert "gfpgan" in [r.kind for r in rows if r.set_name.startswith("a")]
    assert "gfpgan" not in [r.kind for r in rows if r.set_name.startswith("b")]


def test_cli_list_shows_the_licence_status(published: Path, tmp_path: Path) -> None:
    from cmet_cli.models_cmd import app

    make_tiny_set(tmp_path / "tiny", restorer=False)
    convert_gfpgan(published, tmp_path / "tiny", config=TINY_GFPGAN)
    from cmet_core.modelsets.build import write_set_manifest

    write_set_manifest(tmp_path / "tiny", "tiny", "0.1.0")
    result = CliRunner().invoke(app, ["list", "--dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert f"licence of gfpgan-v1.4: {LICENCE}" in result.output and "no stated licence" in LICENCE


def test_cli_pull_takes_the_restorer_from_a_mirror(
    fake_hub: FakeHub, published: Path, release: _Release, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The whole `cmet models pull`: hub files from the (fake) hub, the restorer from a mirror instead of
    GitHub (which `no_network` would refuse), converted into the same set."""
    from cmet_cli.models_cmd import app

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    spec = tiny_spec()
    official = RestorerPull().file
    spec.restorer = RestorerPull(file=official.model_copy(update={"sha256": _pin(published, release.url).sha256}))
    spec.restorer.config = TINY_GFPGAN.to_dict()
    (tmp_path / "spec.json").write_text(spec.model_dump_json())
    args = [
        "pull",
        "--dir",
        str(tmp_path / "models"),
        "--spec",
        str(tmp_path / "spec.json"),
        "--endpoint",
        fake_hub.url,
        "--force",
    ]
    result = CliRunner().invoke(app, [*args, "--mirror", f"{release.url}/gfpgan"])
    assert result.exit_code == 0, result.output
    assert release.requests == ["/gfpgan/GFPGANv1.4.pth"]
    assert verify_set(tmp_path / "models" / "pulled").ok
    assert isinstance(load_set(tmp_path / "models" / "pulled").restorer, GFPGAN)
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 0, again.output  # the pinned copy in the cache: no download
    assert len(release.requests) == 1
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    result = CliRunner().invoke(app, args)  # no mirror, nothing cached: GitHub, out of reach here
    assert result.exit_code == 1 and "cannot download https://github.com/TencentARC/GFPGAN" in result.output


def test_verify_loads_the_restorer_strictly(tiny_set: Path) -> None:
    report = verify_set(tiny_set)
    assert next(c.detail for c in report.checks if c.kind == "gfpgan") == "sha256 ok; strict load ok"
