"""The query text is made trusted once, where it enters (issue 28): the requests of the service normalise it
when they are made, the service and the grounder check it with the one rule of ``stvg_ros.query``, and
what the grounder is asked and what the answer echoes is that one value."""

from __future__ import annotations

import numpy as np
import pytest

from fake_grounder import FakeGrounder
from test_service import Answers, feed, make, stamps

from stvg_ros.grounding.grounder import check_inputs
from stvg_ros.query import EMPTY_QUERY, query_problem, query_text
from stvg_ros.stream.requests import ANSWERED, REJECTED, GroundingRequest
from stvg_ros.stream.standing import StandingRequest


def test_query_text_collapses_whitespace_and_is_idempotent():
    assert query_text("  the man\n in\tred  ") == "the man in red"
    assert query_text(query_text(" a  b ")) == "a b"
    assert query_problem(query_text(" \n\t ")) == EMPTY_QUERY
    assert query_problem(None) == EMPTY_QUERY and query_problem("a") == ""


def test_requests_carry_the_trusted_text():
    assert GroundingRequest("q", "  the man \n walks ").text == "the man walks"
    assert StandingRequest("s", " a\tcup  ").text == "a cup"


def test_the_service_asks_the_grounder_the_trusted_text_and_echoes_it():
    g = FakeGrounder()
    svc, _ = make(g, threaded=False)
    feed(svc, stamps(5))
    answers = Answers()
    svc.submit(GroundingRequest("q1", "  the person\n in red  "), answers)
    svc.submit(GroundingRequest("q2", " \n "), answers)
    svc.run_pending()
    assert answers.of("q2")[0].status == REJECTED and answers.of("q2")[0].reason == EMPTY_QUERY
    a = answers.of("q1")[0]
    assert a.status == ANSWERED and a.request.text == "the person in red" and a.tube.text == "the person in red"
    assert [c["query"] for c in g.calls] == ["the person in red"]
    svc.stop()


def test_the_library_refuses_an_empty_query_with_the_same_message():
    with pytest.raises(ValueError, match="empty query text"):
        check_inputs([np.zeros((4, 4, 3), np.uint8)], [0.0], query_text("  \n"))
