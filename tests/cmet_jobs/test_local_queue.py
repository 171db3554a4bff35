"""The local queue of `cmet serve` (filesystem broker): a message is never read half-written, and a bad one never
stops a consumer. Real kombu connections on a real folder; the producer is a second process, as the API is."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from queue import Empty
from typing import Any

import pytest
from kombu import Connection

from cmet_jobs.queue import broker_settings

PRODUCER = """
import sys
from pathlib import Path
from kombu import Connection
from cmet_jobs.queue import broker_settings
conf = broker_settings("filesystem://", Path(sys.argv[1]))
options = conf["broker_transport_options"]
with Connection("filesystem://", transport=conf["broker_transport"], transport_options=options) as conn:
    queue = conn.SimpleQueue("jobs")
    for i in range(int(sys.argv[2])):
        queue.put({"i": i, "pad": "x" * 20000})
"""


def connect(data_dir: Path) -> Connection:
    conf = broker_settings("filesystem://", data_dir)
    transport_options: dict[str, Any] = conf["broker_transport_options"]
    return Connection("filesystem://", transport=conf["broker_transport"], transport_options=transport_options)


def test_messages_written_while_a_consumer_drains_all_arrive_whole(tmp_path: Path) -> None:
    sent = 300
    with connect(tmp_path) as conn:
        queue = conn.SimpleQueue("jobs")  # declared before the producer starts, as a worker's queue is
        producer = subprocess.Popen([sys.executable, "-c", PRODUCER, str(tmp_path), str(sent)])
        seen: list[int] = []
        deadline = time.monotonic() + 60
        while len(seen) < sent and time.monotonic() < deadline:
            try:
                message = queue.get_nowait()
            except Empty:
                continue
            seen.append(message.payload["i"])
            message.ack()
        producer.wait(timeout=30)
    assert sorted(seen) == list(range(sent))
    assert not (tmp_path / "broker" / "bad").exists()


def test_an_unreadable_message_is_set_aside_and_the_next_one_is_delivered(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with connect(tmp_path) as conn:
        queue = conn.SimpleQueue("jobs")
        folder = tmp_path / "broker" / "queue"
        (folder / f"1_{'0' * 8}.jobs.msg").write_bytes(b"")  # what a half-written file reads as
        queue.put({"i": 7})
        message = queue.get(timeout=5)
        assert message.payload == {"i": 7}
        message.ack()
    assert [p.name for p in (tmp_path / "broker" / "bad").iterdir()] == [f"1_{'0' * 8}.jobs.msg"]
    assert "could not be read" in caplog.text


def test_messages_are_delivered_in_arrival_order_whatever_the_stamps_length(tmp_path: Path) -> None:
    with connect(tmp_path) as conn:
        queue = conn.SimpleQueue("jobs")
        folder = tmp_path / "broker" / "queue"
        queue.put({"i": "later"})
        time.sleep(0.01)  # a later millisecond stamp, so the two names sort by when they were sent
        queue.put({"i": "earlier"})
        later, earlier = sorted(folder.glob("*.jobs.msg"))
        later.rename(folder / "1000_b.jobs.msg")  # as text, "1000_" sorts before "999_"
        earlier.rename(folder / "999_a.jobs.msg")
        got = []
        for _ in range(2):
            message = queue.get(timeout=5)
            got.append(message.payload["i"])
            message.ack()
    assert got == ["earlier", "later"]
