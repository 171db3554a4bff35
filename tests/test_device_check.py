"""`bench/device_check.py` in its CPU mode, so the script the first lent GPU runs has not rotted: every CUDA
check answers "no GPU", the tensor paste-back runs on the CPU, the table is written as JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from bench import device_check


@pytest.mark.skipif(torch.cuda.is_available(), reason="CPU mode: this machine has CUDA (run the script itself)")
def test_the_device_check_runs_in_cpu_mode(tmp_path: Path) -> None:
    rows = device_check.main(["--quick", "--json", str(tmp_path / "check.json")])
    table = json.loads((tmp_path / "check.json").read_text())
    assert table["device"] == "CPU only"
    checks = {row["check"]: row["result"] for row in table["rows"]}
    assert [checks[name] for name in device_check.CUDA_CHECKS] == [device_check.NO_GPU] * len(device_check.CUDA_CHECKS)
    paste = rows[-1]
    assert paste.check.startswith("tensor paste-back on cpu") and paste.value is not None and paste.value <= 1
