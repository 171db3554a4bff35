"""The published goldens, through the same code path as `cmet conformance`."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from cmet_cli.main import app
from cmet_core.verify.conformance import KIT_FILES, run_connector_kit
from cmet_core.verify.goldens import Goldens, Group, Tolerance, keys_read


def test_cli_matches_every_golden(conformance_kit: Path, tmp_path: Path) -> None:
    """EDTalk's and the connector's groups, and one sub-kit to show the CLI visits them. The other sub-kits'
    groups run through the same functions in their own modules (test_audio2lip, test_pdfgc; about a minute
    of the suite each way, so not twice)."""
    for name in KIT_FILES:
        (tmp_path / name).symlink_to(conformance_kit / name)
    if (conformance_kit / "gfpgan").is_dir():
        (tmp_path / "gfpgan").symlink_to(conformance_kit / "gfpgan")
    result = CliRunner().invoke(app, ["conformance", "--kit", str(tmp_path)])
    lines = [ln for ln in result.output.splitlines() if ln.startswith(("ok", "FAIL"))]
    assert result.exit_code == 0, result.output
    groups = {ln.split()[1] for ln in lines}
    assert {
        "edtalk.filled_digest",
        "edtalk.v_img.reference",
        "edtalk.v_img.fast_batched",
        "edtalk.av_img",
        "connector.filled_digest",
        "connector.loop",
        "connector.schedule",
    } <= groups
    assert all(ln.startswith("ok") and "max_abs=" in ln for ln in lines)
    counted = [ln.rsplit("[", 1)[1].split()[0] for ln in lines]  # progress across the groups, as each finishes
    assert counted == [str(n) for n in range(1, len(lines) + 1)]
    if (conformance_kit / "gfpgan").is_dir():
        assert {"gfpgan.filled_digest", "gfpgan.net_output", "gfpgan.restored_u8"} <= groups
    assert not any(g.startswith(("audio2lip.", "pdfgc.")) for g in groups)  # a sub-kit not in the folder is not run


def test_incomplete_kit_is_a_clear_error(conformance_kit: Path, tmp_path: Path) -> None:
    for name in KIT_FILES[:-1]:
        shutil.copy(conformance_kit / name, tmp_path / name)
    result = CliRunner().invoke(app, ["conformance", "--kit", str(tmp_path)])
    assert result.exit_code == 2
    assert "about 3-5 minutes" in result.output  # said before the wait, not after
    assert "missing tolerances.json" in result.output
    assert "Traceback" not in result.output


def test_a_group_that_compares_nothing_fails() -> None:
    """A group whose keys were renamed or filtered away must not report a pass."""
    empty = Group("kit.empty", Tolerance(atol=1e-5))
    assert not empty.result().passed and "compared nothing" in empty.result().detail
    one = Group("kit.one", Tolerance(atol=1e-5))
    one.compare("x", np.zeros(3), np.zeros(3))
    assert one.result().passed


def test_a_golden_key_no_group_reads_fails_its_kit(conformance_kit: Path, tmp_path: Path) -> None:
    """Item 19: each kit ends with `<model>.keys_read`, which fails when a golden key is read by no group
    and is not on the model's reasoned list of keys left unread. Here the connector's goldens gain a key
    no group knows. (The other kits' `keys_read` groups run with their groups: `cmet conformance`,
    test_audio2lip, test_gfpgan and test_pdfgc assert every group passes.)"""
    for name in KIT_FILES:
        if name != "golden_connector.npz":
            (tmp_path / name).symlink_to(conformance_kit / name)
    with np.load(conformance_kit / "golden_connector.npz") as golden:
        arrays = dict(golden)
    np.savez(tmp_path / "golden_connector.npz", **arrays, extra_unread=np.zeros(3, np.float32))

    results = {r.name: r for r in run_connector_kit(tmp_path)}
    added = results.pop("connector.keys_read")
    assert not added.passed and "1 golden keys read by no group: ['extra_unread']" in added.detail, added.line()
    assert all(r.passed for r in results.values()), [r.line() for r in results.values()]  # the rest as ever


def test_a_reasoned_unread_key_must_still_be_in_the_kit() -> None:
    """An allowed-unread key the kit dropped is named too: the list cannot go stale silently."""
    golden = Goldens({"read": np.zeros(1), "metadata": np.zeros(1)})
    golden["read"]
    assert keys_read("kit.keys_read", golden, {"metadata": "why"}).passed
    assert not keys_read("kit.keys_read", golden, {}).passed
    stale = keys_read("kit.keys_read", golden, {"metadata": "why", "gone": "why"})
    assert not stale.passed and "gone" in stale.detail
