"""The skips of a laptop without PostgreSQL, Redis or Chromium: each names what is missing, and a machine
that has them skips nothing (the check is pointed at a closed port and at a path that does not exist)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from tests.needs import BROWSER, SERVICES, missing, needed, unreachable


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # free again once closed: nothing listens there


def test_a_service_on_a_closed_port_is_named_as_missing() -> None:
    port = _closed_port()
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        services = {"PostgreSQL": ("127.0.0.1", port), "Redis": server.getsockname()}
        assert unreachable(services) == ["PostgreSQL"]
        reason = missing(needed([()], browser=False), services)
        assert reason == f"PostgreSQL is not reachable on 127.0.0.1:{port} (see CONTRIBUTING.md)"
        assert missing(needed([("Redis",)], browser=False), services) is None  # only what the test named


def test_a_missing_chromium_is_named_and_nothing_else_is_checked_for_it(tmp_path: Path) -> None:
    closed = {name: ("127.0.0.1", _closed_port()) for name in SERVICES}
    reason = missing(needed([], browser=True), closed, chromium=tmp_path / "chromium")
    assert reason == f"Chromium is not installed at {tmp_path / 'chromium'} (apt-get install chromium)"
    assert missing(needed([], browser=True), closed, chromium=Path(__file__)) is None
    assert needed([], browser=False) == frozenset() and needed([()], browser=True) == {*SERVICES, BROWSER}


@pytest.mark.stack
def test_this_machine_has_the_stack() -> None:
    """Reached only where PostgreSQL and Redis answer: the marker's skip did not fire."""
    assert unreachable(SERVICES) == []


class _Item:
    def __init__(self, *fixtures: str) -> None:
        self.fixturenames, self.marks = list(fixtures), []  # type: ignore[var-annotated]

    def add_marker(self, mark: pytest.MarkDecorator) -> None:
        self.marks.append(mark.name)


def test_tests_that_use_the_stack_are_marked_by_their_fixture_closure() -> None:
    """`client` brings `stack` in: pytest lists it in the test's fixture closure, which the conftest reads."""
    from tests.conftest import pytest_collection_modifyitems

    through_client, plain = _Item("client", "api_key", "stack"), _Item("tmp_path")
    pytest_collection_modifyitems([through_client, plain])  # type: ignore[list-item]
    assert (through_client.marks, plain.marks) == (["stack"], [])
