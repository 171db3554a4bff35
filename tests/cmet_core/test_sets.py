"""Checkpoints, converters, model sets, `pull` from a local fake hub, and the `cmet models` CLI.

Everything runs on tiny models. No test reaches the internet: `no_network` refuses every socket
connection except to loopback, and `pull` is served by a stdlib HTTP server imitating the hub.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from cmet_core.backbones.edtalk.network import TINY_EDTALK, Generator
from cmet_core.backbones.edtalk.tools import convert_edtalk, load_edtalk
from cmet_core.modelsets.build import (
    TINY_EMOTION2VEC,
    make_tiny_set,
    verify_set,
    write_set_manifest,
)
from cmet_core.modelsets.checkpoints import load_audio2lip, load_connector, write_model
from cmet_core.modelsets.convert import (
    CheckpointWarning,
    convert_audio2lip,
    convert_connector,
    import_emotion2vec,
    read_torch_checkpoint,
)
from cmet_core.modelsets.manifests import (
    SET_MANIFEST,
    ModelManifest,
    Source,
    sha256_file,
)
from cmet_core.modelsets.pull import OFFICIAL_FILES, OFFICIAL_SPEC, PullSpec, pull
from cmet_core.modelsets.sets import list_models, load_set, read_set, select_set
from cmet_core.networks.audio2lip import TINY_AUDIO2LIP, Audio2Lip
from cmet_core.networks.connector import TINY_CONNECTOR, Connector
from cmet_core.networks.errors import ModelLoadError
from cmet_core.settings import get_settings

try:
    from cmet_cli.main import app as cli_app

    MODELS = ["models"]
except ImportError:  # a sibling command module is missing: test our group on its own
    from cmet_cli.models_cmd import app as cli_app

    MODELS = []

FAKE_COMMIT = "0123456789abcdef0123456789abcdef01234567"


# ----------------------------------------------------------------------------------------------
# Helpers


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test: connections anywhere but loopback fail, and no proxy is consulted."""
    real_connect = socket.socket.connect

    def guarded(self: socket.socket, address: object) -> None:
        host = address[0] if isinstance(address, tuple) else str(address)
        if self.family in (socket.AF_INET, socket.AF_INET6) and host not in ("127.0.0.1", "::1", "localhost"):
            raise OSError(f"network disabled in tests (tried {address})")
        return real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", guarded)
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy", "HF_HUB_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


def tiny_state(kind: str, seed: int = 1) -> dict[str, torch.Tensor]:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        module: torch.nn.Module
        if kind == "audio2lip":
            module = Audio2Lip(TINY_AUDIO2LIP)
            for name, buf in module.named_buffers():
                if name.endswith("running_mean"):
                    buf.normal_()
        else:
            module = Generator(TINY_EDTALK) if kind == "edtalk" else Connector(TINY_CONNECTOR)
    return module.state_dict()


def fake_emotion2vec(directory: Path) -> Path:
    """A tiny emotion2vec dir in the published layout (config.yaml, model.pt, tokens.txt)."""
    from cmet_core.modelsets.speech_tiny import make_tiny_emotion2vec

    return Path(make_tiny_emotion2vec(directory, seed=5, **TINY_EMOTION2VEC))


def handmade_set(directory: Path) -> Path:
    """A set assembled piece by piece (write_model, import_emotion2vec, write_set_manifest)."""
    directory.mkdir(parents=True)
    src = Source(kind="make-tiny", seed=1)
    write_model(
        tiny_state("edtalk"),
        directory,
        kind="edtalk",
        name="e",
        version="0.1.0",
        config=TINY_EDTALK.to_dict(),
        source=src,
    )
    write_model(
        tiny_state("connector"),
        directory,
        kind="connector",
        name="c",
        version="0.1.0",
        config=TINY_CONNECTOR.to_dict(),
        source=src,
    )
    e2v = fake_emotion2vec(directory.parent / f"{directory.name}-e2v-src")
    import_emotion2vec(
        e2v / "config.yaml",
        e2v / "model.pt",
        directory,
        name="e2v",
        version="0.1.0",
        source=src,
        extra=[e2v / "tokens.txt"],
    )
    write_set_manifest(directory, "handmade", "0.1.0")
    return directory


