"""Batching: requests from the asyncio side queue up; one worker thread owns the model and decodes them together.

Continuous batching: when nothing is running, the worker takes the first waiting request and keeps collecting for
``window_s`` (or until ``max_batch`` rows); while rows are decoding, every request waiting at a step boundary joins
them (up to ``max_batch`` rows in flight), and each row's result goes back the moment it stops, so a short reply is
not held for a long one and a request that arrives mid-batch does not wait for the batch to end. Every prompt is
rendered first (a prompt that is too long fails alone with 413). Per-row options (ASA on/off, strength, tau,
sampling, max_tokens) travel with each row, so a request never sees another's steering. Events (gate decision, text
deltas, the result, or an error) go back to each request's own asyncio queue.
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
from .engine import Engine, InputTooLarge, Prepared, RowSpec
from .errors import ApiError

log = logging.getLogger(__name__)


@dataclass
class Ticket:
    """One request in flight: its row and the queue its events arrive on."""

    spec: RowSpec
    loop: asyncio.AbstractEventLoop
    events: asyncio.Queue = field(default_factory=asyncio.Queue)
    cancelled: threading.Event = field(default_factory=threading.Event)  # set when the client has gone
    row: Prepared | None = None  # its rendered prompt, once the worker has taken it

    def put(self, kind: str, payload: object) -> None:
        self.loop.call_soon_threadsafe(self.events.put_nowait, (kind, payload))


@dataclass
class BatchStats:
    """Counters for /health: ``batches`` decode steps, ``rows`` the rows in them summed (so ``mean_rows`` is the
    mean rows per step), ``max_rows`` the most in one step, ``admitted`` the rows that started decoding."""

    batches: int = 0
    rows: int = 0
    max_rows: int = 0
    admitted: int = 0
    admissions: int = 0  # prefills that started rows (each pauses the running rows for one forward)
    packed: int = 0  # rows whose prompts went through the running rows' next step (no pause)
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
        self._inflight: dict[int, Ticket] = {}  # id(ticket) -> ticket, while its row decodes
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

    def _drain(self, room: int) -> tuple[list[Ticket], bool]:
        """What waits now, up to ``room`` requests, without waiting for more."""
        batch: list[Ticket] = []
        while len(batch) < room:
            try:
                t = self._q.get_nowait()
            except queue.Empty:
                break
            if t is None:
                return batch, True
            batch.append(t)
        return batch, False

    def _loop(self) -> None:
        running = self.engine.running()
        # rendered, waiting for the running rows to end (they cannot share their steps)
        held: list[Ticket] = []
        stop = False
        while True:
            if not running and not held:
                if stop:
                    return
                first = self._q.get()
                if first is None:
                    return
                batch, stop = self._collect(first)
            elif stop:
                batch = []
            else:
                batch, stop = self._drain(self.max_batch - running.rows - len(held))
            try:
                held = self._admit(running, held + batch)
                if running:
                    self._step(running)
            except Exception:  # noqa: BLE001 - the server keeps serving; the clients get a 500 without a traceback
                log.exception("generation failed for a batch of %d rows", running.rows)
                self.stats.errors += 1
                self._fail(held + batch)
                running, held = self.engine.running(), []

    def _admit(self, running: object, tickets: list[Ticket]) -> list[Ticket]:
        """Render and start the tickets' rows; returns those that must wait for the running rows to end."""
        rows, live = [], []
        for t in tickets:
            if t.cancelled.is_set():  # its client left while it waited
                self._inflight.pop(id(t), None)
                continue
            if t.row is None:
                try:
                    t.row = self.engine.render(t.spec)
                    t.row.cancelled = t.cancelled
                except InputTooLarge as err:
                    t.put("error", ApiError(413, str(err), "messages", "context_length_exceeded"))
                    continue
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
                    continue
            rows.append(t.row)
            live.append(t)
        if not rows:
            return []
        for t in live:
            self._inflight[id(t)] = t

        def emit(key: int, kind: str, payload: object) -> None:
            t = self._inflight[key]
            if kind == "done":
                del self._inflight[key]
                if getattr(payload, "finish", None) == "cancelled":
                    self.stats.cancelled += 1
            t.put(kind, payload)

        packed = running.packed
        waiting = set(running.admit(rows, emit, [id(t) for t in live]))
        packed = running.packed - packed
        self.stats.admitted += len(live) - len(waiting)
        self.stats.packed += packed
        self.stats.admissions += len(live) - len(waiting) > packed
        return [t for t in live if id(t) in waiting]

    def _step(self, running: object) -> None:
        n = running.rows
        running.step()
        self.stats.batches += 1
        self.stats.rows += n
        self.stats.max_rows = max(self.stats.max_rows, n)

    def _fail(self, tickets: list[Ticket]) -> None:
        """Every request in flight or waiting gets a 500."""
        for t in {id(t): t for t in [*self._inflight.values(), *tickets]}.values():
            t.put(
                "error",
                ApiError(500, "generation failed inside the server (see its log)", None, "server_error"),
            )
        self._inflight.clear()
