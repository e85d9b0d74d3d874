"""The query text: made trusted once, where it enters (a :class:`~stvg_ros.stream.requests.GroundingRequest`
or :class:`~stvg_ros.stream.standing.StandingRequest`, :meth:`Grounder.ground`), and used as it is from there
on.  Why: the same words must give the same prompt, cache key and echoed text whichever way they came in
(a ROS message with a trailing newline, a shell argument with doubled spaces, a Python call)."""

from __future__ import annotations

#: what an empty query is told (the node's rejection and the library's ValueError say the same)
EMPTY_QUERY = "empty query text: say what to look for, e.g. 'the person in a red coat'"


def query_text(text: str) -> str:
    """``text`` with its whitespace collapsed: runs of spaces, tabs and newlines become one space, none at
    the ends."""
    return " ".join(text.split())


def query_problem(text: object) -> str:
    """Why ``text`` (trusted: from :func:`query_text`) cannot be asked, naming the fix; "" when it can."""
    if not isinstance(text, str) or not text:
        return EMPTY_QUERY
    return ""
