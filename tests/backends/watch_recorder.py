"""Runs a `FailureWatcher` on a thread and records its sightings, so a test can wait for what an operator would see."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from bot.core.catalog_detect import WatchScope
from bot.core.detection import Sighting
from bot.ports import FailureWatcher


class SightingRecorder:
    def __init__(self) -> None:
        self.sightings: list[Sighting] = []
        self.error: BaseException | None = None
        self._changed = threading.Condition()

    def report(self, sighting: Sighting) -> None:
        with self._changed:
            self.sightings.append(sighting)
            self._changed.notify_all()

    def snapshot(self) -> list[Sighting]:
        with self._changed:
            return list(self.sightings)

    def wait_for(
        self, predicate: Callable[[Sighting], bool], *, timeout: float = 20.0, what: str = "a sighting", after: int = 0
    ) -> Sighting:
        """The first sighting from index `after` on that matches; fails the test after `timeout`."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for sighting in self.sightings[after:]:
                    if predicate(sighting):
                        return sighting
                if self.error is not None:
                    raise AssertionError(f"the watcher failed while waiting for {what}: {self.error}")
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"timed out after {timeout}s waiting for {what}")
                self._changed.wait(timeout=remaining)

    def wait_failed(self, timeout: float = 20.0) -> BaseException:
        """The error the watcher gave up with; fails the test if it keeps running for `timeout`."""
        with self._changed:
            if not self._changed.wait_for(lambda: self.error is not None, timeout=timeout):
                raise AssertionError(f"the watcher was still running after {timeout}s")
            assert self.error is not None
            return self.error

    def fail(self, error: BaseException) -> None:
        with self._changed:
            self.error = error
            self._changed.notify_all()


@contextmanager
def watching(watcher: FailureWatcher, scope: WatchScope) -> Iterator[SightingRecorder]:
    recorder = SightingRecorder()
    stop = threading.Event()

    def run() -> None:
        try:
            watcher.watch(scope, recorder.report, stop)
        except BaseException as exc:  # recorded for the test's assertions
            recorder.fail(exc)

    thread = threading.Thread(target=run, name="watcher-under-test", daemon=True)
    thread.start()
    try:
        yield recorder
    finally:
        stop.set()
        thread.join(timeout=10)
        assert not thread.is_alive(), "the watcher did not stop within 10 s of being told to"