def run_cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli_app, [*MODELS, *args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.output


# ----------------------------------------------------------------------------------------------
# Round trip


def test_make_tiny_round_trip(tiny_set: Path) -> None:
    manifest = read_set(tiny_set)
    assert set(manifest.models) == {"edtalk", "connector", "emotion2vec", "gfpgan", "audio2lip"}
    rows, problems = list_models(tiny_set.parent)
    assert not problems and [r.kind for r in rows] == ["edtalk", "emotion2vec", "connector", "gfpgan", "audio2lip"]
    assert all(r.source == "make-tiny seed=0" and r.size > 0 for r in rows)
    report = verify_set(tiny_set)
    assert report.ok, [c.line() for c in report.checks]
    loaded = load_set(tiny_set)
    assert loaded.generator.cfg == TINY_EDTALK and loaded.connector.cfg == TINY_CONNECTOR
    assert not loaded.generator.training and not loaded.connector.training
    on_disk = load_file(tiny_set / "edtalk.safetensors")
    assert all(torch.equal(on_disk[k], v) for k, v in loaded.generator.state_dict().items())
    assert (loaded.emotion2vec_dir / "config.yaml").is_file() and (loaded.emotion2vec_dir / "model.pt").is_file()
    assert select_set(tiny_set.parent) == tiny_set


def test_make_tiny_is_deterministic_and_seeded(tiny_set: Path, tmp_path: Path) -> None:
    again = make_tiny_set(tmp_path / "again", seed=0)
    other = make_tiny_set(tmp_path / "other", seed=1)
    digest = lambda p: sha256_file(p / "edtalk.safetensors")  # noqa: E731
    assert digest(again) == digest(tiny_set) != digest(other)


def test_tiny_connector_speech_dim_matches_tiny_emotion2vec(tiny_set: Path) -> None:
    e2v = ModelManifest.model_validate_json((tiny_set / "emotion2vec.json").read_text())
    assert e2v.config["embed_dim"] == TINY_CONNECTOR.speech_dim


def test_tiny_emotion2vec_loads_through_funasr(tiny_set: Path) -> None:
    pytest.importorskip(
        "funasr", reason="funasr not installed: emotion2vec load checks need `pip install cmet[speech]`"
    )
    report = verify_set(tiny_set)
    assert "loaded through funasr" in next(c.detail for c in report.checks if c.kind == "emotion2vec")


def test_make_tiny_refuses_to_overwrite(tiny_set: Path, tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="already exists"):
        make_tiny_set(tiny_set)
    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "notes.txt").write_text("mine")
    with pytest.raises(ModelLoadError, match="not a model set"):
        make_tiny_set(occupied, force=True)
    assert (occupied / "notes.txt").read_text() == "mine"


@pytest.mark.slow
def test_make_filled_matches_the_conformance_kit(
    request: pytest.FixtureRequest, tmp_path: Path, conformance_kit: Path
) -> None:
    if "slow" not in (request.config.getoption("markexpr") or ""):
        pytest.skip("full-size models (about 10 s); run with -m slow")
    from cmet_core.modelsets.build import make_filled_set
    from cmet_core.verify.fill import state_digest

    loaded = load_set(make_filled_set(tmp_path / "filled"))
    kit = {
        m: json.loads((conformance_kit / f"{m}_manifest.json").read_text()) for m in ("edtalk_gen", "cmet_connector")
    }
    assert state_digest(loaded.generator.state_dict()) == kit["edtalk_gen"]["filled_state_dict_sha256"]
    pe = [k for k in loaded.connector.state_dict() if k.endswith(".pe")]
    digest = state_digest(loaded.connector.state_dict(), exclude=pe)
    assert digest == kit["cmet_connector"]["filled_state_dict_sha256_without_pe"]


# ----------------------------------------------------------------------------------------------
# Converters


