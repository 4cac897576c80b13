"""The queue in front of the one model: first come, first served, and a bounded line.

A request takes a place in line as soon as it is accepted (`reserve`, which refuses when the
line is full: the API answers 429 then, before any byte of a stream is sent), and waits for
its turn (`Place.wait`) in the order it came. asyncio's Lock wakes waiters in order and does
not let a newcomer overtake them, which is the fairness; a waiter that leaves (its client
hung up) gives up its place without holding anyone up.
"""

from __future__ import annotations

import asyncio
import time


class QueueFull(Exception):
    pass


class TurnQueue:
    def __init__(self, max_waiting: int = 64) -> None:
        self.max_waiting = max_waiting
        self._lock = asyncio.Lock()
        self._places = 0  # the one holding the model + those waiting

    @property
    def waiting(self) -> int:
        return max(0, self._places - (1 if self._lock.locked() else 0))

    def reserve(self) -> Place:
        if self._places >= self.max_waiting + 1:
            raise QueueFull(f"{self.max_waiting} requests are already waiting for the model")
        self._places += 1
        return Place(self)


class Place:
    """One request's place in line. `release` is idempotent: the stream's end, its cleanup
    and the response's background task may each call it."""

    def __init__(self, queue: TurnQueue) -> None:
        self._queue = queue
        self._held = False
        self._released = False
        self.waited = 0.0  # seconds between reserve and the turn

    async def wait(self) -> None:
        started = time.monotonic()
        try:
            await self._queue._lock.acquire()
        except BaseException:
            self.release()
            raise
        self._held = True
        self.waited = time.monotonic() - started

    def release(self) -> None:
        if self._released:
            return
        self._released = True
        self._queue._places -= 1
        if self._held:
            self._held = False
            self._queue._lock.release()
