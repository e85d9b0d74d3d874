"""DSTH decomposition: rules, the model's answer and its validation, cache, caller sub-queries."""

import pytest

from fake_adapter import FakeAdapter, clip_with_square
from stvg_ros.config import GroundingConfig
from stvg_ros.grounding.dsth import (
    Decomposer, decompose_by_rules, parse_model_answer, subject_head, validate_decomposition
)
from stvg_ros.grounding.grounder import Grounder
from stvg_ros.grounding.result import SubQueries


@pytest.mark.parametrize("query, attribute, action", [
    # the paper's example
    ("The man in purple clothes takes a step forward and sits on the bench.",
     "The man in purple clothes", "the man takes a step forward and sits on the bench"),
    ("the woman who walks to the door", "the woman", "the woman walks to the door"),
    ("a small blue star that jumps", "a small blue star", "a star jumps"),
    ("The man in black is walking to the car", "The man in black", "the man is walking to the car"),
    ("the man wearing a hat walks to the left", "the man wearing a hat", "the man walks to the left"),
    ("a dog running on the grass", "a dog", "a dog running on the grass"),
    ("the woman with glasses turns around, then leaves the room",
     "the woman with glasses", "the woman turns around, then leaves the room"),
])
def test_rules_split_subject_phrase_and_verb_phrase(query, attribute, action):
    sub = decompose_by_rules(query)
    assert (sub.attribute, sub.action, sub.source) == (attribute, action, "rules")


@pytest.mark.parametrize("query", ["the red ball", "What does the adult man in black hold?"])
def test_rules_without_a_split_use_the_query_for_both(query):
    sub = decompose_by_rules(query)
    expected = query.rstrip("?").rstrip(".")
    assert sub.attribute.rstrip("?") == expected and sub.action.rstrip("?") == expected


def test_subject_head():
    assert subject_head("The man in purple clothes takes a step") == "man"
    assert subject_head("a small blue star that jumps") == "star"


def test_parse_and_validate_model_answers():
    q = "the tall woman in a red coat opens the door"
    assert parse_model_answer("attribute: the tall woman in a red coat\naction: the woman opens the door.") == (
        "the tall woman in a red coat", "the woman opens the door")
    assert parse_model_answer("the woman opens the door") is None
    assert validate_decomposition(q, "the tall woman in a red coat", "the woman opens the door") is None
    assert "subject" in validate_decomposition(q, "the red coat", "the woman opens the door")
    assert "example" in validate_decomposition(q, "the man in purple clothes", "the woman opens the door")
    assert "empty" in validate_decomposition(q, "", "the woman opens the door")
    assert validate_decomposition(q, "the tall woman in a red coat", "zebra giraffe elephant woman lion") is not None


def test_model_answer_is_used_when_valid_and_cached():
    adapter = FakeAdapter(text_answer="attribute: the man in a green shirt\naction: the man sits down")
    dec = Decomposer(adapter.generate_text, max_new_tokens=32)
    sub = dec("the man in a green shirt sits down")
    assert (sub.attribute, sub.action, sub.source) == ("the man in a green shirt", "the man sits down", "model")
    assert "the man in a green shirt sits down" in adapter.generate_calls[0]
    again = dec("the man in a green shirt sits down.")  # same text up to the period: cache hit
    assert again is sub and len(adapter.generate_calls) == 1


@pytest.mark.parametrize("answer", [
    "", "attribute: the man in purple clothes\naction: the man takes a step forward and sits on the bench",
    "I cannot help with that.", "attribute: a cat\naction: a cat sleeps",
])
def test_unusable_model_answers_fall_back_to_rules(answer):
    adapter = FakeAdapter(text_answer=answer)
    dec = Decomposer(adapter.generate_text)
    sub = dec("the woman in white walks to the car")
    assert sub.source == "rules"
    assert (sub.attribute, sub.action) == ("the woman in white", "the woman walks to the car")
    assert dec.last_rejection


