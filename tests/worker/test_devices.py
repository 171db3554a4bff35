"""Devices: which workers `cmet worker --devices` starts, and that a crashed one comes back.

No CUDA device exists here: GPU counts are passed in as numbers (the mock is only the count
`nvidia-smi -L` would report); the supervisor test runs a real CPU worker.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.service.stack import Stack
from worker.devices import DeviceSlot, plan


def test_plan_devices() -> None:
    assert plan("all", 0) == [DeviceSlot("cpu", None)]
    assert plan("cpu", 4) == [DeviceSlot("cpu", None)]
    assert plan("all", 2) == [DeviceSlot("gpu0", 0), DeviceSlot("gpu1", 1)]
    assert plan("1,0,1", 2) == [DeviceSlot("gpu0", 0), DeviceSlot("gpu1", 1)]
    with pytest.raises(ValueError, match="not present"):
        plan("0,3", 2)
    with pytest.raises(ValueError, match="all, cpu or GPU indices"):
        plan("gpu", 2)


def test_each_gpu_worker_sees_only_its_device() -> None:
    env = DeviceSlot("gpu1", 1).environment(9900, 4)
    assert env == {
        "CMET_WORKER_METRICS_PORT": "9900",
        "CMET_NUM_THREADS": "4",
        "CUDA_VISIBLE_DEVICES": "1",
        "CMET_DEVICE": "cuda:0",
    }
    assert DeviceSlot("cpu", None).environment(0, 1)["CUDA_VISIBLE_DEVICES"] == ""
    assert DeviceSlot("gpu1", 1).queues("cmet-edits") == ["cmet-edits", "cmet-edits.gpu1"]


def test_previews_are_consumed_first() -> None:
    from cmet_jobs.queue import broker_settings
    from worker.devices import command, job_queues

    queues = ["cmet-previews", "cmet-previews.gpu0", "cmet-edits", "cmet-edits.gpu0"]
    assert DeviceSlot("gpu0", 0).queues("cmet-edits", "cmet-previews") == queues
    args = command(DeviceSlot("gpu0", 0), "cmet-edits", 2, "cmet-previews")
    assert args[args.index("-Q") + 1] == ",".join(queues)
    assert job_queues("cmet-edits", "cmet-previews") == ["cmet-previews", "cmet-edits"]
    # Redis is asked for the queues in that order every time, not round robin
    redis_options = broker_settings("redis://h/0", Path("/tmp"))["broker_transport_options"]
    assert redis_options["queue_order_strategy"] == "priority"


def test_crashed_worker_is_restarted(stack: Stack, tmp_path: Path) -> None:
    env = {**stack.env, "CMET_QUEUE": "cmet-supervisor-test", "CMET_WORKER_METRICS_PORT": "0"}
    log = (tmp_path / "supervisor.log").open("w+")
    cmet = str(Path(sys.executable).with_name("cmet"))
    sup = subprocess.Popen(
        [cmet, "worker", "--devices", "cpu"], env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )

    def pids() -> list[int]:
        log.flush()
        return [int(p) for p in re.findall(r"worker cpu started \(pid (\d+)\)", Path(log.name).read_text())]

    try:
        deadline = time.monotonic() + 60
        while not pids():
            assert time.monotonic() < deadline and sup.poll() is None, Path(log.name).read_text()
            time.sleep(0.2)
        first = pids()[0]
        time.sleep(3)
        os.killpg(first, signal.SIGKILL)
        while len(pids()) < 2:
            assert time.monotonic() < deadline + 60, Path(log.name).read_text()
            time.sleep(0.2)
        assert "exited with -9" in Path(log.name).read_text()
    finally:
        sup.send_signal(signal.SIGTERM)
        sup.wait(90)
    second = pids()[1]
    with pytest.raises(ProcessLookupError):
        os.kill(second, 0)
