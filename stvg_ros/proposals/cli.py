"""Offline proposals: run the detector + tracker over videos, a dataset or bags, write a proposals file.

As the paper cached its Grounding DINO + SAM2 tracklets, evaluation reads these files instead of
detecting per query.  Output (see docs/proposals.md)::

    {"<video key>": {"<track id>": {"label": str, "score": float,
                                      "boxes": {"<frame index>": [x_min, y_min, x_max, y_max]}}}}

with a box on every frame of the track's span (interpolated between detection keyframes), so a
reader that samples any frame finds it.  Frame indices are annotation frame indices for datasets
(VidSTG's segment offset applied), positions in the file for videos and in the image topic for bags.

    stvg-proposals --detector /models/grounding-dino-tiny --videos clips/ --out proposals.json
    stvg-proposals --detector DIR --dataset hcstvg_v1 --annotations test_proc.json --video-root v1_video --out p.json
    stvg-proposals --detector DIR --bag run.bag --out p.json
    stvg-proposals --source motion --videos clips/ --out p.json     # still camera: moving blobs, no weights
    stvg-proposals --source hog --videos clips/ --out p.json        # OpenCV's HOG people detector, no weights
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path
from typing import Iterable, Iterator, Optional, Sequence

import numpy as np

from .tracks import Track
from ..config import ProposalConfig, knob_choices
from .subject import subject_phrase

VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".webm")


def propose(keyframes: Iterable[tuple[int, np.ndarray]], detector, config: ProposalConfig, phrase: str,
            num_frames: int, id_prefix: str = "") -> list[Track]:
    """Tracks of ``phrase`` from ``(frame index, frame)`` keyframes, with a box on every frame index
    of each track's span in ``[0, num_frames)`` (interpolated, held ``hold_keyframes`` periods at the ends)."""
    return propose_phrases(keyframes, detector, config, [phrase], num_frames, [id_prefix])


def propose_phrases(keyframes: Iterable[tuple[int, np.ndarray]], detector, config: ProposalConfig,
                    phrases: Sequence[str], num_frames: int, id_prefixes: Optional[Sequence[str]] = None) -> list[Track]:
    """:func:`propose` for several phrases over ONE pass of the keyframes (one tracker per phrase; ids
    prefixed by ``id_prefixes``, default ``"<phrase>#"`` when there are several phrases)."""
    from .tracker import make_tracker

    prefixes = list(id_prefixes) if id_prefixes is not None else [
        f"{p}#" if len(phrases) > 1 else "" for p in phrases]
    trackers = [make_tracker(config.tracker, config, label=p, id_prefix=x) for p, x in zip(phrases, prefixes)]
    min_score = config.low_threshold if config.tracker == "bytetrack" else config.box_threshold
    batch: list[tuple[int, np.ndarray]] = []

    def flush() -> None:
        for phrase, tracker in zip(phrases, trackers):
            dets = detector.detect([f for _, f in batch], phrase, min_score=min_score)
            for (index, frame), det in zip(batch, dets):
                tracker.update(index, det, frame=frame)
        batch.clear()

    for item in keyframes:
        batch.append(item)
        if len(batch) >= config.batch_size:
            flush()
    if batch:
        flush()
    hold = config.hold_keyframes * config.detect_every
    interpolate = config.propagation == "interpolate"
    frames = range(num_frames)
    return [t.sampled(frames, hold, interpolate) for tracker in trackers for t in tracker.tracks() if t.boxes]


def _to_file_tracks(tracks: Sequence[Track]) -> dict[str, Track]:
    """Tracks as a proposals file holds them: boxes rounded to 0.1 px, one score (the mean, 4 digits)."""
    out = {}
    for t in tracks:
        if t.boxes:
            score = round(t.score, 4)
            out[str(t.id)] = Track(str(t.id), {int(f): tuple(round(v, 1) for v in b) for f, b in t.boxes.items()},
                                   {int(f): score for f in t.boxes}, t.label)
    return out


# --- inputs -------------------------------------------------------------------------------------

def _video_jobs(root: Path) -> Iterator[tuple[str, Path, int, int, list[str]]]:
    """One job per video file; the frame count is the container's (a file that decodes fewer frames
    is used as far as it decodes), -1 for a file that cannot be opened (its entry stays empty)."""
    from ..video import VideoError, probe

    files = sorted(p for p in root.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES)
    if not files:
        raise SystemExit(f"no video files ({', '.join(VIDEO_SUFFIXES)}) in {root}")
    for p in files:
        try:
            n, _, _ = probe(p)
        except VideoError as exc:
            warnings.warn(f"{exc}; its entry is left empty", RuntimeWarning, stacklevel=2)
            n = -1
        yield p.name, p, n, 0, []


