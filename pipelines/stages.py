"""Run pipeline stages concurrently through bounded queues.

A stage is an iterator; :meth:`Stages.thread` moves its work onto a thread and hands items
over a queue of at most ``maxsize`` entries, so a fast producer waits for a slow consumer
(memory stays flat whatever the input's length) and the slowest stage sets the pace. Chaining
``stages.thread(b(stages.thread(a(...))))`` overlaps every stage. An exception raised in a
stage re-raises in its consumer. Leaving the :class:`Stages` block (normally, on an error or
on Ctrl-C) stops every stage at once, joins the threads and closes the stage iterators, so
the files they opened are closed too; nothing depends on garbage collection.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")

_ITEM, _END, _ERROR = range(3)
_POLL = 0.05  # seconds between checks of the stop flag while a queue is full or empty


class Stages:
    """A group of threaded stages that stop together (use as a context manager)."""

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def thread(self, items: Iterable[T], maxsize: int = 4, name: str = "stage") -> Iterator[T]:
        """Iterate ``items`` on a new thread; the returned iterator yields them here, in order."""
        handoff: queue.Queue = queue.Queue(maxsize=max(1, maxsize))
        stop = self._stop

        def put(entry: tuple) -> bool:
            while not stop.is_set():
                try:
                    handoff.put(entry, timeout=_POLL)
                    return True
                except queue.Full:
                    continue
            return False

        def work() -> None:
            iterator = iter(items)
            try:
                for item in iterator:
                    if not put((_ITEM, item)):
                        return
                put((_END, None))
            except BaseException as exc:  # handed to the consumer, which re-raises it
                put((_ERROR, exc))
            finally:
                close = getattr(iterator, "close", None)
                if close is not None:
                    close()

        worker = threading.Thread(target=work, name=f"animator-{name}", daemon=True)
        self._threads.append(worker)
        worker.start()
        return self._receive(handoff)

    def _receive(self, handoff: queue.Queue) -> Iterator:
        while True:
            try:
                kind, value = handoff.get(timeout=_POLL)
            except queue.Empty:
                if self._stop.is_set():
                    return
                continue
            if kind == _END:
                return
            if kind == _ERROR:
                raise value
            yield value

    def close(self) -> None:
        """Stop every stage and wait for its thread (a stage busy in one call finishes it)."""
        self._stop.set()
        for worker in self._threads:
            worker.join()
        self._threads.clear()

    def __enter__(self) -> "Stages":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def batched_by(items: Iterable[T], size_of: Callable[[T], int], limit: int,
               max_items: int | None = None) -> Iterator[list[T]]:
    """Group consecutive items, in order, so each group's summed ``size_of`` stays within
    ``limit`` (an item larger than ``limit`` forms its own group) and a group holds at most
    ``max_items`` items (default ``limit``), so long runs of size-0 items stay bounded too."""
    max_items = max_items or max(1, limit)
    group: list[T] = []
    total = 0
    for item in items:
        size = size_of(item)
        if group and (total + size > limit or len(group) >= max_items):
            yield group
            group, total = [], 0
        group.append(item)
        total += size
    if group:
        yield group
