"""Rate limits of the CSAT response service (issue #21), on the ``limits`` library.

Three budgets, so a mail scanner that fetches every link of a mail cannot spend the customer's:

- ``views``: page views (GET/HEAD) per client address;
- ``failures``: refused POSTs (bad token, CSRF or score) per client address; once spent, that
  client's refused POSTs get 429 - guessing and replaying are slowed down, answering is not;
- ``answers``: accepted POSTs (a valid token and CSRF pair) per survey - only a real flood of
  answers to one survey is refused.

The counters live in the ``limits`` storage named by a URI: ``redis://...`` shares them between
every process of the service (the deployment's Redis); ``memory://`` only for a single process.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any

from limits.storage import MemoryStorage, storage_from_string

log = logging.getLogger(__name__)
NAMESPACE = "ps-csat"


class SingleProcessStorage(MemoryStorage):
    """``limits``' in-memory storage whose expiry sweeper never keeps the process alive.

    ``MemoryStorage`` sweeps expired entries from a non-daemon ``threading.Timer``. Where a timed wait
    never returns (libfaketime 0.9.10 hangs ``pthread`` timed waits, which the calendar guard and
    ``faketime make test`` rely on), that timer keeps the interpreter from exiting. The sweep only frees
    memory - counting reads the clock itself - so a daemon timer loses nothing.
    """

    def __init__(self, uri: str | None = None, **options: Any) -> None:
        super().__init__(uri, **options)
        self.timer.cancel()  # the constructor's non-daemon sweeper; replaced on the first hit
        self.timer.join()

    # MemoryStorage calls ``self.__schedule_expiry()``, i.e. this name, after every hit.
    def _MemoryStorage__schedule_expiry(self) -> None:
        if not self.timer.is_alive():
            self.timer = threading.Timer(0.01, self._MemoryStorage__expire_events)  # type: ignore[attr-defined]
            self.timer.daemon = True
            self.timer.start()


def storage_for(uri: str) -> Any:
    """The ``limits`` storage named by ``uri``; ``memory://`` gets :class:`SingleProcessStorage`."""
    if uri.split("://", 1)[0] == "memory":
        return SingleProcessStorage(uri)
    return storage_from_string(uri)


@dataclass(frozen=True)
class LimitSettings:
    storage_uri: str = "memory://"
    views_per_client: str = "120/minute"
    failures_per_client: str = "20/minute"
    answers_per_survey: str = "20/hour"


class RequestLimits:
    """Moving-window counters (``limits.strategies.MovingWindowRateLimiter``) in one storage."""

    def __init__(self, settings: LimitSettings) -> None:
        from limits import parse
        from limits.strategies import MovingWindowRateLimiter

        self.storage = storage_for(settings.storage_uri)
        self.limiter = MovingWindowRateLimiter(self.storage)
        self.views = parse(settings.views_per_client)
        self.failures = parse(settings.failures_per_client)
        self.answers = parse(settings.answers_per_survey)

    def view(self, client: str) -> bool:
        """Count a page view of ``client``; False when its views are spent."""
        return self._hit(self.views, "view", client)

    def failure(self, client: str) -> bool:
        """Count a refused POST of ``client``; False when it has refused POSTs to spare no more."""
        return self._hit(self.failures, "failure", client)

    def answer(self, survey_id: str) -> bool:
        """Count an accepted POST for ``survey_id``; False when the survey is being flooded."""
        return self._hit(self.answers, "answer", survey_id)

    def _hit(self, item: Any, kind: str, key: str) -> bool:
        # When the shared storage (Redis) is down, customers can still answer: the limits protect
        # the service, they must not take it down with them.
        try:
            return bool(self.limiter.hit(item, NAMESPACE, kind, key))
        except Exception as error:  # any storage failure
            log.warning("CSAT rate limits unavailable (%s): request allowed", type(error).__name__)
            return True

    def reset(self) -> None:
        self.storage.reset()
