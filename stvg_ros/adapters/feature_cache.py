"""What a sliding window has already computed: per-frame preprocessing and visual features.

A stream is asked about the same frames again and again (several questions about the same few
seconds, and every window overlaps the last), so a frame's preprocessed pixels and its visual
tokens are computed once and reused while the frame stays in the window.  Entries are keyed by
the frame's identity (the window's ``seq``, never reused) together with everything that changes
the values (input size, model-side size, adapter options), so a hit returns exactly what a fresh
computation would: the adapters encode in *units* whose tokens do not depend on the rest of the
clip (one frame for the LLaVA families, one 2-frame temporal slot for Qwen2.5-VL).

Bounded: entries are evicted least-recently-used past ``max_bytes``, and with their frames when
the window drops them (:meth:`FeatureCache.forget`).  Thread-safe (the service's ingest thread
evicts while its worker grounds).

Entries may be computed ahead of the first query (:meth:`FeatureCache.prefetching`, the service's
pre-encode when idle): such lookups are not counted as hits or misses, and the entries they store are
counted as prefetched, then as prefetch hits when a later lookup uses them.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Hashable, Iterable

import numpy as np
import torch


@dataclass
class CacheStats:
    """A snapshot of a cache: what it holds and how often it answered (per kind of entry)."""

    entries: int = 0
    bytes: int = 0
    max_bytes: int = 0
    hits: int = 0
    misses: int = 0
    evictions: int = 0
    by_kind: dict = field(default_factory=dict)  # kind -> {"hits": n, "misses": n}
    prefetched: dict = field(default_factory=dict)  # kind -> entries stored ahead of a query
    prefetch_hits: dict = field(default_factory=dict)  # kind -> of those, how many a later lookup used

    @property
    def hit_rate(self) -> float:
        n = self.hits + self.misses
        return self.hits / n if n else 0.0

    def as_dict(self) -> dict:
        return {"entries": self.entries, "bytes": self.bytes, "max_bytes": self.max_bytes, "hits": self.hits,
                "misses": self.misses, "evictions": self.evictions, "hit_rate": round(self.hit_rate, 4),
                "by_kind": {k: dict(v) for k, v in self.by_kind.items()},
                "prefetched": dict(self.prefetched), "prefetch_hits": dict(self.prefetch_hits)}


@dataclass(frozen=True)
class ClipKey:
    """The identity of an encoded clip (``VisualTokens.extras['clip_key']``): its frames' keys in clip
    order, everything else that shaped its tokens and positions (adapter options, sizes, time
    spacing), and whether it is the time-reversed view.  Passes over a clip's tokens that do not depend
    on the query (the clip prefix, the caption prompt) are cached under it."""

    frames: tuple
    setting: tuple
    reversed: bool = False


def nbytes(value: Any) -> int:
    """Bytes held by a cached value (tensors, arrays, and tuples/lists of them)."""
    if isinstance(value, torch.Tensor):
        return value.numel() * value.element_size()
    if isinstance(value, np.ndarray):
        return int(value.nbytes)
    if isinstance(value, (tuple, list)):
        return sum(nbytes(v) for v in value)
    return 0


class FeatureCache:
    """A bounded LRU map ``(kind, key) -> value``, each entry tagged with the frames it depends on.

    ``max_bytes`` 0 disables it (every ``get`` misses, nothing is stored)."""

    #: kinds that may hold at most this share of ``max_bytes``: a clip prefix's KV cache (large, and useful only
    #: while the sampled frames stay) must not push out the per-frame entries every slide of the window reuses
    SHARES = {"prefix": 0.5}

    def __init__(self, max_bytes: int = 256 * 2**20):
        self.max_bytes = int(max_bytes)
        self._entries: OrderedDict[tuple, tuple[Any, int, frozenset]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self._hits: dict[str, int] = {}
        self._misses: dict[str, int] = {}
        self._evictions = 0
        self._local = threading.local()  # .prefetching: this thread computes ahead of a query
        self._unused: set[tuple] = set()  # prefetched entries no query has used yet
        self._prefetched: dict[str, int] = {}
        self._prefetch_hits: dict[str, int] = {}

    @property
    def enabled(self) -> bool:
        return self.max_bytes > 0

    @contextmanager
    def prefetching(self):
        """Within this block (on this thread), lookups are not counted and stored entries count as
        prefetched: work done ahead of a query does not make the hit rate look better than it is."""
        self._local.prefetching = True
        try:
            yield self
        finally:
            self._local.prefetching = False

    def get(self, kind: str, key: Hashable) -> Any:
        """The stored value or None (counted as a hit or a miss of ``kind``, outside :meth:`prefetching`)."""
        ahead = getattr(self._local, "prefetching", False)
        with self._lock:
            entry = self._entries.get((kind, key))
            if entry is None:
                if not ahead:
                    self._misses[kind] = self._misses.get(kind, 0) + 1
                return None
            self._entries.move_to_end((kind, key))
            if not ahead:
                self._hits[kind] = self._hits.get(kind, 0) + 1
                if (kind, key) in self._unused:
                    self._unused.discard((kind, key))
                    self._prefetch_hits[kind] = self._prefetch_hits.get(kind, 0) + 1
            return entry[0]

    def put(self, kind: str, key: Hashable, value: Any, frames: Iterable[Hashable] = ()) -> None:
        """Store ``value``; ``frames``: the frame identities it depends on (evicted with any of them)."""
        if not self.enabled:
            return
        size = nbytes(value)
        cap = self.max_bytes * self.SHARES.get(kind, 1.0)
        if size > cap:
            return
        with self._lock:
            old = self._entries.pop((kind, key), None)
            if old is not None:
                self._bytes -= old[1]
            if kind in self.SHARES:  # a bounded kind makes room among its own entries first
                mine = [(k, e[1]) for k, e in self._entries.items() if k[0] == kind]
                held = sum(b for _, b in mine)
                for k, b in mine:
                    if held + size <= cap:
                        break
                    self._evict(k)
                    held -= b
            self._entries[(kind, key)] = (value, size, frozenset(frames))
            self._bytes += size
            if getattr(self._local, "prefetching", False):
                if old is None:
                    self._unused.add((kind, key))
                    self._prefetched[kind] = self._prefetched.get(kind, 0) + 1
            else:
                self._unused.discard((kind, key))
            while self._bytes > self.max_bytes and self._entries:
                self._evict(next(iter(self._entries)))  # least recently used

    def forget(self, frames: Iterable[Hashable]) -> int:
        """Drop every entry that depends on one of ``frames`` (frames a window let go); returns how many
        were dropped.  Entries of other frames (another stream's, sharing this cache) stay."""
        gone = set(frames)
        with self._lock:
            dropped = [k for k, (_, _, fr) in self._entries.items() if fr & gone]
            for k in dropped:
                self._evict(k)
        return len(dropped)

    def _evict(self, key: tuple) -> None:
        """Drop one entry (the lock held): its bytes, its prefetch mark, counted as an eviction."""
        self._bytes -= self._entries.pop(key)[1]
        self._unused.discard(key)
        self._evictions += 1

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._bytes = 0
            self._unused.clear()

    def stats(self) -> CacheStats:
        with self._lock:
            kinds = sorted(set(self._hits) | set(self._misses))
            return CacheStats(entries=len(self._entries), bytes=self._bytes, max_bytes=self.max_bytes,
                              hits=sum(self._hits.values()), misses=sum(self._misses.values()),
                              evictions=self._evictions,
                              by_kind={k: {"hits": self._hits.get(k, 0), "misses": self._misses.get(k, 0)}
                                       for k in kinds},
                              prefetched=dict(self._prefetched), prefetch_hits=dict(self._prefetch_hits))
