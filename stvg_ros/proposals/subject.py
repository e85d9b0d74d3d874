"""The detector phrase of a query: its subject's head noun, mapped to a detector class.

DSTH's attribute sub-query names the target ("the man in purple clothes."); the detector only
needs its class, and every candidate of that class should become a track (the MLLM chooses among
them), so adjectives and modifiers are dropped: "the man in purple clothes" → "man" → "person".
Mapping people words to one class keeps the live stage's running class ("person") useful for
most queries, so a query rarely triggers detection over the window.  Rules only, no model: this
runs before grounding, on the raw query when no sub-queries are given.
"""

from __future__ import annotations

import re
from typing import Mapping, Optional

#: head noun → detector class (lower case); the node's ``proposals.synonyms`` adds to it
DEFAULT_SYNONYMS: dict[str, str] = {
    **{w: "person" for w in (
        "man men woman women person persons people boy boys girl girls child children kid kids baby babies "
        "adult adults guy guys lady ladies gentleman gentlemen player players worker workers pedestrian "
        "pedestrians human humans someone somebody he she they him her who"
    ).split()},
    "bike": "bicycle", "motorbike": "motorcycle", "automobile": "car", "puppy": "dog", "kitten": "cat",
}

_DETERMINERS = set(
    "the a an this that these those his her their its my your our some any another one two three first "
    "second third other each every".split())
# words that end the subject's noun phrase (prepositions, relative pronouns, verbs of being/doing)
_STOPPERS = set(
    "in on at with without of from by near behind beside next under over above below into onto to for "
    "who that which whose wearing dressed holding carrying is are was were has have had does do did "
    "and or while when where as than".split())
_ADJECTIVES = set(
    "red green blue yellow white black orange purple brown gray grey pink golden silver dark light bright "
    "small large big little tiny huge tall short long old young adult elderly fat thin striped dotted plain "
    "left right front back middle other same first last".split())
_INTERROGATIVE_OBJECT = {"what", "which"}
_WORD = re.compile(r"[a-z][a-z'-]*")


def _singular(word: str) -> str:
    if word in DEFAULT_SYNONYMS:
        return word
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    if word.endswith(("ches", "shes", "xes", "sses")):
        return word[:-2]
    if word.endswith("s") and not word.endswith(("ss", "us", "is")) and len(word) > 3:
        return word[:-1]
    return word


def head_noun(text: str) -> Optional[str]:
    """The head noun of the text's first noun phrase (lower case, singular), or None.

    "The man in purple clothes takes a step" → "man"; "the small blue star that jumps" → "star";
    "Who is holding the cup?" → "who" (mapped to a person by the synonyms); "What does the man
    hold?" → None (the target is what is asked for, not the subject).
    """
    words = _WORD.findall(text.lower())
    if not words:
        return None
    if words[0] in _INTERROGATIVE_OBJECT:
        return None
    if words[0] == "who":
        return "who"
    phrase: list[str] = []
    for w in words:
        has_noun = any(p not in _ADJECTIVES for p in phrase)
        if phrase and (w in _STOPPERS or w in _DETERMINERS):
            break
        if w in _DETERMINERS or w in _STOPPERS:
            continue
        # a verb after the noun ends the subject: "the man takes", "kids playing", "the car parked"
        if has_noun and w.endswith(("s", "ed", "ing")) and w not in _ADJECTIVES:
            break
        phrase.append(w)
        if w not in _ADJECTIVES and _singular(w) != w:  # a plural noun: "the two dogs run"
            break
        if len(phrase) >= 4:  # noun phrases seldom run longer; a verb would follow
            break
    while phrase and phrase[0] in _ADJECTIVES:  # "small blue star" → "star"
        phrase.pop(0)
    if not phrase:
        return None
    last = _singular(phrase[-1])
    if last in DEFAULT_SYNONYMS or len(phrase) == 1:
        return last
    return " ".join(phrase[-2:-1] + [last])  # a compound noun: "traffic light", "police car"


def canonical_class(word: str, synonyms: Optional[Mapping[str, str]] = None) -> str:
    """``word`` (a head noun or a detector label) as a detector class through the synonyms map."""
    w = word.strip().lower().rstrip(".")
    table = {**DEFAULT_SYNONYMS, **{k.lower(): v.lower() for k, v in (synonyms or {}).items()}}
    if w in table:
        return table[w]
    s = _singular(w)
    return table.get(s, s)


def subject_phrase(text: str, default_class: str = "person", synonyms: Optional[Mapping[str, str]] = None) -> str:
    """Detector phrase for a query or attribute sub-query; ``default_class`` when none is found."""
    noun = head_noun(text or "")
    if noun is None:
        return default_class.strip().lower()
    return canonical_class(noun, synonyms)