def _dataset_jobs(name: str, annotations: str, video_root: Optional[str], config: ProposalConfig):
    """One job per video key: its file, frame count, offset and the subject phrases of its queries."""
    from ..evaluation.datasets import load_dataset

    samples = load_dataset(name, annotations, video_root)
    jobs: dict[str, list] = {}
    for s in samples:
        if s.video_path is None:
            raise SystemExit(f"video of {s.key!r} not found under {video_root}: pass --video-root")
        text = s.category or (s.sub_queries.attribute if s.sub_queries else s.query)
        phrase = subject_phrase(text, config.default_class, config.synonyms)
        job = jobs.setdefault(s.video, [s.video, s.video_path, s.num_frames, s.frame_offset, []])
        job[2] = max(job[2], s.num_frames)
        if phrase not in job[4]:
            job[4].append(phrase)
    yield from (tuple(j) for j in jobs.values())


def _keyframes_from_video(path: Path, num_frames: int, offset: int, every: int) -> Iterator[tuple[int, np.ndarray]]:
    """Every ``every``-th frame, in one decoding pass (a file that stops early ends with a warning)."""
    from ..video import iter_frames

    return iter_frames(path, indices=range(0, num_frames, every), offset=offset)


def _bag_frames(path: Path, image_topic: Optional[str]):
    """(frame count, query texts, keyframe iterator factory) of a bag's image topic."""
    from ..evaluation.bags import iter_messages
    from ..image_messages import decode_message

    image_types = ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage")
    topics: set[str] = set()
    count = 0
    texts: list[str] = []
    for topic, msgtype, _, msg in iter_messages(path):
        if msgtype in image_types and (image_topic is None or topic == image_topic):
            topics.add(topic)
            count += 1
        elif msgtype == "stvg_ros/msg/GroundingQuery":
            texts.append(getattr(msg, "attribute_query", "") or msg.text)
        elif msgtype == "std_msgs/msg/String" and topic.endswith("query"):
            texts.append(msg.data)
    if len(topics) != 1:
        raise SystemExit(f"{path}: expected one image topic, found {sorted(topics)}: choose one with --image-topic")
    topic = topics.pop()

    def keyframes(every: int):
        i = 0
        for _, _, _, msg in iter_messages(path, [topic]):
            if i % every == 0:
                yield i, decode_message(msg)
            i += 1

    return count, texts, keyframes


