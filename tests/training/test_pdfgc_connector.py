"""A connector for the PD-FGC space: `cmet-train` through the backbone interface (the expression width and the
features' names from the backbone), published under the backbone's own version line and served by a PD-FGC set."""

from __future__ import annotations

from pathlib import Path

import pytest

from cmet_core.edit.pipeline import Editor
from cmet_core.modelsets.registry import DirectoryRegistry, open_registry
from cmet_core.settings import CoreSettings
from tests.training.helpers import tiny_config
from training.config import ConfigError
from training.data import mead_clips
from training.export import export_run
from training.model import TrainModel
from training.sources import open_source
from training.trainer import Trainer


@pytest.fixture(scope="module")
def pdfgc_run(tmp_path_factory: pytest.TempPathFactory, test_data: Path) -> Path:
    cfg = tiny_config(
        test_data / "e2v",
        backbone="pdfgc",
        schedule={"steps": 2, "warmup_steps": 0},
        eval={"every": 2, "pairs": 16},
    )
    run = tmp_path_factory.mktemp("train") / "run"
    Trainer(cfg, open_source(cfg), run).train()
    return run


def test_the_backbone_sets_the_width_and_the_features(test_data: Path, tmp_path: Path) -> None:
    cfg = tiny_config(test_data / "e2v", backbone="pdfgc")
    assert TrainModel(cfg).connector.cfg.exp_dim == 30
    batch = open_source(cfg).train_batch(0, 4)
    assert batch.exp_i.shape == (4, 5, 30) and batch.ref.shape == (4, 5, 30)
    assert TrainModel(tiny_config(test_data / "e2v")).connector.cfg.exp_dim == 10
    wrong = tiny_config(test_data / "e2v", backbone="pdfgc", model={"connector": {"exp_dim": 10}})
    with pytest.raises(ConfigError, match="exp_dim 10 differs from the pdfgc expression width 30"):
        TrainModel(wrong)
    folder = tmp_path / "W009" / "front" / "happy" / "level_1"
    folder.mkdir(parents=True)
    (folder / "001.mp4").write_bytes(b"")
    (clip,) = mead_clips(tmp_path, "PD_FGC_emo")
    assert clip.exp_path.name == "001_PD_FGC_emo.npy"  # C-MET's name; EDTalk's stay 001_ED_exp.npy


def test_a_pdfgc_connector_is_published_on_its_own_line_and_served(
    pdfgc_run: Path, tiny_pdfgc_set: Path, tmp_path: Path
) -> None:
    root = tmp_path / "registry"
    with pytest.raises(ValueError, match="trained a connector for pdfgc"):
        export_run(pdfgc_run, DirectoryRegistry(root))
    published = export_run(pdfgc_run, DirectoryRegistry(root, "pdfgc"))
    assert published.version == "0.1.0" and published.training is not None
    assert (root / "connector-pdfgc" / "0.1.0" / "connector.json").is_file() and not (root / "connector").exists()
    settings = CoreSettings(data_dir=tmp_path / "data", registry=str(root), device="cpu")
    editor = Editor.from_settings(settings, models=tiny_pdfgc_set, connector="latest")
    assert editor.connector_label == "test-connector@0.1.0" and editor.connector.cfg.exp_dim == 30
    assert open_registry(root, settings).versions() == []  # EDTalk's line holds nothing: `latest` never mixes them