def test_rules_only_mode_never_asks_the_model_and_cache_is_lru():
    adapter = FakeAdapter(text_answer="attribute: x\naction: y")
    dec = Decomposer(adapter.generate_text, use_model=False, cache_size=2)
    for q in ("a red ball rolls", "a blue box falls", "a green cube jumps"):
        dec(q)
    assert adapter.generate_calls == []
    assert list(dec._cache) == ["a blue box falls", "a green cube jumps"]


def test_caller_sub_queries_in_every_form():
    dec = Decomposer(None)
    q = "the man in red runs"
    for given in (("the man in red", "the man runs"), {"attribute": "the man in red", "action": "the man runs"},
                  SubQueries("the man in red", "the man runs", "whatever")):
        sub = dec(q, given)
        assert (sub.attribute, sub.action, sub.source) == ("the man in red", "the man runs", "caller")
    half = dec(q, ("the man in red", ""))
    assert half.action == q and half.source == "caller"
    with pytest.raises(ValueError, match="neither"):
        dec(q, ("", " "))


def test_grounder_uses_caller_sub_queries_for_the_latent_prompts():
    frames, stamps, _ = clip_with_square(num_frames=6)
    adapter = FakeAdapter(text_answer="attribute: nonsense\naction: nonsense")
    g = Grounder(adapter, GroundingConfig(num_frames=6))
    result = g.ground(frames, stamps, "the red square moves", sub_queries=("the red square", "the square moves"))
    assert result.sub_queries.source == "caller"
    assert adapter.generate_calls == []
    lra_questions = [c["questions"] for c in adapter.calls if c["with_grad"]][0]
    assert "Is there the red square in this video?" in lra_questions
    assert "Is there the square moves in this video?" in lra_questions


def test_grounder_without_dsth_uses_the_query_for_both_and_solves_one_problem_per_clip():
    frames, stamps, _ = clip_with_square(num_frames=6)
    adapter = FakeAdapter()
    g = Grounder(adapter, GroundingConfig(num_frames=6, use_dsth=False, use_tas=False))
    result = g.ground(frames, stamps, "the red square moves")
    assert result.sub_queries.source == "none"
    assert result.sub_queries.attribute == result.sub_queries.action == "the red square moves"
    grad_calls = [c for c in adapter.calls if c["with_grad"]]
    assert [c["batch"] for c in grad_calls] == [1]  # V_s == V_t: optimised once


def test_real_tiny_model_answer_is_checked_and_replaced_by_rules(tiny_model_dir):
    """A random tiny model answers nonsense: the validation rejects it and the rules decide."""
    from stvg_ros.adapters import load_adapter

    adapter = load_adapter(tiny_model_dir("qwen2_5_vl"), device="cpu")
    asked = []
    dec = Decomposer(lambda p, n: asked.append(p) or adapter.generate_text(p, n), max_new_tokens=16)
    sub = dec("The man in purple clothes takes a step forward and sits on the bench.")
    assert len(asked) == 1 and "Description: The man in purple clothes" in asked[0]
    assert sub.source == "rules" and dec.last_rejection
    assert (sub.attribute, sub.action) == ("The man in purple clothes",
                                           "the man takes a step forward and sits on the bench")


