"""The queue of `cmet serve`: kombu's filesystem transport, with messages that appear whole and are taken once.

kombu's own transport creates a message file and then writes into it, while a consumer polling the
folder takes any `*.msg` file it sees: a worker could take a file the API had not finished and read
it empty, and the `JSONDecodeError` stopped `cmet serve`'s edit worker (the job came back only through
the sweeper, late). Here a message is written under a hidden name and renamed into place (atomic on
one file system), a consumer claims a message by renaming it out of the folder (only one rename
wins), and a file that still cannot be decoded is set aside in `bad/` with one log line; the worker
goes on with the next message. Selected by `broker_transport` in `cmet_jobs.queue.broker_settings`.
"""

from __future__ import annotations

import logging
import os
import uuid
from pathlib import Path
from queue import Empty
from time import monotonic
from typing import Any

from kombu.exceptions import ChannelError
from kombu.transport import filesystem, virtual
from kombu.utils.json import dumps, loads

log = logging.getLogger(__name__)

MESSAGE_SUFFIX = ".msg"
STAMP_DIGITS = 16  # milliseconds, zero-padded so names sort by arrival


def _arrival(name: str) -> tuple[int, str]:
    """Order by the numeric stamp before `_`: as text, `1_x` would sort after `12_y` (a later message first)."""
    stamp, _, rest = name.partition("_")
    return (int(stamp), rest) if stamp.isdigit() else (-1, name)


class Channel(filesystem.Channel):
    # kombu's filesystem channel widens the virtual channel's `_put` (message options as keywords); its typing
    # disagrees with itself, so the override is checked against the filesystem channel by hand
    def _put(self, queue: str, message: Any, **kwargs: Any) -> None:  # type: ignore[override]  # noqa: ARG002
        """Write `message` under a name no consumer looks at, then rename it to its message name."""
        folder = Path(self.data_folder_out)
        name = f"{int(round(monotonic() * 1000)):0{STAMP_DIGITS}d}_{uuid.uuid4()}.{queue}{MESSAGE_SUFFIX}"
        hidden = folder / f".{name}.part"
        try:
            hidden.write_bytes(dumps(message).encode())
            os.replace(hidden, folder / name)
        except OSError as exc:
            hidden.unlink(missing_ok=True)
            raise ChannelError(f"cannot add a message to {folder}") from exc

    def _get(self, queue: str, timeout: float | None = None) -> Any:  # noqa: ARG002 (polled: never waits)
        """The oldest message of `queue` that this process claims first; undecodable ones are set aside."""
        folder = Path(self.data_folder_in)
        wanted = f"{queue}{MESSAGE_SUFFIX}"
        for name in sorted(os.listdir(folder), key=_arrival):
            if name.partition(".")[2] != wanted:
                continue
            claimed = self._claimed_folder / f"{uuid.uuid4()}-{name}"
            try:
                os.rename(folder / name, claimed)
            except OSError:
                continue  # another consumer claimed it first
            try:
                payload = claimed.read_bytes()
                message = loads(payload.decode())
            except (OSError, ValueError) as exc:
                self._set_aside(claimed, name, exc)
                continue
            claimed.unlink(missing_ok=True)
            return message
        raise Empty()

    @property
    def _claimed_folder(self) -> Path:
        folder = Path(self.data_folder_in).parent / "claimed"
        folder.mkdir(exist_ok=True)
        return folder

    def _set_aside(self, claimed: Path, name: str, exc: Exception) -> None:
        bad = Path(self.data_folder_in).parent / "bad"
        bad.mkdir(exist_ok=True)
        try:
            os.replace(claimed, bad / name)
        except OSError:
            claimed.unlink(missing_ok=True)
        log.warning("queue message %s could not be read (%s); set aside in %s", name, exc, bad)


class Transport(filesystem.Transport):
    """kombu keeps one declared-bindings state for every filesystem connection of a process, so a second
    data folder (a test's, another `CMET_DATA_DIR`) would never get its exchange files written; here the
    state is one per control folder, as the folder is what it mirrors."""

    Channel = Channel
    states: dict[str, virtual.BrokerState] = {}

    def __init__(self, client: Any, **kwargs: Any) -> None:
        super().__init__(client, **kwargs)
        folder = str(client.transport_options.get("control_folder", "control"))
        self.state = self.states.setdefault(folder, virtual.BrokerState())
