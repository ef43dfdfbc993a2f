"""A `FailureWatcher` the test feeds: what a real watcher would see, shared by every replica's watcher.

`WatchedWorld` holds the latest sighting per object (what the cluster looks like now). Each replica gets its own
`FakeWatcher` on the same world; `watch()` first reports every object the world holds (a relist, `resync=True`),
then every sighting fed afterwards, until `stop` is set: exactly the contract of the real watchers.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from bot.core.catalog import WatchScope
from bot.core.detection import Sighting


def _object_key(sighting: Sighting) -> str:
    if sighting.workload is not None:
        return f"w:{sighting.location}:{sighting.workload.kind}:{sighting.workload.namespace}/{sighting.workload.name}"
    if sighting.release is not None:
        return f"h:{sighting.location}:{sighting.release.namespace}/{sighting.release.name}"
    assert sighting.service is not None
    return f"e:{sighting.location}:{sighting.service.cluster}/{sighting.service.service}"


class WatchedWorld:
    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._objects: dict[str, Sighting] = {}
        self._log: list[Sighting] = []

    def feed(self, sighting: Sighting) -> None:
        with self._changed:
            self._objects[_object_key(sighting)] = sighting
            self._log.append(sighting)
            self._changed.notify_all()

    def _snapshot(self) -> tuple[list[Sighting], int]:
        with self._changed:
            return list(self._objects.values()), len(self._log)

    def _wait_after(self, seen: int, timeout: float) -> tuple[list[Sighting], int]:
        with self._changed:
            self._changed.wait_for(lambda: len(self._log) > seen, timeout=timeout)
            return self._log[seen:], len(self._log)


class FakeWatcher:
    def __init__(self, world: WatchedWorld) -> None:
        self._world = world
        self.lists = 0

    def watch(self, scope: WatchScope, report: Callable[[Sighting], None], stop: threading.Event) -> None:
        objects, seen = self._world._snapshot()
        self.lists += 1
        for sighting in objects:
            report(sighting.model_copy(update={"resync": True}))
        while not stop.is_set():
            new, seen = self._world._wait_after(seen, timeout=0.05)
            for sighting in new:
                if stop.is_set():
                    return
                report(sighting)
