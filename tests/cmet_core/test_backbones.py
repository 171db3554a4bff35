"""The backbone interface: EDTalk behind it, a second backbone (a fake with PD-FGC's widths and crop)
through the registry and the batcher, width checks against the set, and sets that name no backbone."""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import torch

from cmet_core.backbones.base import Backbone, MotionRecord
from cmet_core.backbones.edtalk.backbone import EDTalkBackbone
from cmet_core.backbones.edtalk.network import TINY_EDTALK, Generator
from cmet_core.backbones.registry import backbone_names, backbone_spec, register
from cmet_core.backbones.spec import BackboneSpec, BackboneTools, Framing, Widths
from cmet_core.edit.pipeline import Editor
from cmet_core.modelsets.build import make_tiny_set, verify_set
from cmet_core.modelsets.checkpoints import load_module
from cmet_core.modelsets.manifests import SET_MANIFEST, ModelManifest
from cmet_core.modelsets.sets import compatibility, load_set, read_set
from cmet_core.networks.connector import TINY_CONNECTOR
from cmet_core.networks.errors import ModelLoadError
from cmet_core.networks.runtime import RuntimeOptions
from cmet_core.verify.fill import fill_module
from worker.batcher import BatchingBackbone, BatchPolicy

FAKE_WIDTHS = Widths(exp=30, lip=500, lip_part="mouth")


class FakeBackbone:
    """PD-FGC's shape of things, without its networks: a 224 px crop with a fixed window, a 30-wide
    expression, eye and pose parts, a mouth part, and an identity map as the source."""

    name = "fake"
    framing = Framing(size=224, window=(0, 16, 192, 208))
    widths = FAKE_WIDTHS
    device = torch.device("cpu")
    speech_lips = None

    def prepare_source(self, crops: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"id_map": crops.mean(dim=(2, 3)).reshape(-1, 3, 1, 1).expand(-1, 3, 7, 7).contiguous()}

    def _codes(self, crops: torch.Tensor, width: int) -> torch.Tensor:
        return crops.mean(dim=(1, 2, 3))[:, None].expand(-1, width) * torch.arange(1, width + 1) / width

    def source_motion(self, source: dict[str, torch.Tensor]) -> MotionRecord:
        return self.encode(source["id_map"].mean(dim=(2, 3))[:, :, None, None].expand(-1, 3, 224, 224))

    def encode(self, crops: torch.Tensor) -> MotionRecord:
        parts = {"eye": self._codes(crops, 6), "pose": self._codes(crops, 6), "mouth": self._codes(crops, 500)}
        return MotionRecord(self._codes(crops, 30), parts)

    def render(self, source: dict[str, torch.Tensor], motion: MotionRecord) -> torch.Tensor:
        # gains applied here, in the one place a backbone documents (PD-FGC: x1.2 on expression and eye)
        style = 1.2 * motion.exp.mean(1) + 1.2 * motion.parts["eye"].mean(1) + motion.parts["mouth"].mean(1)
        identity = source["id_map"].mean(dim=(1, 2, 3)).expand(len(motion))
        return torch.tanh(style + identity)[:, None, None, None].expand(-1, 3, 224, 224).contiguous()

    def smooth_clip(self, motion: MotionRecord) -> MotionRecord:
        return motion

    def switch_off(self, motion: MotionRecord, off: frozenset[str]) -> MotionRecord:
        return motion.with_part("eye", motion.parts["eye"] * 0) if off else motion

    def take_eyes(self, motion: MotionRecord, driving: MotionRecord, parts: frozenset[str]) -> MotionRecord:
        return motion.with_part("eye", driving.parts["eye"]) if parts else motion

    def stack_sources(self, sources: Sequence[dict[str, torch.Tensor]], rows: Sequence[int]) -> dict[str, torch.Tensor]:
        maps = [s["id_map"].expand(n, -1, -1, -1) for s, n in zip(sources, rows, strict=True)]
        return {"id_map": torch.cat(maps)}


def _fake_widths(config: Any) -> Widths:
    return Widths(exp=int(config["exp_dim"]), lip=int(config["mouth_dim"]), lip_part="mouth")


def _fake_build(_module: torch.nn.Module, _runtime: RuntimeOptions) -> Backbone:
    return FakeBackbone()


def _fake_load(_path: Path, _verify: bool) -> torch.nn.Module:
    return torch.nn.Identity()


FAKE = BackboneSpec(name="fake", widths=_fake_widths, load=_fake_load, build=_fake_build)


