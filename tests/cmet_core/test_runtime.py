"""The chunked runner gives the generator's own results for any batch size and option on the CPU."""

from __future__ import annotations

import pytest
import torch

from cmet_core.backbones.edtalk.backbone import EDTalkBackbone
from cmet_core.backbones.edtalk.network import TINY_EDTALK, Generator
from cmet_core.networks.runtime import RuntimeOptions
from cmet_core.verify.fill import fill_module


def _gen() -> Generator:
    gen = Generator(TINY_EDTALK).eval()
    fill_module(gen, "edtalk")
    return gen


@pytest.mark.parametrize(
    "options",
    [
        RuntimeOptions(device="cpu", batch=3),
        RuntimeOptions(device="cpu", channels_last=True),
        RuntimeOptions(device="cpu", precision="bf16"),
    ],
    ids=["batch3", "channels_last", "bf16"],
)
def test_runner_matches_direct_calls(options: RuntimeOptions) -> None:
    size = TINY_EDTALK.size
    frames = torch.rand(7, 3, size, size) * 2 - 1
    src = torch.rand(1, 3, size, size) * 2 - 1
    with torch.no_grad():
        ref_gen = _gen()
        m = ref_gen.encode_motion(frames)
        expected = ref_gen.render(ref_gen.prepare_source(src), m.lip, m.pose, m.exp)
    runner = EDTalkBackbone(_gen(), options)
    got_m = runner.encode(frames)
    got = runner.render(runner.prepare_source(src), got_m)
    assert got.shape == expected.shape and got.dtype == torch.float32
    tol = 0.25 if options.precision == "bf16" else 1e-4
    torch.testing.assert_close(got, expected, atol=tol, rtol=0)


def test_fp16_needs_cuda() -> None:
    with pytest.raises(ValueError, match="fp16 needs a CUDA device"):
        EDTalkBackbone(_gen(), RuntimeOptions(device="cpu", precision="fp16"))


def test_cuda_request_without_cuda_is_clear() -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(ValueError, match="CUDA is not available"):
        EDTalkBackbone(_gen(), RuntimeOptions(device="cuda:0"))


def test_runtime_options_come_from_the_settings(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The product (cmet edit, workers, prep) reaches every generator option through CMET_* settings."""
    from cmet_core.networks.runtime import RuntimeOptions
    from cmet_core.settings import CoreSettings

    for name, value in {
        "CMET_PRECISION": "bf16",
        "CMET_CHANNELS_LAST": "true",
        "CMET_COMPILE": "reduce-overhead",
        "CMET_RENDER_BATCH": "4",
    }.items():
        monkeypatch.setenv(name, value)
    options = RuntimeOptions.from_settings(CoreSettings(), device="cpu")
    assert (options.device, options.precision, options.channels_last, options.compile, options.batch) == (
        "cpu",
        "bf16",
        True,
        "reduce-overhead",
        4,
    )
