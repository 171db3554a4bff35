"""The dynamic batcher: concurrent jobs' encoder and renderer calls merge into shared forwards
and every job gets exactly its own rows back."""

from __future__ import annotations

import threading

import torch

from cmet_core.backbones.edtalk.backbone import EDTalkBackbone
from cmet_core.backbones.edtalk.network import TINY_EDTALK, Generator
from cmet_core.networks.runtime import RuntimeOptions
from worker.batcher import BatchingBackbone, BatchPolicy


def test_concurrent_calls_are_batched_and_match_one_by_one() -> None:
    torch.manual_seed(0)
    runner = EDTalkBackbone(Generator(TINY_EDTALK), RuntimeOptions(device="cpu", batch=16))
    seen: list[tuple[str, int]] = []
    batcher = BatchingBackbone(
        runner, BatchPolicy(max_batch=16, max_wait_ms=200), observe=lambda m, n: seen.append((m, n))
    )
    size = TINY_EDTALK.size
    jobs = [torch.rand(3, 3, size, size) * 2 - 1 for _ in range(3)]
    sources = [runner.prepare_source(torch.rand(1, 3, size, size) * 2 - 1) for _ in range(3)]
    expected = []
    for frames, source in zip(jobs, sources, strict=True):
        m = runner.encode(frames)
        expected.append((m, runner.render(source, m)))
    got: dict[int, tuple] = {}

    def job(i: int) -> None:
        m = batcher.encode(jobs[i])
        got[i] = (m, batcher.render(sources[i], m))

    threads = [threading.Thread(target=job, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for i, (m, images) in enumerate(expected):
        torch.testing.assert_close(got[i][0].exp, m.exp, atol=1e-5, rtol=1e-4)
        # batch size moves float32 kernels' summation order; 1e-3 is the kit's image tolerance
        torch.testing.assert_close(got[i][1], images, atol=1e-3, rtol=0)
    assert max(n for model, n in seen if model == "edtalk_encoder") == 9  # three jobs in one forward
    assert max(n for model, n in seen if model == "edtalk_renderer") == 9


def test_speech_clips_of_concurrent_jobs_share_a_forward() -> None:
    import numpy as np

    from worker.batcher import SpeechBatcher

    calls: list[int] = []

    def embed(clips: list) -> np.ndarray:  # stands in for emotion2vec+: one row per clip, derived from its name
        calls.append(len(clips))
        return np.array([[float(str(c)[-1])] * 4 for c in clips], dtype=np.float32)

    batcher = SpeechBatcher(embed, BatchPolicy(max_batch=8, max_wait_ms=200))
    got: dict[int, np.ndarray] = {}
    threads = [
        threading.Thread(target=lambda i=i: got.__setitem__(i, batcher([f"clip{i}", f"clip{i + 3}"]))) for i in range(3)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert calls == [6]
    for i in range(3):
        assert got[i][:, 0].tolist() == [float(i), float(i + 3)]


def test_each_model_has_its_own_batching_settings(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from cmet_jobs.settings import JobsSettings

    monkeypatch.setenv("CMET_BATCH_MAX", "12")
    monkeypatch.setenv("CMET_BATCH_MODELS", '{"emotion2vec": {"max_batch": 4, "max_wait_ms": 20}}')
    settings = JobsSettings()
    assert settings.batching("emotion2vec") == (4, 20.0)
    assert settings.batching("edtalk_encoder") == settings.batching("edtalk_renderer") == (12, 5.0)


def test_concurrent_jobs_faces_share_one_restorer_forward() -> None:
    from cmet_core.enhance.restore import RestorerRunner
    from cmet_core.networks.gfpgan import GFPGAN, TINY_GFPGAN
    from cmet_core.verify.fill import fill_module
    from worker.batcher import BatchingRestorer

    net = GFPGAN(TINY_GFPGAN)
    fill_module(net, "gfpgan")
    runner = RestorerRunner(net, RuntimeOptions(device="cpu", batch=16))
    seen: list[tuple[str, int]] = []
    batcher = BatchingRestorer(runner, BatchPolicy(max_batch=16, max_wait_ms=200), lambda m, n: seen.append((m, n)))
    size = TINY_GFPGAN.out_size
    jobs = [torch.rand(2, 3, size, size) * 2 - 1 for _ in range(3)]
    got: dict[int, torch.Tensor] = {}
    threads = [threading.Thread(target=lambda i=i: got.__setitem__(i, batcher.restore(jobs[i]))) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert seen == [("gfpgan", 6)]  # three jobs' faces in one forward
    for i, faces in enumerate(jobs):
        torch.testing.assert_close(got[i], runner.restore(faces), atol=1e-4, rtol=0)


def test_audio2lip_windows_of_concurrent_dubs_share_a_forward() -> None:
    from cmet_core.networks.audio2lip import TINY_AUDIO2LIP, Audio2Lip
    from cmet_core.networks.runtime import LipRunner
    from worker.batcher import LipBatcher, WorkerBatching

    torch.manual_seed(0)
    runner = LipRunner(Audio2Lip(TINY_AUDIO2LIP), torch.device("cpu"))
    seen: list[tuple[str, int]] = []
    batcher = LipBatcher(runner, BatchPolicy(max_batch=32, max_wait_ms=200), observe=lambda m, n: seen.append((m, n)))
    jobs = [torch.randn(n, 1, 80, 16) for n in (5, 7, 4)]
    got: dict[int, torch.Tensor] = {}
    threads = [threading.Thread(target=lambda i=i: got.__setitem__(i, batcher(jobs[i]))) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    for i, windows in enumerate(jobs):
        torch.testing.assert_close(got[i], runner(windows), atol=5e-5, rtol=1e-5)  # the kit's tolerance
    assert seen == [("audio2lip", 16)]  # the three dubs in one forward
    assert isinstance(WorkerBatching(lambda _m: BatchPolicy(), lambda _m, _n: None).lips(runner), LipBatcher)