def test_convert_official_edtalk_and_connector(tmp_path: Path) -> None:
    gen_state, con_state = tiny_state("edtalk"), tiny_state("connector")
    torch.save({"gen": gen_state}, tmp_path / "EDTalk.pt")
    optimizer = {"state": {0: {"exp_avg": torch.zeros(3)}}, "param_groups": [{"lr": 1e-4, "params": [0]}]}
    torch.save(
        {"state_dict": con_state, "optimizer": optimizer, "global_step": 200000, "global_epoch": 2105},
        tmp_path / "c.pth",
    )
    ed = load_edtalk(convert_edtalk(tmp_path / "EDTalk.pt", tmp_path / "out", config=TINY_EDTALK))
    con = load_connector(convert_connector(tmp_path / "c.pth", tmp_path / "out", config=TINY_CONNECTOR))
    assert all(torch.equal(ed.state_dict()[k], v) for k, v in gen_state.items())
    assert all(torch.equal(con.state_dict()[k], v) for k, v in con_state.items())
    manifest = ModelManifest.model_validate_json((tmp_path / "out" / "edtalk.json").read_text())
    assert manifest.source.kind == "file" and manifest.source.sha256 == sha256_file(tmp_path / "EDTalk.pt")
    assert manifest.sha256 == sha256_file(tmp_path / "out" / "edtalk.safetensors")


def test_non_tensor_objects_load_as_placeholders_with_a_warning(tmp_path: Path) -> None:
    torch.save({"gen": tiny_state("edtalk"), "args": argparse.Namespace(size=32)}, tmp_path / "EDTalk.pt")
    with pytest.warns(CheckpointWarning, match="argparse.Namespace"):
        mpath = convert_edtalk(tmp_path / "EDTalk.pt", tmp_path / "out", config=TINY_EDTALK)
    assert load_edtalk(mpath).cfg == TINY_EDTALK


def test_import_emotion2vec(tmp_path: Path) -> None:
    src = fake_emotion2vec(tmp_path / "e2v")
    mpath = import_emotion2vec(src / "config.yaml", src / "model.pt", tmp_path / "out")
    manifest = ModelManifest.model_validate_json(mpath.read_text())
    assert manifest.kind == "emotion2vec" and manifest.config["embed_dim"] == TINY_CONNECTOR.speech_dim
    assert manifest.files == {n: sha256_file(src / n) for n in ("config.yaml", "model.pt")}
    assert manifest.num_tensors == len(torch.load(src / "model.pt", weights_only=True)["model"])


# ----------------------------------------------------------------------------------------------
# Bad inputs: every one a ModelLoadError naming the file and the problem


def _write(path: Path, payload: object) -> Path:
    torch.save(payload, path)
    return path


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p.write_bytes(b""), "is empty"),
        (lambda p: p.write_text("not a checkpoint at all"), "not a PyTorch checkpoint"),
        (
            lambda p: (_write(p, {"gen": tiny_state("edtalk")}), p.write_bytes(p.read_bytes()[:5000])),
            "truncated or corrupt",
        ),
        (lambda p: _write(p, [torch.ones(2)]), "holds a list, not a dict"),
        (lambda p: _write(p, {"generator": tiny_state("edtalk")}), "no 'gen' entry .*'generator'"),
        (lambda p: _write(p, {"gen": dict(list(tiny_state("edtalk").items())[2:])}), "2 missing keys: enc.net_app"),
        (
            lambda p: _write(p, {"gen": {**tiny_state("edtalk"), "extra.w": torch.ones(1)}}),
            "1 unexpected keys: extra.w",
        ),
        (lambda p: _write(p, {"gen": tiny_state("connector")}), "missing keys.*unexpected keys"),
        (
            lambda p: _write(p, {"gen": {**tiny_state("edtalk"), "direction_exp.weight": torch.ones(64, 11)}}),
            r"shape/dtype mismatches: direction_exp.weight file \(64,11\) float32 vs model \(64,10\)",
        ),
    ],
    ids=["empty", "text", "truncated", "not-a-dict", "wrong-key", "missing", "unexpected", "wrong-model", "shape"],
)
def test_bad_official_files(tmp_path: Path, make, message: str) -> None:  # type: ignore[no-untyped-def]
    src = tmp_path / "EDTalk.pt"
    make(src)
    with pytest.raises(ModelLoadError, match=message) as err:
        convert_edtalk(src, tmp_path / "out", config=TINY_EDTALK)
    assert str(src) in str(err.value)
    assert not (tmp_path / "out" / "edtalk.safetensors").exists()


