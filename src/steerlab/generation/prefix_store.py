"""KV caches of recent prompt prefixes, kept across ``generate`` calls (a server's requests).

Why: an agent sends the same system prompt, tool list and few-shot turns with every request; recomputing them
costs most of a short request's time on a CPU. The store keeps the cache of each recent prefix (the token ids the
caller names as the shared head), bounded in entries and bytes, least recently used first out. Exact by
construction: an entry is used only for rows whose token ids start with its ids, only where a prefix computed once
is exact (``sharing_allowed``: no conv state, no sliding window the rows could exceed) and only while no active
intervention touches context tokens (``context_safe``); it is computed as context, with no row's last token in it.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence

from ..models import LoadedModel
from ..models.prefix import prefix_cache, sharing_allowed


def cache_bytes(cache: object) -> int:
    """Bytes held by a KV cache's key and value tensors."""
    total = 0
    for layer in getattr(cache, "layers", []) or []:
        for name in ("keys", "values"):
            t = getattr(layer, name, None)
            if t is not None and hasattr(t, "element_size"):
                total += t.numel() * t.element_size()
    return total


class PrefixStore:
    """Recent prefixes' KV caches for one model: ``get(ids)`` returns the cache of exactly ``ids`` (computing and
    keeping it on a miss). ``max_entries`` / ``max_bytes`` bound what is kept; ``hits`` / ``misses`` count lookups."""

    def __init__(self, lm: LoadedModel, max_entries: int = 8, max_bytes: int = 256 * 2**20) -> None:
        if max_entries < 1 or max_bytes < 1:
            raise ValueError(f"max_entries and max_bytes must be >= 1, got {max_entries}, {max_bytes}")
        self.lm, self.max_entries, self.max_bytes = lm, max_entries, max_bytes
        self._entries: OrderedDict[tuple[int, ...], tuple[object, int]] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    @property
    def bytes(self) -> int:
        return sum(size for _, size in self._entries.values())

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, ids: Sequence[int]) -> object:
        key = tuple(int(x) for x in ids)
        with self._lock:
            hit = self._entries.get(key)
            if hit is not None:
                self._entries.move_to_end(key)
                self.hits += 1
                return hit[0]
            self.misses += 1
        cache = prefix_cache(self.lm, list(key))
        size = cache_bytes(cache)
        with self._lock:
            self._entries[key] = (cache, size)
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries or (
                len(self._entries) > 1 and self.bytes > self.max_bytes
            ):
                self._entries.popitem(last=False)
        return cache

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def stats(self) -> dict:
        return {"entries": len(self), "bytes": self.bytes, "hits": self.hits, "misses": self.misses}


class StoredPrefix:
    """A shared head whose cache comes from a ``PrefixStore`` (kept across calls)."""

    def __init__(self, store: PrefixStore, ids: list[int]) -> None:
        self.store, self.ids = store, ids

    def __len__(self) -> int:
        return len(self.ids)

    def cache(self) -> object:
        return self.store.get(self.ids)


def stored_prefix(
    lm: LoadedModel,
    ids: list[list[int]],
    width: int,
    head: Sequence[int] | None,
    store: PrefixStore | None,
) -> StoredPrefix | None:
    """The stored head, when every row starts with it (and keeps a token after it) and sharing is exact here."""
    if store is None or not head:
        return None
    head = [int(x) for x in head]
    n = len(head)
    if not all(len(r) > n and r[:n] == head for r in ids) or not sharing_allowed(lm, width):
        return None
    return StoredPrefix(store, head)