def test_edtalk_backbone_satisfies_the_protocol() -> None:
    torch.manual_seed(0)
    backbone: Backbone = EDTalkBackbone(Generator(TINY_EDTALK), RuntimeOptions(device="cpu", batch=2))
    assert backbone_spec("edtalk").widths(TINY_EDTALK.to_dict()) == backbone.widths
    assert backbone.name == "edtalk" and backbone.framing == Framing(size=TINY_EDTALK.size)
    assert backbone.widths == Widths(exp=TINY_EDTALK.exp_dim, lip=TINY_EDTALK.lip_dim, lip_part="lip")
    size = backbone.framing.size
    crops = torch.rand(3, 3, size, size) * 2 - 1
    motion = backbone.encode(crops)
    assert len(motion) == 3 and motion.exp.shape == (3, backbone.widths.exp)
    assert motion.parts[backbone.widths.lip_part].shape == (3, backbone.widths.lip)
    sources = [backbone.prepare_source(crops[i : i + 1]) for i in range(2)]
    # the source's own motion is the motion its crop encodes to
    own = backbone.source_motion(sources[0])
    torch.testing.assert_close(own.exp, motion.exp[:1], atol=1e-5, rtol=1e-4)
    # rows rendered against a stacked source match each identity rendered alone
    alone = [backbone.render(src, motion.index(slice(i, i + 1))) for i, src in enumerate(sources)]
    mixed = backbone.render(backbone.stack_sources(sources, [1, 1]), motion.index(slice(0, 2)))
    assert mixed.shape == (2, 3, size, size)
    torch.testing.assert_close(mixed, torch.cat(alone), atol=1e-3, rtol=0)  # batch 2 vs 1: summation order
    # an edited expression changes the image
    edited = backbone.render(sources[0], motion.index(slice(0, 1)).with_exp(motion.exp[:1] + 1.0))
    assert not torch.allclose(edited, alone[0])


def test_motion_records_cut_join_and_replace_without_naming_parts() -> None:
    record = MotionRecord(torch.arange(6.0).reshape(3, 2), {"a": torch.arange(3.0)[:, None], "b": torch.zeros(3, 4)})
    parts = record.split([1, 2])
    assert [len(p) for p in parts] == [1, 2]
    joined = MotionRecord.cat(parts)
    assert torch.equal(joined.exp, record.exp) and torch.equal(joined.parts["a"], record.parts["a"])
    repeated = record.index(torch.tensor([2, 2, 0]))
    assert repeated.parts["a"][:, 0].tolist() == [2.0, 2.0, 0.0]
    replaced = record.with_part("b", torch.ones(3, 4))
    assert torch.equal(replaced.parts["b"], torch.ones(3, 4)) and torch.equal(record.parts["b"], torch.zeros(3, 4))
    with pytest.raises(KeyError, match="no part 'lip'"):
        record.with_part("lip", torch.ones(3, 1))
    with pytest.raises(ValueError, match="3 rows"):
        MotionRecord(torch.zeros(3, 2), {"a": torch.zeros(2, 1)})


