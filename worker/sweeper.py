"""A thread in each worker's main process that hands due webhook retries to the queue.

Retries wait as rows with a `next_attempt_at`, not as delayed queue messages (see
`service.webhooks`); this loop is what wakes them. Several workers may sweep at once: the
delivery task claims its row atomically, so a doubly queued retry is sent once.
"""

from __future__ import annotations

import logging
import threading

from service import webhooks
from service.settings import get_service_settings

log = logging.getLogger(__name__)
SWEEP_EVERY_S = 1.0


def _loop(stop: threading.Event) -> None:
    settings = get_service_settings()
    while not stop.wait(SWEEP_EVERY_S):
        try:
            webhooks.dispatch(settings, list(webhooks.due(settings)))
        except Exception:  # a database or broker hiccup must not end the loop
            log.exception("webhook sweep failed; retrying")


def start() -> threading.Event:
    stop = threading.Event()
    threading.Thread(target=_loop, args=(stop,), name="cmet-webhook-sweeper", daemon=True).start()
    return stop
