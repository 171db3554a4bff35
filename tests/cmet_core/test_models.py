"""Model structure: manifests, tiny variants, fast path == reference path."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from cmet_core.backbones.edtalk.network import TINY_EDTALK, Generator
from cmet_core.networks.connector import TINY_CONNECTOR, Connector, run_windows
from cmet_core.verify.fill import fill_module
from cmet_core.verify.schedule import official_schedule


@pytest.mark.parametrize(
    ("factory", "manifest"), [(Generator, "edtalk_gen_manifest.json"), (Connector, "cmet_connector_manifest.json")]
)
def test_published_configuration_matches_manifest(factory, manifest: str, conformance_kit: Path) -> None:
    keys = json.loads((conformance_kit / manifest).read_text())["keys"]
    sd = factory().state_dict()
    assert {k: list(v.shape) for k, v in sd.items()} == {k["key"]: k["shape"] for k in keys}
    assert {k: str(v.dtype).removeprefix("torch.") for k, v in sd.items()} == {k["key"]: k["dtype"] for k in keys}


@pytest.fixture(scope="module")
def tiny_gen() -> Generator:
    torch.manual_seed(0)
    gen = Generator(TINY_EDTALK).eval()
    fill_module(gen, "edtalk")
    return gen


def test_tiny_generator_round_trips_strictly(tiny_gen: Generator) -> None:
    other = Generator(TINY_EDTALK)
    other.load_state_dict(tiny_gen.state_dict(), strict=True)
    with pytest.raises(RuntimeError, match="Missing key"):
        other.load_state_dict({k: v for k, v in tiny_gen.state_dict().items() if "to_rgb1" not in k}, strict=True)


@torch.no_grad()
def test_fast_path_equals_reference_render(tiny_gen: Generator) -> None:
    size = TINY_EDTALK.size
    frames = torch.rand(3, 3, size, size) * 2 - 1
    src = torch.rand(1, 3, size, size) * 2 - 1
    exp = torch.randn(3, TINY_EDTALK.exp_dim) * 0.3
    ref = torch.cat(
        [tiny_gen.render_reference(src, frames[i : i + 1], frames[i : i + 1], exp[i : i + 1]) for i in range(3)]
    )
    m = tiny_gen.encode_motion(frames)
    fast = tiny_gen.render(tiny_gen.prepare_source(src), m.lip, m.pose, exp)
    assert fast.shape == (3, 3, size, size)
    torch.testing.assert_close(fast, ref, atol=1e-4, rtol=0)


@torch.no_grad()
def test_connector_windows() -> None:
    con = Connector(TINY_CONNECTOR).eval()
    speech = torch.randn(1, 1, TINY_CONNECTOR.speech_dim)
    exp = torch.randn(10, 10)
    pred, delta = run_windows(con, exp, speech)
    torch.testing.assert_close(pred, exp + delta)
    second = con(delta[None, :5], speech, exp[None, 5:])
    torch.testing.assert_close(delta[5:], second)
    with pytest.raises(ValueError, match="multiple of 5"):
        run_windows(con, exp[:7], speech)
    with pytest.raises(ValueError, match="exactly 5"):
        con(torch.zeros(1, 4, 10), speech, exp[None, :4])
    with pytest.raises(ValueError, match="more than 20"):
        official_schedule(con, exp, speech, lip_len=10)