def test_a_second_backbone_registers_and_runs_through_the_batcher_with_mixed_identities() -> None:
    register(FAKE)
    assert "fake" in backbone_names()
    plain = backbone_spec("fake").build(torch.nn.Identity(), RuntimeOptions(device="cpu"))
    assert backbone_spec("fake").widths({"exp_dim": 30, "mouth_dim": 500}) == plain.widths
    seen: list[tuple[str, int]] = []
    batcher = BatchingBackbone(plain, BatchPolicy(max_batch=16, max_wait_ms=300), lambda m, n: seen.append((m, n)))
    size = plain.framing.size
    jobs = [torch.full((2, 3, size, size), 0.1 * (i + 1)) for i in range(3)]
    sources = [plain.prepare_source(torch.full((1, 3, size, size), -0.2 * i)) for i in range(3)]
    expected = [plain.render(src, plain.encode(frames)) for frames, src in zip(jobs, sources, strict=True)]
    got: dict[int, tuple[MotionRecord, torch.Tensor]] = {}

    def job(i: int) -> None:
        motion = batcher.encode(jobs[i])
        mouth = torch.full((2, 500), 0.1 * i)  # a dub's lip part from the backbone's own audio encoder
        driven = motion.with_part(batcher.widths.lip_part, mouth).with_exp(motion.exp + 0.5)
        got[i] = (motion, batcher.render(sources[i], driven))

    threads = [threading.Thread(target=job, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    for i in range(3):
        motion = plain.encode(jobs[i])
        assert got[i][0].exp.shape == (2, 30) and set(got[i][0].parts) == {"eye", "pose", "mouth"}
        torch.testing.assert_close(got[i][0].exp, motion.exp)
        driven = motion.with_part("mouth", torch.full((2, 500), 0.1 * i)).with_exp(motion.exp + 0.5)
        torch.testing.assert_close(got[i][1], plain.render(sources[i], driven))
        assert not torch.allclose(got[i][1], expected[i])
    assert max(n for model, n in seen if model == "fake_encoder") == 6  # three jobs in one forward
    assert max(n for model, n in seen if model == "fake_renderer") == 6  # three identities in one forward


def test_a_connector_of_another_width_is_refused(tiny_set: Path) -> None:
    register(FAKE)
    checks = compatibility({"fake": {"exp_dim": 30, "mouth_dim": 500}, "connector": TINY_CONNECTOR.to_dict()}, "fake")
    assert [c.status for c in checks] == ["failed"]
    assert "connector exp_dim 10 differs from the fake backbone's expression width 30" in checks[0].detail
    models = load_set(tiny_set)
    with pytest.raises(ModelLoadError, match="connector exp_dim 10 differs from the fake backbone's expression"):
        Editor(models, RuntimeOptions(device="cpu"), backbone=FakeBackbone())
    with pytest.raises(ModelLoadError, match="lip_dim 20 differs from the fake backbone's 'mouth' width 500"):
        Editor(models, RuntimeOptions(device="cpu"), backbone=FakeBackbone())


def _linked_set(tiny_set: Path, dest: Path, manifest: dict[str, Any]) -> Path:
    """The tiny set's files, linked, under another `models.json`."""
    dest.mkdir()
    for path in tiny_set.iterdir():
        if path.name != SET_MANIFEST:
            (dest / path.name).symlink_to(path)
    (dest / SET_MANIFEST).write_text(json.dumps(manifest))
    return dest


def test_a_set_without_a_backbone_field_loads_as_edtalk(tiny_set: Path, tmp_path: Path) -> None:
    written = json.loads((tiny_set / SET_MANIFEST).read_text())
    assert written["backbone"] == "edtalk"  # make-tiny writes the field
    old = _linked_set(tiny_set, tmp_path / "old", {k: v for k, v in written.items() if k != "backbone"})
    assert read_set(old).backbone == "edtalk"
    models = load_set(old)
    assert models.backbone == "edtalk" and isinstance(models.generator, Generator)
    assert Editor(models, RuntimeOptions(device="cpu")).face_size == TINY_EDTALK.size
    unknown = _linked_set(tiny_set, tmp_path / "unknown", {**written, "backbone": "nosuch"})
    with pytest.raises(ModelLoadError, match="backbone"):
        read_set(unknown)


def _made_network(config: Any) -> torch.nn.Module:
    return torch.nn.Linear(int(config["exp_dim"]), int(config["mouth_dim"]))


def _made_convert(_src: Path, _dest: Path, _version: str) -> Path:
    raise ModelLoadError("the made backbone has no published checkpoint")


MADE_TOOLS = BackboneTools(
    network=_made_network,
    fill_rule=lambda _key, _shape: (0.5, 0.0),
    tiny={"exp_dim": 12, "mouth_dim": 6},
    full={"exp_dim": 30, "mouth_dim": 40},
    convert=_made_convert,
    conformance=lambda _kit: iter(()),
)
MADE = BackboneSpec(
    name="made",
    widths=_fake_widths,
    load=lambda path, verify: load_module(path, "made", verify=verify),
    build=_fake_build,
    tools=lambda: MADE_TOOLS,
)


def test_a_registered_backbone_makes_fills_and_loads_sets_through_its_tools(tmp_path: Path) -> None:
    register(MADE)
    net = MADE_TOOLS.network(MADE_TOOLS.full)
    fill_module(net, "made")  # the backbone's own rule, found by its name
    assert all(torch.all(t == 0.5) for t in net.state_dict().values())
    made = make_tiny_set(tmp_path / "made", backbone="made", restorer=False)
    manifest = read_set(made)
    assert manifest.backbone == "made" and manifest.required == ("made", "emotion2vec")
    assert verify_set(made).ok
    models = load_set(made)
    assert isinstance(models.generator, torch.nn.Linear) and models.generator.weight.shape == (6, 12)
    assert models.connector.cfg.exp_dim == 12  # as wide as the backbone's expression code
    assert models.audio2lip is not None and models.audio2lip.config.lip_dim == 6  # and its 'mouth' part


def test_kinds_are_the_registered_backbones_and_the_other_members(tiny_set: Path) -> None:
    register(FAKE)
    with pytest.raises(ModelLoadError, match="registers no tools"):
        make_tiny_set(tiny_set.parent / "fake", backbone="fake")  # a stand-in without tools makes no set
    model = json.loads((tiny_set / "connector.json").read_text())
    assert ModelManifest.model_validate({**model, "kind": "fake"}).kind == "fake"
    with pytest.raises(ValueError, match="unknown model kind 'nosuch'"):
        ModelManifest.model_validate({**model, "kind": "nosuch"})