# --- command ------------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="stvg-proposals", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--videos", help="directory of video files (key: file name)")
    src.add_argument("--dataset", help="hcstvg_v1, hcstvg_v2 or vidstg (needs --annotations and --video-root)")
    src.add_argument("--bag", nargs="+", help="rosbag2 directories or files (key: bag name)")
    p.add_argument("--annotations", help="the dataset's {split}_proc.json")
    p.add_argument("--video-root", help="the dataset's video directory")
    p.add_argument("--image-topic", help="bag image topic when there are several")
    p.add_argument("--out", required=True, help="proposals JSON file to write")
    p.add_argument("--source", choices=knob_choices(ProposalConfig, "source"),
                   help="detector (a local checkpoint, --detector), motion (moving blobs of a still camera, any "
                        "subject) or hog (OpenCV's people detector, person subjects only); no weights for the last two")
    p.add_argument("--detector", help="local detector directory (overrides proposals_detector_path)")
    p.add_argument("--config", help="YAML with a proposals: section (or a ROS params file)")
    p.add_argument("--phrase", help="detector phrase for every video (default: each query's subject, "
                                    "else proposals_default_class)")
    p.add_argument("--detect-every", type=int, help="detection keyframe stride (paper: 10)")
    p.add_argument("--box-threshold", type=float)
    p.add_argument("--text-threshold", type=float)
    p.add_argument("--tracker", choices=knob_choices(ProposalConfig, "tracker"))
    p.add_argument("--device", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--limit", type=int, default=0, help="process only the first N videos")
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    config = ProposalConfig.from_yaml(args.config) if args.config else ProposalConfig()
    overrides = {k: v for k, v in {
        "source": args.source, "detector_path": args.detector, "detect_every": args.detect_every, "box_threshold": args.box_threshold,
        "text_threshold": args.text_threshold, "tracker": args.tracker, "device": args.device}.items() if v is not None}
    if "box_threshold" in overrides:
        overrides["low_threshold"] = min(config.low_threshold, overrides["box_threshold"])
    config = config.replace(**overrides)
    config.validate()
    if config.source == "detector" and not config.detector_path:
        raise SystemExit("no detector: pass --detector DIR (a local Grounding DINO / OWLv2 checkpoint), "
                         "or --source motion / hog (no weights)")

    from tqdm import tqdm

    from ..evaluation.datasets import save_proposals
    from ..video import VideoError

    detector = _load_source(config)
    out: dict[str, dict] = {}
    t0 = time.perf_counter()
    if args.bag:
        jobs = [(Path(b).name, Path(b)) for b in args.bag][: args.limit or None]
        for key, path in tqdm(jobs, desc="bags", unit="bag"):
            count, texts, keyframes = _bag_frames(path, args.image_topic)
            phrases = [args.phrase] if args.phrase else (
                sorted({subject_phrase(t, config.default_class, config.synonyms) for t in texts})
                or [config.default_class])
            every = 1 if config.source == "motion" else config.detect_every
            out[key] = _propose_phrases(lambda: keyframes(every), detector, config, phrases, count)
    else:
        if args.videos:
            jobs = list(_video_jobs(Path(args.videos)))
        else:
            if not args.annotations:
                raise SystemExit("--dataset needs --annotations (and --video-root)")
            jobs = list(_dataset_jobs(args.dataset, args.annotations, args.video_root, config))
        jobs = jobs[: args.limit or None]
        for key, path, count, offset, phrases in tqdm(jobs, desc="videos", unit="video"):
            phrases = [args.phrase] if args.phrase else (phrases or [config.default_class])
            if count < 0:
                out[key] = {}
                continue
            try:
                out[key] = _propose_phrases(
                    lambda p=path, n=count, o=offset: _keyframes_from_video(
                        p, n, o, 1 if config.source == "motion" else config.detect_every),
                    detector, config, phrases, count)
            except VideoError as exc:  # one unreadable video does not cost the others their proposals
                warnings.warn(f"{exc}; its entry is left empty", RuntimeWarning, stacklevel=1)
                out[key] = {}
    save_proposals(args.out, out)
    seconds = time.perf_counter() - t0
    n_tracks = sum(len(v) for v in out.values())
    print(f"wrote {args.out}: {len(out)} videos, {n_tracks} tracks, {detector.calls} keyframes detected "
          f"in {seconds:.1f} s ({1000 * detector.seconds / max(detector.calls, 1):.1f} ms per keyframe)")
    return 0


class _MotionSource:
    """``--source motion`` in the shape the loop expects: whole clips, not per-phrase keyframes."""

    kind = "motion"

    def __init__(self, config: ProposalConfig):
        self.config, self.calls, self.seconds = config, 0, 0.0


def _load_source(config: ProposalConfig):
    if config.source == "motion":
        return _MotionSource(config)
    if config.source == "hog":
        from .hog import HogPeopleDetector

        return HogPeopleDetector(config)
    from .detector import load_detector

    return load_detector(config)


def propose_motion(frames: Iterable[tuple[int, np.ndarray]], config: ProposalConfig, num_frames: int) -> list[Track]:
    """Moving-object tracks from every ``(frame index, frame)`` of a still camera's clip, with a box on
    every frame of each track's span (held ``hold_keyframes`` frames at the ends: motion's keyframe period is
    one frame; holding an arm's pieces ``detect_every`` frames past their ends tripled cup.mp4's false boxes)."""
    from .motion import MotionTracks

    source = MotionTracks(config.replace(window_s=float("inf"), rate_hz=0.0))
    for index, frame in frames:
        source.add_frame(frame, index)
    hold = config.hold_keyframes  # motion looks at every frame: its keyframe period is one frame
    interpolate = config.propagation == "interpolate"
    return [t.sampled(range(num_frames), hold, interpolate) for t in source.lasting() if t.boxes]


def _propose_phrases(keyframes, detector, config: ProposalConfig, phrases: list[str], num_frames: int) -> dict:
    """Tracks of every phrase of one video; ids are prefixed by the phrase when there are several
    (motion: one set of tracks, whatever the phrases)."""
    if isinstance(detector, _MotionSource):
        t0 = time.perf_counter()
        tracks = propose_motion(keyframes(), config, num_frames)
        detector.calls += num_frames
        detector.seconds += time.perf_counter() - t0
        return _to_file_tracks(tracks)
    return _to_file_tracks(propose_phrases(keyframes(), detector, config, phrases, num_frames))


if __name__ == "__main__":
    sys.exit(main())
