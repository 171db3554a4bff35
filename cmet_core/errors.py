"""The error type for anything wrong with what a user sent, as opposed to a fault of ours.

Every layer above maps it the same way: the CLI prints the message and exits with code 2, the
service answers HTTP 4xx with `code`, the worker fails the job without retrying it.
"""

from __future__ import annotations


class InputError(ValueError):
    """A user's input that cannot be edited; `code` is machine-readable, the message says what to change."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