def test_connector_without_state_dict_entry(tmp_path: Path) -> None:
    src = _write(tmp_path / "c.pth", {"optimizer": {}, "global_step": 1})
    with pytest.raises(ModelLoadError, match=r"no 'state_dict' entry \(top-level keys: 'optimizer', 'global_step'\)"):
        convert_connector(src, tmp_path / "out", config=TINY_CONNECTOR)


def test_config_that_does_not_match_weights(tmp_path: Path) -> None:
    src = _write(tmp_path / "EDTalk.pt", {"gen": tiny_state("edtalk")})
    with pytest.raises(ModelLoadError, match="does not fit edtalk EDTalkConfig\\(size=256"):
        convert_edtalk(src, tmp_path / "out")


@pytest.fixture
def converted(tmp_path: Path) -> Path:
    return write_model(
        tiny_state("edtalk"),
        tmp_path / "m",
        kind="edtalk",
        name="e",
        version="0.1.0",
        config=TINY_EDTALK.to_dict(),
        source=Source(kind="make-tiny", seed=1),
    )


def test_sha256_mismatch(converted: Path) -> None:
    weights = converted.with_suffix(".safetensors")
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(ModelLoadError, match=f"sha256 mismatch for {weights}"):
        load_edtalk(weights)


def test_truncated_safetensors_with_matching_manifest(converted: Path) -> None:
    weights = converted.with_suffix(".safetensors")
    weights.write_bytes(weights.read_bytes()[:-100])
    manifest = json.loads(converted.read_text())
    manifest["sha256"] = sha256_file(weights)
    converted.write_text(json.dumps(manifest))
    with pytest.raises(ModelLoadError, match="not a readable safetensors file"):
        load_edtalk(converted)


def test_missing_or_broken_manifest(converted: Path) -> None:
    weights = converted.with_suffix(".safetensors")
    converted.write_text('{"name": "e", ')
    with pytest.raises(ModelLoadError, match="is not valid JSON"):
        load_edtalk(weights)
    converted.write_text(json.dumps({"name": "e"}))
    with pytest.raises(ModelLoadError, match="model manifest .* is invalid: version: Field required"):
        load_edtalk(weights)
    converted.unlink()
    with pytest.raises(ModelLoadError, match="has no manifest edtalk.json beside it"):
        load_edtalk(weights)
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_edtalk(weights.with_name("nothing.safetensors"))


def test_manifest_of_another_kind_and_bad_version(converted: Path) -> None:
    with pytest.raises(ModelLoadError, match="describes a edtalk model, not connector"):
        load_connector(converted)
    manifest = json.loads(converted.read_text())
    manifest["version"] = "1.0"
    converted.write_text(json.dumps(manifest))
    with pytest.raises(ModelLoadError, match="not semantic versioning"):
        load_edtalk(converted)


def test_emotion2vec_dir_without_config(tmp_path: Path) -> None:
    src = fake_emotion2vec(tmp_path / "e2v")
    (src / "config.yaml").unlink()
    with pytest.raises(ModelLoadError, match=f"emotion2vec config {src / 'config.yaml'} does not exist"):
        import_emotion2vec(src / "config.yaml", src / "model.pt", tmp_path / "out")
    (src / "config.yaml").write_text("just: text\n")
    with pytest.raises(ModelLoadError, match="is not an emotion2vec config.yaml"):
        import_emotion2vec(src / "config.yaml", src / "model.pt", tmp_path / "out")


def test_broken_sets_are_reported_not_raised(tmp_path: Path) -> None:
    one = handmade_set(tmp_path / "one")
    assert verify_set(one).ok
    (one / "emotion2vec" / "config.yaml").unlink()
    report = verify_set(one)
    assert not report.ok and "missing config.yaml" in report.failures[0].detail
    two = handmade_set(tmp_path / "two")
    shutil.copyfile(one / "connector.json", two / "edtalk.json")
    assert "describes a connector model, not edtalk" in verify_set(two).failures[0].detail
    three = handmade_set(tmp_path / "three")
    (three / SET_MANIFEST).write_text("{}")
    assert "set manifest" in verify_set(three).failures[0].detail


