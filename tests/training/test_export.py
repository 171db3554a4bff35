"""Export to the connector registry (a directory or S3) and serving what it holds: the pipeline,
the CLI, a worker following `latest`, and `GET /v1/models` through the running service."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import torch

from cmet_core.edit.pipeline import Editor
from cmet_core.emotion.targets import EmotionTarget
from cmet_core.modelsets.registry import LATEST, DirectoryRegistry, choose, open_registry, resolve
from cmet_core.networks.connector import Connector, ConnectorConfig
from cmet_core.networks.errors import ModelLoadError
from cmet_core.settings import CoreSettings
from tests.training.helpers import TINY_CONNECTOR, tiny_config
from training.export import export_run, import_official
from training.sources import open_source
from training.trainer import Trainer


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory: pytest.TempPathFactory, test_data: Path) -> Path:
    """A few steps of training with the tiny set's connector size, so the result serves on the tiny set."""
    cfg = tiny_config(test_data / "e2v", schedule={"steps": 4, "warmup_steps": 0}, eval={"every": 4, "pairs": 16})
    run = tmp_path_factory.mktemp("train") / "run"
    Trainer(cfg, open_source(cfg), run).train()
    return run


def test_export_publishes_versions_with_their_training_record(trained_run: Path, tmp_path: Path) -> None:
    registry = DirectoryRegistry(tmp_path / "registry")
    first = export_run(trained_run, registry)
    assert first.version == "0.1.0" and first.source.kind == "trained" and first.training is not None
    record = first.training
    assert record.steps == 4 and record.parent is None and len(record.data_fingerprint) == 64
    assert record.config["schedule"]["steps"] == 4 and "held_out/direction_cos" in record.metrics
    assert export_run(trained_run, registry).version == "0.2.0"
    assert export_run(trained_run, registry, bump="major").version == "1.0.0"
    export_run(trained_run, registry, version="1.1.0-rc.1")
    with pytest.raises(ModelLoadError, match="already exists"):
        export_run(trained_run, registry, version="0.2.0")
    assert registry.versions() == ["0.1.0", "0.2.0", "1.0.0", "1.1.0-rc.1"]
    assert resolve(registry, LATEST) == "1.0.0"  # pre-releases serve only when pinned
    assert resolve(registry, "0.2.0") == "0.2.0"
    with pytest.raises(ModelLoadError, match="not in the registry"):
        resolve(registry, "9.9.9")
    with pytest.raises(ModelLoadError, match="holds no edtalk connector"):
        resolve(DirectoryRegistry(tmp_path / "empty"), LATEST)


def test_s3_registry_round_trip(trained_run: Path, tmp_path: Path) -> None:
    from tests.service.stack import moto_s3

    with moto_s3(tmp_path / "moto.log") as endpoint:
        settings = CoreSettings(
            data_dir=tmp_path / "data", s3_endpoint_url=endpoint, s3_access_key_id="test", s3_secret_access_key="test"
        )
        registry = open_registry("s3://models/cmet/registry", settings)
        registry.client.create_bucket(Bucket="models")  # type: ignore[attr-defined]
        published = export_run(trained_run, registry)
        assert registry.versions() == ["0.1.0"] and registry.where == "s3://models/cmet/registry"
        weights = registry.local_weights("0.1.0")
        assert weights.is_file() and registry.manifest("0.1.0").sha256 == published.sha256
        registry.client.put_object(
            Bucket="models", Key="cmet/registry/connector/0.1.0/connector.safetensors", Body=b"tampered"
        )  # type: ignore[attr-defined]
        weights.unlink()
        with pytest.raises(ModelLoadError, match="sha256 mismatch"):
            registry.local_weights("0.1.0")


def test_the_pipeline_serves_a_trained_version(trained_run: Path, tiny_set: Path, tmp_path: Path) -> None:
    registry = DirectoryRegistry(tmp_path / "registry")
    export_run(trained_run, registry)
    editor = Editor.load(tiny_set, connector=choose("0.1.0", registry))
    assert editor.connector_label == "test-connector@0.1.0"
    state = torch.load(sorted((trained_run / "checkpoints").glob("*.pt"))[-1], weights_only=True)["model"]
    for name, tensor in editor.connector.state_dict().items():
        assert torch.equal(tensor, state[f"connector.{name}"]), name
    result = editor.edit(_sample(tmp_path), tmp_path / "out.mp4", EmotionTarget(emotion="happy"))
    assert result.connector == "test-connector@0.1.0" and result.output.stat().st_size > 0


