"""Feature preparation: the visual (the set's backbone's expression code per frame: EDTalk's weights,
PD-FGC's emotion code) and speech (emotion2vec+ utterance embedding) side of every clip, written beside
the media as the official layout keeps them.

Resumable: a clip whose feature file exists is skipped, and files are written to a temporary
name and renamed, so a killed run never leaves half a file. A clip that fails (no face, unreadable
media) is reported and skipped; it does not stop the rest.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from cmet_core.backbones.registry import backbone_spec
from cmet_core.edit.pipeline import Editor
from cmet_core.errors import InputError
from cmet_core.modelsets.manifests import verify_digest
from cmet_core.modelsets.sets import model_manifest, read_set, select_set
from cmet_core.networks.speech import SpeechEncoder
from cmet_core.options import EditChoices, Limits
from cmet_core.settings import get_settings
from training.data import Clip, find_clips


@dataclass
class PrepReport:
    written: int = 0
    skipped: int = 0
    failed: list[str] = field(default_factory=list)

    def line(self, what: str) -> str:
        head = f"{what} features: {self.written} written, {self.skipped} already there, {len(self.failed)} failed"
        return head + "".join(f"\n  {f}" for f in self.failed)


def _save(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.partial.npy")
    np.save(tmp, array.astype(np.float32))
    os.replace(tmp, path)


def _todo(
    clips: list[Clip], media: Callable[[Clip], Path | None], target: Callable[[Clip], Path], report: PrepReport
) -> list[Clip]:
    todo = []
    for clip in clips:
        if media(clip) is None:
            continue
        if target(clip).is_file():
            report.skipped += 1
        else:
            todo.append(clip)
    return todo


def _device(device: str | None) -> str:
    return device or get_settings().device


def prep_visual(root: Path, layout: str, models: Path | None, batch: int = 32, device: str | None = None) -> PrepReport:
    """The expression code of every frame of every clip's video through the set's backbone (faces found and
    cropped as an edit does), in files tagged with the backbone's `exp_features`."""

    report = PrepReport()
    set_dir = select_set(models)
    tag = backbone_spec(read_set(set_dir).backbone).exp_features
    todo = _todo(find_clips(layout, root, tag), lambda c: c.video, lambda c: c.exp_path, report)
    if not todo:
        return report

    editor = Editor.from_settings(get_settings(), models=set_dir, device=device, batch=batch)
    limits = Limits(chunk_frames=min(batch, 256))
    for clip in tqdm(todo, desc="visual", unit="clip"):
        assert clip.video is not None
        try:
            exp = editor.expression_weights(clip.video, EditChoices(), limits=limits)
        except InputError as exc:
            report.failed.append(f"{clip.video}: {exc}")
            continue
        _save(clip.exp_path, exp)
        report.written += 1
    return report


def _wav(clip: Clip) -> Path:
    assert clip.wav is not None  # `_todo` keeps only clips that have one
    return clip.wav


def _chunks(items: list[Clip], size: int) -> Iterator[list[Clip]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def prep_speech(root: Path, layout: str, models: Path | None, batch: int = 8, device: str | None = None) -> PrepReport:
    """emotion2vec+ utterance embeddings of every clip's wav, `batch` clips per forward."""

    report = PrepReport()
    todo = _todo(find_clips(layout, root), lambda c: c.wav, lambda c: c.e2v_path, report)
    if not todo:
        return report
    set_dir = select_set(models)
    manifest, e2v_dir = model_manifest(set_dir, read_set(set_dir), "emotion2vec")
    verify_digest(manifest, e2v_dir)
    encoder = SpeechEncoder(e2v_dir, device=_device(device), batch_size=batch)
    with tqdm(total=len(todo), desc="speech", unit="clip") as bar:
        for group in _chunks(todo, batch):
            try:
                embeddings = encoder.embed([_wav(c) for c in group])
            except ValueError:
                embeddings = None  # one bad clip: embed the group one by one to find it
            for k, clip in enumerate(group):
                try:
                    vector = embeddings[k] if embeddings is not None else encoder.embed([_wav(clip)])[0]
                except ValueError as exc:  # InputError included
                    report.failed.append(f"{clip.wav}: {exc}")
                    continue
                _save(clip.e2v_path, vector)
                report.written += 1
            bar.update(len(group))
    return report
