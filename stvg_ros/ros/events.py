"""The node's warnings: throttled per key, and the middleware's events (QoS mismatch, frames lost)
turned into messages that say what happened on which topic and what to change.

rclpy moved the event classes from ``rclpy.qos_event`` (Humble) to ``rclpy.event_handler``
(Jazzy on); an rmw that cannot report lost messages raises ``UnsupportedEventTypeError``, in which
case the subscription is made without that event and the loss cannot be counted.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable, Optional

try:
    from rclpy.event_handler import (PublisherEventCallbacks, SubscriptionEventCallbacks,
                                     UnsupportedEventTypeError)
except ImportError:  # Humble
    from rclpy.qos_event import PublisherEventCallbacks, SubscriptionEventCallbacks  # type: ignore
    try:
        from rclpy.qos_event import UnsupportedEventTypeError  # type: ignore
    except ImportError:
        UnsupportedEventTypeError = RuntimeError  # type: ignore
from rclpy.qos import QoSPolicyKind, QoSProfile, ReliabilityPolicy

#: seconds between repeats of one kind of warning
THROTTLE_S = 2.0

#: what to do about frames the middleware lost (large best-effort images on one host lose most)
LOSS_FIX = ("use image_reliability:=reliable, the compressed topic (use_compressed:=true), or the "
            "shared-memory transport (see README 'Large images on one host')")


class Throttle:
    """``allow(key)`` is True at most once per ``period`` s for each key."""

    def __init__(self, period: float = THROTTLE_S):
        self.period = period
        self._last: dict[str, float] = {}
        self._lock = threading.Lock()

    def allow(self, key: str) -> bool:
        now = time.monotonic()
        with self._lock:
            if now - self._last.get(key, -1e18) < self.period:
                return False
            self._last[key] = now
            return True


def policy_name(kind: Any) -> str:
    try:
        return QoSPolicyKind(int(kind)).name
    except (ValueError, TypeError):
        return str(kind)


def describe(qos: QoSProfile) -> str:
    """'reliable, volatile, keep last 5'."""
    def name(policy) -> str:
        return getattr(policy, "name", str(policy)).lower()

    return f"{name(qos.reliability)}, {name(qos.durability)}, {name(qos.history).replace('_', ' ')} {qos.depth}"


#: (topic role, policy) → the fix; roles: 'image' (camera input), 'input' (queries, detections),
#: 'output' (what the node publishes)
_FIXES = {
    ("image", "RELIABILITY"): "a best-effort camera cannot feed a reliable subscription: set "
                              "image_reliability:=best_effort (or make the camera publish reliably)",
    ("input", "RELIABILITY"): "publish with reliable QoS (the default of rclpy publishers and ros2 topic pub)",
    ("output", "DURABILITY"): "subscribe with durability volatile: answers are not latched",
    ("output", "RELIABILITY"): "this topic is published best effort: subscribe best effort",
}


def incompatible_qos_message(topic: str, role: str, side: str, ours: QoSProfile, policy: str) -> str:
    """The warning for an incompatible QoS ``policy`` between the node's ``side`` ('subscription' or
    'publisher') on ``topic`` and the other end."""
    fix = _FIXES.get((role, policy), f"give the other end a {policy} policy compatible with this one")
    if side == "subscription":
        what = f"a publisher's {policy} policy is incompatible with this subscription, so its messages are NOT " \
               f"received"
    else:
        what = f"a subscriber requests a {policy} policy this publisher does not offer, so it receives nothing"
    return f"QoS mismatch on {topic} ({describe(ours)}): {what}. Fix: {fix}."


def subscribe(node, msg_type, topic: str, callback: Callable, qos: QoSProfile | int, role: str,
              warn: Callable[[str, str], None], on_lost: Optional[Callable[[str, int], None]] = None,
              raw: bool = False):
    """``node.create_subscription`` with the QoS-mismatch warning and, when ``on_lost`` is given and the
    rmw supports it, the message-lost event (``on_lost(topic, frames lost since the last event)``: the
    caller counts and summarises them, see :class:`stvg_ros.ros.status.LossSummary`); ``raw``: the
    callback gets the serialized bytes.  Returns (subscription, whether losses are reported)."""
    profile = qos if isinstance(qos, QoSProfile) else QoSProfile(depth=qos, reliability=ReliabilityPolicy.RELIABLE)
    name = node.resolve_topic_name(topic)

    def incompatible(info) -> None:
        policy = policy_name(info.last_policy_kind)
        warn(incompatible_qos_message(name, role, "subscription", profile, policy), f"qos:{name}:{policy}")

    def lost(info) -> None:
        on_lost(name, int(getattr(info, "total_count_change", 0)))  # type: ignore[misc]

    if on_lost is not None:
        try:
            events = SubscriptionEventCallbacks(incompatible_qos=incompatible, message_lost=lost)
            return node.create_subscription(msg_type, topic, callback, profile, event_callbacks=events,
                                            raw=raw), True
        except (UnsupportedEventTypeError, TypeError):  # this rmw (or an old rclpy) cannot report losses
            pass
    events = SubscriptionEventCallbacks(incompatible_qos=incompatible)
    return node.create_subscription(msg_type, topic, callback, profile, event_callbacks=events, raw=raw), False


def publish_to(node, msg_type, topic: str, qos: QoSProfile | int, warn: Callable[[str, str], None],
               lifecycle: bool = False):
    """``node.create_publisher`` with the QoS-mismatch warning for its subscribers; with ``lifecycle``
    a lifecycle publisher (silent while the node is inactive) where rclpy has them."""
    profile = qos if isinstance(qos, QoSProfile) else QoSProfile(depth=qos, reliability=ReliabilityPolicy.RELIABLE)
    name = node.resolve_topic_name(topic)

    def incompatible(info) -> None:
        policy = policy_name(info.last_policy_kind)
        warn(incompatible_qos_message(name, "output", "publisher", profile, policy), f"qos:{name}:{policy}")

    create = getattr(node, "create_lifecycle_publisher", None) if lifecycle else None
    return (create or node.create_publisher)(msg_type, topic, profile,
                                             event_callbacks=PublisherEventCallbacks(incompatible_qos=incompatible))
