"""Recent shared prefixes' KV caches of one model, kept across calls and stages (``models.prefix.prefix_cache``)."""

from __future__ import annotations

import threading
from collections import OrderedDict

# a run's stages share one prefix; the gate's tool lists pass through
PREFIX_MEMO_ENTRIES = 2


class PrefixMemo:
    """At most ``max_entries``; a new entry pushes out the one reused least (the oldest of those), so the prompt a
    run's stages share outlasts a stage that passes through many one-off prefixes (the gate's tool lists). Counts
    what was reused (``hits``), what was computed and kept (``misses``) and the seconds those computations took."""

    def __init__(self, max_entries: int = PREFIX_MEMO_ENTRIES) -> None:
        if max_entries < 1:
            raise ValueError(f"max_entries must be >= 1, got {max_entries}")
        self.max_entries = max_entries
        self._entries: OrderedDict[tuple, list] = OrderedDict()  # key -> [cache, reuses]
        self._lock = threading.Lock()  # a server computes prefixes on its engine thread while others may read
        self.hits = self.misses = 0
        self.seconds = 0.0

    def __deepcopy__(self, memo: dict) -> PrefixMemo:
        """A copied model starts with an empty memo (its weights are other tensors: no entry would match)."""
        return PrefixMemo(self.max_entries)

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: tuple) -> object | None:
        with self._lock:
            hit = self._entries.get(key)
            if hit is None:
                return None
            self._entries.move_to_end(key)
            hit[1] += 1
            self.hits += 1
            return hit[0]

    def put(self, key: tuple, cache: object, seconds: float) -> None:
        with self._lock:
            self.misses += 1
            self.seconds += seconds
            self._entries[key] = [cache, 0]
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                older = list(self._entries.items())[:-1]
                least = min(older, key=lambda kv: kv[1][1])[0]  # min keeps the first (oldest) of equals
                del self._entries[least]

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def stats(self) -> dict:
        """{"computed", "reused", "compute_seconds"} since the model was loaded."""
        return {"computed": self.misses, "reused": self.hits, "compute_seconds": round(self.seconds, 3)}
