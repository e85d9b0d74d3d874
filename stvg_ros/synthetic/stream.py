"""Long synthetic streams: hours of the synthetic world with events of known tubes at random times.

Why: the memory's queries over the past (:mod:`stvg_ros.memory.recall`) need streams far longer than a
clip, with the exact tube of what is asked about.  A stream is distractor clips of the generator
(:func:`~stvg_ros.synthetic.generator.generate_sample`) played one after another; each *event* is one
more clip whose target is what a query names, inserted at a random frame (it may cut a distractor clip
in two, which resumes after it).  No distractor clip holds an object matching an event's full
description (size, colour, shape and action), so each query has exactly one answer in the stream.

Time: the world's clips are 20 frames; a stream plays them at ``fps`` (2 Hz by default, the memory's
keyframe rate, so a clip lasts 10 s: the node's default window).  Frames are generated clip by clip
as they are consumed, so an hour costs the RAM of one clip.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np

from .generator import describe, generate_sample, matches, target_object

CLIP_FRAMES = 20


@dataclass
class StreamEvent:
    """What a query asks about: its clip starts at stream frame ``first``; ``boxes`` and ``span`` are the
    target's tube in stream frame indices (inclusive)."""

    seed: int
    query: str
    attribute: str
    action: str
    first: int
    span: tuple[int, int]
    boxes: dict[int, tuple]
    look: tuple


@dataclass
class SyntheticStream:
    """A stream's plan: ``frames()`` yields its frames; stamps are ``start + i / fps``."""

    seed: int
    num_frames: int
    fps: float
    start: float
    events: list[StreamEvent]
    split: str = "test"

    def stamp(self, i: int) -> float:
        return self.start + i / self.fps

    def stamp_ns(self, i: int) -> int:
        return int(round(self.start * 1e9)) + int(round(i * 1e9 / self.fps))

    def index(self, stamp_ns: int) -> int:
        return int(round((stamp_ns - int(round(self.start * 1e9))) * self.fps / 1e9))

    def frames(self) -> Iterator[np.ndarray]:
        """Every frame in order (distractor clips, events at their frames)."""
        for frame, _ in self.frames_with_objects():
            yield frame

    def frames_with_objects(self) -> Iterator[tuple[np.ndarray, list[dict]]]:
        """Every frame with the objects of the clip it belongs to (what a segment holds: e.g. which colours
        are in view, the truth for a query that names only a colour)."""
        starts = {e.first: e for e in self.events}
        rng = np.random.default_rng([self.seed, 7])
        clip, objects, pos = None, [], CLIP_FRAMES
        i = 0
        while i < self.num_frames:
            if i in starts:
                ev_frames, sample = generate_sample(starts[i].seed, self.split, CLIP_FRAMES)
                for f in ev_frames[: self.num_frames - i]:
                    yield f, sample["objects"]
                i += len(ev_frames)
                continue
            if pos >= CLIP_FRAMES:
                clip, objects = self._distractor(rng)
                pos = 0
            yield clip[pos], objects
            pos += 1
            i += 1

    def _distractor(self, rng) -> tuple[np.ndarray, list[dict]]:
        while True:
            frames, sample = generate_sample(int(rng.integers(10**6, 10**9)), self.split, CLIP_FRAMES)
            if not any(matches(o, *e.look) for o in sample["objects"] for e in self.events):
                return frames, sample["objects"]


#: what a stream's queries name of their target, and so what no other object of the stream may share
QUERY_KINDS = {
    "full": ("size", "colour", "shape", "action"),  # the referring query; truth: the action's tube
    "look": ("size", "colour", "shape"),  # truth: the target's whole track in its clip
    "colour": ("colour",),  # "the red shape" (the model's best-learned rung); truth: the whole track
}


def make_stream(seed: int, seconds: float, events: int = 4, fps: float = 2.0, start: float = 1000.0,
                split: str = "test", keep_out_s: float = 10.0, kind: str = "full") -> SyntheticStream:
    """A stream of ``seconds`` with ``events`` events at random frames (apart from each other, and none in
    the last ``keep_out_s`` seconds, so every event has left a window of that length).  ``kind``
    (:data:`QUERY_KINDS`): what each event's query names; no other object of the stream matches it, so it
    has one answer."""
    if kind not in QUERY_KINDS:
        raise ValueError(f"kind={kind!r}: use one of {sorted(QUERY_KINDS)}")
    named = QUERY_KINDS[kind]
    rng = np.random.default_rng([seed, 3])
    n = int(round(seconds * fps))
    last = n - CLIP_FRAMES - int(round(keep_out_s * fps))
    if last < events * CLIP_FRAMES * 2:
        raise ValueError(f"a {seconds} s stream is too short for {events} events: make it longer or ask fewer")
    chosen: list[StreamEvent] = []
    objects: list = []
    firsts: list[int] = []
    for _ in range(100_000):
        if len(chosen) == events:
            break
        s = int(rng.integers(0, 10**6))
        _, sample = generate_sample(s, split, CLIP_FRAMES)
        t = target_object(sample)
        look = tuple(t[f] if f in named else None for f in ("size", "colour", "shape", "action"))
        others = [o for o in sample["objects"] if o["track_id"] != t["track_id"]]
        looks = [e.look for e in chosen]
        if any(matches(o, *other) for o in sample["objects"] for other in looks) \
                or any(matches(o, *look) for objs in objects + [others] for o in objs):
            continue  # one answer per query in the whole stream
        first = int(rng.integers(0, last))
        if any(abs(first - f) < 2 * CLIP_FRAMES for f in firsts):
            continue
        objects.append(sample["objects"])
        firsts.append(first)
        if look[3] is not None:
            truth, span = sample["boxes"], (sample["st_frame"], sample["ed_frame"])
        else:
            truth = sample["tracks"][sample["target"]]
            span = (min(truth), max(truth))
        boxes = {first + k: tuple(b) for k, b in truth.items()}
        chosen.append(StreamEvent(s, describe(*look, article="the"), sample["attribute"], sample["action"], first,
                                  (first + span[0], first + span[1]), boxes, look))
    else:
        raise ValueError(f"could not place {events} events of kind {kind!r} with one answer each: ask fewer")
    chosen.sort(key=lambda e: e.first)
    return SyntheticStream(seed, n, fps, start, chosen, split)
