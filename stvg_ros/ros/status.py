"""The node's health as messages: ``Status`` from the service's counters, and its /diagnostics entry."""

from __future__ import annotations

from typing import Any

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

from stvg_ros.msg import StandingQueryStatus, Status

#: what the status says about a default model (default_model.ModelChoice.kind), and the warning
MODEL_NOTES = {"tiny": (" (random: meaningless)", "random model: answers are meaningless"),
               "synthetic": (" (synthetic world only)", "synthetic-world model: meaningless on real images")}


def status_message(service, state: str, model: dict, loss_reported: bool, frame_id: str, stamp) -> Status:
    """``service``: a :class:`stvg_ros.service.GroundingService`; ``model``: directory and kind."""
    s = Status()
    s.header.stamp, s.header.frame_id = stamp, frame_id
    s.state = state
    s.model = model["directory"] + MODEL_NOTES.get(model["kind"], ("", ""))[0]
    s.device = str(getattr(getattr(service.grounder, "adapter", None), "device", "") or "")
    w = service.window
    s.window_frames, s.window_capacity, s.window_span = len(w), w.max_frames, w.span
    s.input_rate, s.kept_rate = service.rate_in.rate, service.rate_kept.rate
    for name, value in vars(service.counters()).items():  # the counters have the fields' names
        setattr(s, name, type(getattr(s, name))(value))
    s.frame_loss_reported = loss_reported
    s.last_frame_age = float(service.frame_age())
    s.queue_depth, s.queue_capacity = service.queue_depth, service.config.query_queue_size
    for info in service.standing():
        q = StandingQueryStatus(id=info["query_id"])
        for name, value in info.items():
            if name != "query_id":
                setattr(q, name, type(getattr(q, name))(value))
        s.standing.append(q)
    s.standing_count, s.standing_capacity = len(s.standing), service.config.max_standing_queries
    s.standing_duty, s.standing_duty_budget = service.standing_duty(), service.config.standing_duty_budget
    return s


def diagnostics(name: str, s: Status, model_kind: str, problems: list[str], stage: Any = None,
                cache: Any = None) -> DiagnosticArray:
    """WARN when not active, with a meaningless default model, or with the service's ``problems``."""
    problems = ([] if s.state == "active" else [s.state]) + \
        ([MODEL_NOTES[model_kind][1]] if model_kind in MODEL_NOTES else []) + list(problems)
    d = DiagnosticStatus(name=name, hardware_id=s.device or "unknown",
                         level=DiagnosticStatus.WARN if problems else DiagnosticStatus.OK)
    d.message = "; ".join(problems + [f"window {s.window_frames}/{s.window_capacity}, queue "
                                      f"{s.queue_depth}/{s.queue_capacity}"])
    d.values = [KeyValue(key=k, value=str(getattr(s, k))) for k in Status.get_fields_and_field_types()
                if k not in ("header", "standing")]
    d.values += [KeyValue(key=f"standing {q.id}", value=f"{q.evaluations} evaluations, {q.mean_cost:.3f} s each, "
                                                       f"found={q.found}") for q in s.standing]
    if stage is not None:  # the live proposal stage's cost and state (ms per keyframe, skips, phrases)
        d.values.append(KeyValue(key="proposals", value=str(stage.stats())))
    if cache:  # the per-frame feature cache: entries, bytes (of max_bytes), hits, misses
        d.values += [KeyValue(key=f"feature_cache_{k}", value=str(cache[k]))
                     for k in ("entries", "bytes", "max_bytes", "hits", "misses", "hit_rate")]
        # pre-encoded when idle (preencode_when_idle), per kind, and how many of those a query then used
        d.values += [KeyValue(key=f"feature_cache_{k}", value=str(cache[k]))
                     for k in ("prefetched", "prefetch_hits") if k in cache]
    return DiagnosticArray(header=s.header, status=[d])