def test_no_model_set_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(
        ModelLoadError, match=r"no model set at .*; run `cmet models pull .*` \(needs network.*make-tiny"
    ):
        select_set(tmp_path / "empty")
    loose = tmp_path / "loose"
    loose.mkdir()
    (loose / "EDTalk.pt").write_bytes(b"x")
    with pytest.raises(ModelLoadError, match="holds model files \\(EDTalk.pt\\) but no models.json"):
        load_set(loose)


def test_reader_never_runs_pickled_code(tmp_path: Path) -> None:
    import pickle

    path = tmp_path / "evil.pt"
    path.write_bytes(pickle.dumps({"gen": print}, protocol=2))
    with pytest.raises(ModelLoadError, match="cannot be loaded safely"):
        read_torch_checkpoint(path)


# ----------------------------------------------------------------------------------------------
# Pull from a local fake hub


class FakeHub:
    """Serves `/{repo_id}/resolve/{revision}/{filename}` with the headers huggingface_hub reads."""

    def __init__(self, files: dict[tuple[str, str], bytes]) -> None:
        self.files = files
        self.requests: list[str] = []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _find(self) -> bytes | None:
                hub.requests.append(f"{self.command} {self.path}")
                repo_id, sep, rest = self.path.partition("/resolve/")
                revision, _, filename = rest.partition("/")
                if not sep or revision not in ("main", FAKE_COMMIT):
                    return None
                return hub.files.get((repo_id.lstrip("/"), filename))

            def _headers(self, body: bytes | None) -> None:
                if body is None:
                    self.send_response(404)
                    self.send_header("X-Error-Code", "EntryNotFound")
                    self.send_header("X-Repo-Commit", FAKE_COMMIT)
                    self.send_header("Content-Length", "0")
                else:
                    self.send_response(200)
                    self.send_header("ETag", f'"{hashlib.sha256(body).hexdigest()}"')
                    self.send_header("X-Repo-Commit", FAKE_COMMIT)
                    self.send_header("Content-Length", str(len(body)))
                    self.send_header("Content-Type", "application/octet-stream")
                self.end_headers()

            def do_HEAD(self) -> None:  # noqa: N802
                self._headers(self._find())

            def do_GET(self) -> None:  # noqa: N802
                body = self._find()
                self._headers(body)
                if body is not None:
                    self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeHub:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def _bytes(payload: object, tmp_path: Path, name: str) -> bytes:
    torch.save(payload, tmp_path / name)
    return (tmp_path / name).read_bytes()


@pytest.fixture
def fake_hub(tmp_path: Path) -> Iterator[FakeHub]:
    e2v = fake_emotion2vec(tmp_path / "e2v-published")
    files = {
        (OFFICIAL_FILES["edtalk"].repo_id, OFFICIAL_FILES["edtalk"].filename): _bytes(
            {"gen": tiny_state("edtalk")}, tmp_path, "g.pt"
        ),
        (OFFICIAL_FILES["connector"].repo_id, OFFICIAL_FILES["connector"].filename): _bytes(
            {"state_dict": tiny_state("connector"), "optimizer": {}, "global_step": 1, "global_epoch": 1},
            tmp_path,
            "c.pth",
        ),
        (OFFICIAL_FILES["audio2lip"].repo_id, OFFICIAL_FILES["audio2lip"].filename): _bytes(
            {"audio2lip": tiny_state("audio2lip")}, tmp_path, "a.pt"
        ),
        (OFFICIAL_FILES["emotion2vec_config"].repo_id, "config.yaml"): (e2v / "config.yaml").read_bytes(),
        (OFFICIAL_FILES["emotion2vec_weights"].repo_id, "model.pt"): (e2v / "model.pt").read_bytes(),
        (OFFICIAL_FILES["emotion2vec_tokens"].repo_id, "tokens.txt"): (e2v / "tokens.txt").read_bytes(),
    }
    with FakeHub(files) as hub:
        yield hub