def test_shipped_model_decomposes_by_rules_and_replaced_configs_keep_the_cache():
    """The shipped model's few-shot answers are never usable (``bench_stream.py --sections oneshot
    --dsth-probe``), so its directory's defaults choose the rules; a config replaced with the same DSTH
    settings keeps the cache."""
    from pathlib import Path

    from stvg_ros.config import load_model_defaults
    from stvg_ros.grounding.grounder import Grounder

    shipped = Path(__file__).resolve().parent.parent / "models" / "stvg-synth-qwen"
    assert load_model_defaults(shipped)["decomposer"] == "rules"

    class Adapter:  # the grounder's config setter needs only these
        num_layers = 2
        supports_frame_keys = False
        options = None
        calls = []

        def configure(self, options):
            self.options = options

        def generate_text(self, prompt, max_new_tokens=64):
            self.calls.append(prompt)
            return "no idea"

    adapter = Adapter()
    assert Grounder(adapter, None, model_defaults=load_model_defaults(shipped)).config.decomposer == "rules"
    # 'model' is GroundingConfig's default, so a caller who wants it here turns the model's defaults off
    g = Grounder(adapter, dict(use_model_defaults=False), model_defaults=load_model_defaults(shipped))
    assert g.config.decomposer == "model"
    g.decomposer("the man walks")
    g.config = g.config.replace(found_threshold=0.3)
    g.decomposer("the man walks")
    assert len(adapter.calls) == 1  # cached by text across the config change
    g.config = g.config.replace(decomposer="rules")
    assert g.decomposer("a dog runs").source == "rules" and len(adapter.calls) == 1


# --- nouns spelled like verbs (issue 27): the split is at the verb, not at "circle", "watch", "walk" ---------

@pytest.mark.parametrize("query, attribute, action", [
    ("the small red circle that jumps", "the small red circle", "the circle jumps"),
    ("a big white circle moves left", "a big white circle", "a circle moves left"),
    ("the man with the watch sits down", "the man with the watch", "the man sits down"),
    ("the man on the walk waves", "the man on the walk", "the man waves"),
    ("the woman near the light turns around", "the woman near the light", "the woman turns around"),
    ("a boy with a ring jumps over the fence", "a boy with a ring", "a boy jumps over the fence"),
    ("the woman in the light blue coat walks away", "the woman in the light blue coat", "the woman walks away"),
    ("the man with a watch watches the birds", "the man with a watch", "the man watches the birds"),
])
def test_nouns_spelled_like_verbs_stay_in_the_attribute(query, attribute, action):
    sub = decompose_by_rules(query)
    assert (sub.attribute, sub.action) == (attribute, action)


@pytest.mark.parametrize("query, attribute, action", [
    ("people circle the table", "people", "people circle the table"),
    ("the man walks on the walk", "the man", "the man walks on the walk"),
    ("the phone rings", "the phone", "the phone rings"),
    ("the woman lights the lamp", "the woman", "the woman lights the lamp"),
    ("two men watch the game", "two men", "men watch the game"),
    ("the man in black walks to the car", "the man in black", "the man walks to the car"),
    ("the red square moving right", "the red square", "the square moving right"),
    ("the light moving across the wall", "the light", "the light moving across the wall"),
])
def test_the_same_words_as_verbs_still_split(query, attribute, action):
    sub = decompose_by_rules(query)
    assert (sub.attribute, sub.action) == (attribute, action)


@pytest.mark.parametrize("query, head", [("the small red circle that jumps", "circle"),
                                         ("the watch falls", "watch"), ("a man in a running suit", "man")])
def test_subject_head_of_nouns_spelled_like_verbs(query, head):
    assert subject_head(query) == head


def test_every_synthetic_query_decomposes_as_the_generator_does():
    """All size x colour x shape x action queries of the synthetic world: the rules give the generator's
    own sub-queries (the "circle" quarter was cut at "circle" before)."""
    import itertools

    from stvg_ros.synthetic.generator import ACTION_VERB, COLOURS, SHAPES, SIZES

    wrong = []
    for size, colour, shape, action in itertools.product(SIZES, COLOURS, SHAPES, ACTION_VERB):
        sub = decompose_by_rules(f"the {size} {colour} {shape} that {ACTION_VERB[action]}")
        if (sub.attribute, sub.action) != (f"the {size} {colour} {shape}", f"the {shape} {ACTION_VERB[action]}"):
            wrong.append((sub.attribute, sub.action))
    assert wrong == []
