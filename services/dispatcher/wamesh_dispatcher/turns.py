"""Whose turn it is among one sender's recipients: the head job of each recipient's queue is
offered with the moment it may start, and :class:`Turns` hands out the due ones in turn:
interactive first, oldest first, and every BULK_SHARE-th start a waiting bulk job, so a
bulk backlog is never starved.

An index rather than a scan: a sender with a backlog of tens of thousands of recipients
starts a job many times a second, and looking over every recipient on each start would
cost the sender's loop more than the sends themselves. A recipient has at most one live
offer; a newer offer, a withdrawal or a start makes its older entries stale, and stale
entries are dropped as they reach the top of a heap.
"""

from __future__ import annotations

import heapq

from wamesh_dispatcher.store import JobRow

# Every this-many starts, a waiting bulk job goes before waiting interactive ones.
BULK_SHARE = 4


class Turns:
    def __init__(self, starts: int = 0) -> None:
        # Offers not yet due: (due, token, recipient, job).
        self._later: list[tuple[float, int, str, JobRow]] = []
        # Due offers by priority: (seq, token, recipient, job).
        self._interactive: list[tuple[int, int, str, JobRow]] = []
        self._bulk: list[tuple[int, int, str, JobRow]] = []
        self._live: dict[str, int] = {}
        self._token = 0
        self.starts = starts

    def offer(self, job: JobRow, due: float) -> None:
        """``job`` heads its recipient's queue and may start at ``due`` (on the clock
        :meth:`next` is given); it replaces what the recipient offered before."""
        self._token += 1
        self._live[job.recipient_number] = self._token
        heapq.heappush(self._later, (due, self._token, job.recipient_number, job))

    def withdraw(self, recipient: str) -> None:
        """The recipient has nothing to start (its queue is empty, or a send is in flight)."""
        self._live.pop(recipient, None)

    def next(self, now: float) -> JobRow | None:
        """The job whose turn it is at ``now``, if any is due; it stays offered until
        :meth:`started`."""
        self._promote(now)
        interactive, bulk = self._top(self._interactive), self._top(self._bulk)
        if bulk is not None and (interactive is None or (self.starts + 1) % BULK_SHARE == 0):
            return bulk
        return interactive

    def started(self, job: JobRow) -> None:
        """``job`` (the last :meth:`next`) is starting: its recipient offers nothing more
        until offered again."""
        self.starts += 1
        self.withdraw(job.recipient_number)

    def due_in(self, now: float) -> float | None:
        """Seconds until the next offer not yet due at ``now`` becomes due; None if there
        is none. Offers due already are not counted: they wait for a free place, not for
        the clock."""
        self._promote(now)
        while self._later and self._live.get(self._later[0][2]) != self._later[0][1]:
            heapq.heappop(self._later)
        return self._later[0][0] - now if self._later else None

    def _promote(self, now: float) -> None:
        while self._later and self._later[0][0] <= now:
            _, token, recipient, job = heapq.heappop(self._later)
            if self._live.get(recipient) == token:
                due = self._bulk if job.priority == "bulk" else self._interactive
                heapq.heappush(due, (job.seq, token, recipient, job))

    def _top(self, heap: list[tuple[int, int, str, JobRow]]) -> JobRow | None:
        while heap and self._live.get(heap[0][2]) != heap[0][1]:
            heapq.heappop(heap)
        return heap[0][3] if heap else None
