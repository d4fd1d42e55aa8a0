"""Batching: requests from the asyncio side queue up; one worker thread owns the model and runs them in batches.

The worker takes the first waiting request, keeps collecting for ``window_s`` (or until ``max_batch`` rows), renders
every prompt (a prompt that is too long fails alone with 413), and runs the rest as one batch. Per-row options
(ASA on/off, strength, tau, sampling, max_tokens) travel with each row, so a request never sees another's steering.
Events (gate decision, text deltas, the result, or an error) go back to each request's own asyncio queue.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from dataclasses import dataclass, field

from jinja2 import TemplateError

from ..config import UserError
from .engine import Engine, InputTooLarge, RowSpec
from .errors import ApiError

log = logging.getLogger(__name__)


@dataclass
class Ticket:
    """One request in flight: its row and the queue its events arrive on."""

    spec: RowSpec
    loop: asyncio.AbstractEventLoop
    events: asyncio.Queue = field(default_factory=asyncio.Queue)
    cancelled: threading.Event = field(default_factory=threading.Event)  # set when the client has gone

    def put(self, kind: str, payload: object) -> None:
        self.loop.call_soon_threadsafe(self.events.put_nowait, (kind, payload))


@dataclass
class BatchStats:
    batches: int = 0
    rows: int = 0
    max_rows: int = 0
    errors: int = 0
    cancelled: int = 0  # rows stopped because their client disconnected

    def to_dict(self) -> dict:
        return {**self.__dict__, "mean_rows": self.rows / self.batches if self.batches else 0.0}


class Batcher:
    """The queue in front of the engine; ``start()`` launches the worker, ``close()`` stops it."""

    def __init__(self, engine: Engine, window_s: float = 0.04, max_batch: int = 8) -> None:
        if max_batch < 1:
            raise UserError(f"max_batch must be >= 1, got {max_batch}")
        if not 0 <= window_s <= 10:
            raise UserError(f"the batching window must be in [0, 10] seconds, got {window_s}")
        self.engine, self.window_s, self.max_batch = engine, window_s, max_batch
        self._q: queue.Queue[Ticket | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self.stats = BatchStats()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="steerlab-batcher", daemon=True)
        self._thread.start()

    def close(self) -> None:
        if self._thread is not None:
            self._q.put(None)
            self._thread.join(timeout=30)
            self._thread = None

    def submit(self, spec: RowSpec) -> Ticket:
        """Queue one row; read its events from ``ticket.events``."""
        t = Ticket(spec, asyncio.get_running_loop())
        self._q.put(t)
        return t

    def _collect(self, first: Ticket) -> tuple[list[Ticket], bool]:
        batch, stop = [first], False
        deadline = time.perf_counter() + self.window_s
        while len(batch) < self.max_batch:
            left = deadline - time.perf_counter()
            try:
                t = self._q.get(timeout=left) if left > 0 else self._q.get_nowait()
            except queue.Empty:
                break
            if t is None:
                stop = True
                break
            batch.append(t)
        return batch, stop

    def _loop(self) -> None:
        while True:
            first = self._q.get()
            if first is None:
                return
            batch, stop = self._collect(first)
            self._run(batch)
            if stop:
                return

    def _run(self, batch: list[Ticket]) -> None:
        rows, live = [], []
        for t in batch:
            if t.cancelled.is_set():  # its client left while it waited
                continue
            try:
                row = self.engine.render(t.spec)
                row.cancelled = t.cancelled
                rows.append(row)
                live.append(t)
            except InputTooLarge as err:
                t.put("error", ApiError(413, str(err), "messages", "context_length_exceeded"))
            except (
                ValueError,
                KeyError,
                TypeError,
                TemplateError,
            ) as err:  # a chat template refusing the messages
                t.put(
                    "error",
                    ApiError(400, f"the model's chat template rejected the messages: {err}", "messages"),
                )
        if not rows:
            return

        def emit(i: int, kind: str, payload: object) -> None:
            if kind == "done" and getattr(payload, "finish", None) == "cancelled":
                self.stats.cancelled += 1
            live[i].put(kind, payload)

        try:
            self.engine.run(rows, emit)
            self.stats.batches += 1
            self.stats.rows += len(rows)
            self.stats.max_rows = max(self.stats.max_rows, len(rows))
        except Exception:  # noqa: BLE001 - the server keeps serving; the client gets a 500 without a traceback
            log.exception("generation failed for a batch of %d rows", len(rows))
            self.stats.errors += 1
            for t in live:
                t.put(
                    "error",
                    ApiError(500, "generation failed inside the server (see its log)", None, "server_error"),
                )
