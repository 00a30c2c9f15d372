"""Deployment events: written to SQLite first, then handed to live subscribers.

The event log is the truth; live delivery is an optimisation. A subscriber
that falls too far behind is closed rather than allowed to grow without bound:
its client reconnects with ``Last-Event-ID`` and is replayed from the log, so
nothing is lost and memory stays bounded.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import cached_property

from compartment_cli.models.events import DeploymentEvent, encode_event_data, event_type_of
from compartment_cli.server.store import Store

SUBSCRIBER_BUFFER = 10_000
REPLAY_BATCH = 1000  # events read from the log at a time
LIVE_BATCH = 1000  # live events sent to a follower in one write, at most


@dataclass(frozen=True)
class StoredEvent:
    id: int
    type: str
    data: bytes

    @cached_property
    def frame(self) -> bytes:
        """The event as one server-sent-events block: encoded once, sent to every follower.

        ``data`` is one line: msgspec's JSON never holds a raw line break.
        """
        return b"id: %d\nevent: %s\ndata: %s\n\n" % (self.id, self.type.encode(), self.data)


class Subscription:
    def __init__(self) -> None:
        self.queue: asyncio.Queue[StoredEvent | None] = asyncio.Queue(SUBSCRIBER_BUFFER)
        self.overflowed = False

    def offer(self, event: StoredEvent) -> None:
        if self.overflowed:
            return
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            self.overflowed = True
            self.queue.get_nowait()
            self.queue.put_nowait(None)  # wakes the reader, which ends the stream

    def close(self) -> None:
        if not self.overflowed:
            self.overflowed = True
            while not self.queue.empty():
                self.queue.get_nowait()
            self.queue.put_nowait(None)


class EventBus:
    def __init__(self, store: Store) -> None:
        self._store = store
        self._subscribers: defaultdict[tuple[str, str], set[Subscription]] = defaultdict(set)

    def publish(self, project: str, environment: str, event: DeploymentEvent) -> int:
        data = encode_event_data(event)
        event_type = event_type_of(event)
        event_id = self._store.append_event(project, environment, event_type, data)
        stored = StoredEvent(event_id, event_type, data)
        for subscription in tuple(self._subscribers.get((project, environment), ())):
            subscription.offer(stored)
        return event_id

    @asynccontextmanager
    async def subscribe(self, project: str, environment: str) -> AsyncIterator[Subscription]:
        subscription = Subscription()
        key = (project, environment)
        self._subscribers[key].add(subscription)
        try:
            yield subscription
        finally:
            self._subscribers[key].discard(subscription)
            if not self._subscribers[key]:
                del self._subscribers[key]

    def backlogs(self, project: str, environment: str) -> list[int]:
        """How many events each live subscriber of the environment has yet to take."""
        return [s.queue.qsize() for s in self._subscribers.get((project, environment), ())]

    def close_all(self) -> None:
        for subs in self._subscribers.values():
            for subscription in subs:
                subscription.close()

    async def batches(
        self, project: str, environment: str, after: int
    ) -> AsyncIterator[list[StoredEvent]]:
        """Every event of this environment after ``after``: the log, then live, in lists
        of the events that are ready together.

        Subscribes before reading the log, so an event committed in between is
        in one or the other; ids already replayed are skipped when they arrive
        live. Ends when the subscription overflows or the bus closes. A
        follower's stream sends each list as one write: a burst of events costs
        one send per follower, not one per event and follower.
        """
        async with self.subscribe(project, environment) as subscription:
            last = after
            while True:
                rows = self._store.events_after(project, environment, last, limit=REPLAY_BATCH)
                if rows:
                    last = rows[-1][0]
                    yield [StoredEvent(*row) for row in rows]
                if len(rows) < REPLAY_BATCH:
                    break
            queue = subscription.queue
            while True:
                ready = [await queue.get()]
                while len(ready) < LIVE_BATCH and not queue.empty():
                    ready.append(queue.get_nowait())
                batch: list[StoredEvent] = []
                for event in ready:
                    if event is None:
                        if batch:
                            yield batch
                        return
                    if event.id > last:
                        last = event.id
                        batch.append(event)
                if batch:
                    yield batch