def tiny_spec() -> PullSpec:
    """The official hub files, declared with the tiny configs the fake hub's files were made with."""
    spec = OFFICIAL_SPEC.model_copy(deep=True)
    spec.name = "pulled"
    spec.edtalk.config = TINY_EDTALK.to_dict()
    spec.connector.config = TINY_CONNECTOR.to_dict()
    spec.restorer = None  # a release asset, not on the hub: test_restorer_models.py pulls it
    assert spec.audio2lip is not None
    spec.audio2lip.config = TINY_AUDIO2LIP.to_dict()
    return spec


def test_network_is_really_off() -> None:
    with pytest.raises(OSError, match="network disabled"):
        socket.create_connection(("192.0.2.1", 443), timeout=1)


def test_pull_from_fake_hub(fake_hub: FakeHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_ENDPOINT", fake_hub.url)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    dest = pull(tmp_path / "models", tiny_spec())
    assert dest == tmp_path / "models" / "pulled"
    assert any(r.startswith("GET /coldhyuk/C-MET/resolve/") for r in fake_hub.requests)
    assert (tmp_path / "hf-cache").is_dir()
    assert verify_set(dest).ok
    loaded = load_set(dest)
    assert all(torch.equal(loaded.connector.state_dict()[k], v) for k, v in tiny_state("connector").items())
    source = ModelManifest.model_validate_json((dest / "edtalk.json").read_text()).source
    assert (source.kind, source.repo_id, source.filename, source.revision) == (
        "hub",
        "coldhyuk/C-MET",
        "pretrained_weights/EDTalk.pt",
        FAKE_COMMIT,
    )
    assert source.url is not None and source.url.startswith(fake_hub.url)
    assert any(r.startswith("GET /coldhyuk/C-MET/resolve/") and r.endswith("/Audio2Lip.pt") for r in fake_hub.requests)
    assert loaded.audio2lip is not None
    assert all(torch.equal(loaded.audio2lip.state_dict()[k], v) for k, v in tiny_state("audio2lip").items())
    a2l_source = ModelManifest.model_validate_json((dest / "audio2lip.json").read_text()).source
    assert (a2l_source.repo_id, a2l_source.filename) == ("coldhyuk/C-MET", "pretrained_weights/Audio2Lip.pt")


def test_pull_spec_without_audio2lip_makes_a_set_that_edits(fake_hub: FakeHub, tmp_path: Path) -> None:
    spec = tiny_spec()
    spec.audio2lip = None
    dest = pull(tmp_path / "models", spec, endpoint=fake_hub.url, cache_dir=tmp_path / "cache")
    assert "audio2lip" not in read_set(dest).models and verify_set(dest).ok
    assert load_set(dest).audio2lip is None
    assert not any(r.endswith("/Audio2Lip.pt") for r in fake_hub.requests)


def test_convert_audio2lip_is_strict(tmp_path: Path) -> None:
    good = tmp_path / "Audio2Lip.pt"
    torch.save({"audio2lip": tiny_state("audio2lip")}, good)
    mpath = convert_audio2lip(good, tmp_path / "out", config=TINY_AUDIO2LIP)
    net = load_audio2lip(mpath)
    assert not net.training and net.config == TINY_AUDIO2LIP
    state = tiny_state("audio2lip")
    state.pop("audio_encoder.3.conv_block.1.running_var")
    torch.save({"audio2lip": state}, tmp_path / "missing.pt")
    with pytest.raises(ModelLoadError, match="1 missing keys: audio_encoder.3.conv_block.1.running_var"):
        convert_audio2lip(tmp_path / "missing.pt", tmp_path / "out2", config=TINY_AUDIO2LIP)
    torch.save({"gen": tiny_state("edtalk")}, tmp_path / "wrong.pt")
    with pytest.raises(ModelLoadError, match="not a Audio2Lip checkpoint: no 'audio2lip' entry"):
        convert_audio2lip(tmp_path / "wrong.pt", tmp_path / "out3", config=TINY_AUDIO2LIP)
    with pytest.raises(ModelLoadError, match="does not fit audio2lip"):
        convert_audio2lip(good, tmp_path / "out4")  # the published config: tiny weights do not fit


def test_pull_errors(fake_hub: FakeHub, tmp_path: Path) -> None:
    spec = tiny_spec()
    spec.connector.file = spec.connector.file.model_copy(update={"filename": "checkpoints/missing.pth"})
    with pytest.raises(ModelLoadError, match="cannot download coldhyuk/C-MET/checkpoints/missing.pth.*not found"):
        pull(tmp_path / "models", spec, endpoint=fake_hub.url, cache_dir=tmp_path / "cache")
    assert not (tmp_path / "models" / "pulled").exists()
    assert not [p for p in (tmp_path / "models").iterdir() if p.name.endswith(".partial")]
    spec = tiny_spec()
    spec.edtalk.file = spec.edtalk.file.model_copy(update={"sha256": "0" * 64})
    with pytest.raises(ModelLoadError, match="is not the pinned"):
        pull(tmp_path / "models", spec, endpoint=fake_hub.url, cache_dir=tmp_path / "cache")
    with pytest.raises(ModelLoadError, match="does not fit edtalk"):
        pull(tmp_path / "models", OFFICIAL_SPEC, endpoint=fake_hub.url, cache_dir=tmp_path / "cache")


def test_pull_without_a_server_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(ModelLoadError, match="cannot download .*network needed"):
        pull(tmp_path / "models", tiny_spec(), endpoint=f"http://127.0.0.1:{port}", cache_dir=tmp_path / "cache")


# ----------------------------------------------------------------------------------------------
# CLI


def test_cli_make_tiny_list_verify(tmp_path: Path) -> None:
    root = tmp_path / "models"
    code, out = run_cli("make-tiny", str(root / "tiny"), "--seed", "3")
    assert code == 0, out
    code, out = run_cli("list", str(root))  # DIR as make-tiny takes it; --dir means the same
    assert code == 0 and "edtalk-tiny" in out and "connector-tiny" in out and "seed=3" in out, out
    code, out = run_cli("verify", "--dir", str(root))
    assert code == 0 and "1 of 1 model set(s) verified" in out, out
    weights = root / "tiny" / "connector.safetensors"
    weights.write_bytes(weights.read_bytes()[:-1] + b"\x00")
    code, out = run_cli("verify", "--dir", str(root))
    assert code == 1 and "sha256 mismatch" in out and "Traceback" not in out, out
    code, out = run_cli("make-tiny", str(root / "tiny"))
    assert code == 1 and "already exists" in out, out


def test_cli_without_sets(tmp_path: Path) -> None:
    for command in ("list", "verify"):
        code, out = run_cli(command, "--dir", str(tmp_path / "none"))
        assert code == 1 and "no model set at" in out and "cmet models pull" in out, out
    code, out = run_cli("list", str(tmp_path / "a"), "--dir", str(tmp_path / "b"))
    assert code == 2 and "not both" in out, out


def test_the_data_dir_does_not_move_the_models(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`cmet edit` found the sets in the user cache; `CMET_DATA_DIR=... cmet serve` must find them too,
    and a models dir someone moved is named with the variable that moved it."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("CMET_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("CMET_MODELS_DIR", raising=False)
    get_settings.cache_clear()
    try:
        assert get_settings().resolved_models_dir == tmp_path / "home" / ".cache" / "cmet" / "models"
        monkeypatch.setenv("CMET_MODELS_DIR", str(tmp_path / "elsewhere"))
        get_settings.cache_clear()
        with pytest.raises(ModelLoadError, match=r"set by CMET_MODELS_DIR=.*elsewhere\)"):
            select_set(None)
    finally:
        get_settings.cache_clear()


def test_cli_pull_with_spec(fake_hub: FakeHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(tiny_spec().model_dump_json())
    code, out = run_cli("pull", str(tmp_path / "models"), "--spec", str(spec_file), "--endpoint", fake_hub.url)
    assert code == 0 and "written to" in out, out
    code, out = run_cli("verify", "--dir", str(tmp_path / "models" / "pulled"))
    assert code == 0, out
    spec_file.write_text("{}")
    code, out = run_cli("pull", "--dir", str(tmp_path / "models"), "--spec", str(spec_file))
    assert code == 1 and "pull spec" in out and "Field required" in out, out