def _sample(tmp_path: Path) -> Path:
    from cmet_core.media.sample import write_sample_clip

    return write_sample_clip(tmp_path / "talk.mp4", seconds=0.4)


def test_cli_edit_with_the_latest_registry_connector(trained_run: Path, tiny_set: Path, tmp_path: Path) -> None:
    registry = tmp_path / "registry"
    export_run(trained_run, DirectoryRegistry(registry))
    cmd = [
        sys.executable,
        "-m",
        "cmet_cli.main",
        "edit",
        str(_sample(tmp_path)),
        "--emotion",
        "sad",
        "--models",
        str(tiny_set),
        "--connector",
        "latest",
        "--registry",
        str(registry),
        "-o",
        str(tmp_path / "out.mp4"),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "connector test-connector@0.1.0" in proc.stdout + proc.stderr and (tmp_path / "out.mp4").is_file()
    missing = subprocess.run(
        cmd[:-2] + ["--connector", "7.0.0", "-o", str(tmp_path / "x.mp4")], capture_output=True, text=True, timeout=300
    )
    assert (
        missing.returncode != 0
        and "7.0.0 is not in the registry" in missing.stderr
        and "Traceback" not in missing.stderr
    )


def test_a_connector_that_does_not_fit_the_set_is_refused(tiny_set: Path, tmp_path: Path) -> None:
    from cmet_core.modelsets.checkpoints import write_model
    from cmet_core.modelsets.manifests import Source

    cfg = ConnectorConfig(**{**TINY_CONNECTOR, "speech_dim": 512})
    manifest = write_model(
        Connector(cfg).state_dict(),
        tmp_path / "odd",
        kind="connector",
        name="odd",
        version="0.1.0",
        config=cfg.to_dict(),
        source=Source(kind="make-tiny", seed=0),
    )
    registry = DirectoryRegistry(tmp_path / "registry")
    registry.publish(manifest)
    with pytest.raises(ModelLoadError, match="does not fit set"):
        Editor.load(tiny_set, connector=choose(LATEST, registry))


def test_official_checkpoint_imports_as_a_version(tmp_path: Path) -> None:
    pth = tmp_path / "cmet_official.pth"
    torch.save({"state_dict": Connector(ConnectorConfig()).state_dict(), "optimizer": {}, "global_step": 120000}, pth)
    registry = DirectoryRegistry(tmp_path / "registry")
    manifest = import_official(pth, registry)
    assert (
        manifest.version == "1.0.0"
        and manifest.source.kind == "file"
        and manifest.source.sha256
        and manifest.training is None
    )
    assert registry.versions() == ["1.0.0"] and registry.local_weights("1.0.0").is_file()
    out = subprocess.run(
        [sys.executable, "-m", "training.cli", "registry", "--registry", str(tmp_path / "registry")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0 and "cmet-connector-official" in out.stdout and "latest -> 1.0.0" in out.stdout


def test_a_worker_following_latest_switches_when_a_version_is_published(
    trained_run: Path, tiny_set: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cmet_jobs.settings import JobsSettings
    from worker.editor import WorkerEditor

    registry = tmp_path / "registry"
    export_run(trained_run, DirectoryRegistry(registry))
    monkeypatch.setenv("CMET_REGISTRY", str(registry))
    from cmet_core.settings import get_settings

    get_settings.cache_clear()
    editor = WorkerEditor()
    settings = JobsSettings(
        data_dir=tmp_path / "data", models_set=tiny_set, registry=str(registry), connector_version=LATEST, device="cpu"
    )
    try:
        assert editor.get(settings).connector_label == "test-connector@0.1.0"
        export_run(trained_run, DirectoryRegistry(registry))
        assert editor.get(settings).connector_label == "test-connector@0.2.0"
    finally:
        get_settings.cache_clear()


@pytest.mark.stack  # the machine's PostgreSQL and Redis, without the `stack` fixture
def test_the_service_serves_and_shows_the_registry_connector(trained_run: Path, tiny_set: Path, tmp_path: Path) -> None:
    """The whole path: versions in an S3 registry, a worker on `latest`, jobs that name their connector,
    and `GET /v1/models` saying which version serves, before and after a new one is published."""
    from tests.service.conftest import new_key
    from tests.service.stack import moto_s3, moto_storage, postgres_database, running_stack
    from tests.service.test_flow import wait_final

    with postgres_database() as db, moto_s3(tmp_path / "moto.log") as endpoint:
        storage = moto_storage(endpoint, "cmet-reg") | {
            "CMET_REGISTRY": "s3://cmet-reg/registry",
            "CMET_CONNECTOR_VERSION": LATEST,
        }
        settings = CoreSettings(
            data_dir=tmp_path / "pub", s3_endpoint_url=endpoint, s3_access_key_id="test", s3_secret_access_key="test"
        )
        registry = open_registry("s3://cmet-reg/registry", settings)
        registry.client.create_bucket(Bucket="cmet-reg")  # type: ignore[attr-defined]
        export_run(trained_run, registry)
        with running_stack(tmp_path, tiny_set, db, storage) as stack:
            stack.extra["database_url"] = db
            headers = {"Authorization": f"Bearer {new_key(stack)}"}
            with httpx.Client(base_url=stack.api_url, headers=headers, timeout=60) as client:
                for expected in ("0.1.0", "0.2.0"):
                    shown = client.get("/v1/models").json()
                    assert shown["connector"]["selection"] == "latest" and shown["connector"]["version"] == expected, (
                        shown
                    )
                    assert (
                        shown["connector"]["registry"] == "s3://cmet-reg/registry"
                        and shown["connector"]["training_steps"] == 4
                    )
                    listed = next(m for m in shown["models"] if m["kind"] == "connector")
                    assert (listed["name"], listed["version"]) == ("test-connector", expected)
                    (tmp_path / expected).mkdir()
                    with _sample(tmp_path / expected).open("rb") as f:
                        r = client.post(
                            "/v1/edits", files={"video": ("talk.mp4", f, "video/mp4")}, data={"emotion": "happy"}
                        )
                    assert r.status_code == 202, r.text
                    done = wait_final(client, r.json()["id"])
                    assert (
                        done["state"] == "succeeded" and done["result"]["connector"] == f"test-connector@{expected}"
                    ), json.dumps(done)
                    export_run(trained_run, registry)


def test_a_run_started_from_a_version_records_it_as_its_parent(
    trained_run: Path, test_data: Path, tmp_path: Path
) -> None:
    from training.export import start_from

    registry = DirectoryRegistry(tmp_path / "registry")
    export_run(trained_run, registry)
    state, parent = start_from(LATEST, registry)
    assert parent == "0.1.0" and state is not None
    cfg = tiny_config(
        test_data / "e2v",
        model={"connector": TINY_CONNECTOR, "init": LATEST},
        schedule={"steps": 2, "warmup_steps": 0},
        eval={"every": 2, "pairs": 16},
    )
    trainer = Trainer(cfg, open_source(cfg), tmp_path / "run", init_state=state, parent=parent)
    assert all(
        torch.equal(v, state[k]) for k, v in trainer.model.connector.state_dict().items()
    )  # starts from the parent's weights
    trainer.train()
    child = export_run(tmp_path / "run", registry)
    assert child.version == "0.2.0" and child.training is not None and child.training.parent == "0.1.0"


def test_serve_refuses_a_connector_the_registry_lacks(tiny_set: Path, tmp_path: Path) -> None:
    import os

    env = {**os.environ, "CMET_DATA_DIR": str(tmp_path / "data")}
    proc = subprocess.run(
        [sys.executable, "-m", "cmet_cli.main", "serve", "--models", str(tiny_set), "--connector", "latest"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert (
        proc.returncode == 1 and "holds no edtalk connector yet" in proc.stderr
    )  # a model problem: exit 1, as with no model set and "Traceback" not in proc.stderr
