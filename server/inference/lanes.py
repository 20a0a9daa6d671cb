"""A lane: the jobs waiting for a worker, oldest first, each with the future its visitor awaits."""

import asyncio
from collections import deque

from .jobs import Job, JobResult

Item = tuple[Job, asyncio.Future[JobResult]]


class Lane:
    """The jobs waiting for a worker, oldest first; jobs of visitors who left are skipped."""

    def __init__(self) -> None:
        self.items: deque[Item] = deque()
        self.available = asyncio.Event()

    def purge(self) -> int:
        """Drop the jobs whose visitor left (their future is cancelled); return how many remain."""
        self.items = deque(item for item in self.items if not item[1].done())
        return len(self.items)

    def put(self, item: Item) -> None:
        self.items.append(item)
        self.available.set()

    async def take(self) -> Item:
        """The oldest live job, waiting for one if there is none."""
        while True:
            while self.items:
                item = self.items.popleft()
                if not item[1].done():
                    return item
            self.available.clear()
            await self.available.wait()

    def drain(self, batch: list[Item], limit: int) -> None:
        """Move live jobs into ``batch`` until it holds ``limit``."""
        while len(batch) < limit and self.items:
            item = self.items.popleft()
            if not item[1].done():
                batch.append(item)

    def fail(self, error: Exception) -> None:
        for _, future in self.items:
            if not future.done():
                future.set_exception(error)
        self.items.clear()
