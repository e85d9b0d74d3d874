"""DSTH's query decomposition: attribute (spatial) and action (temporal) sub-queries.

The paper asked GPT-4o offline.  A robot has no cloud, so the loaded MLLM is asked, text only,
with a few examples; its answer is checked and, when unusable, replaced by a deterministic rule
set.  Callers (datasets ship decompositions) may pass sub-queries explicitly.  Results are cached
by query text, since a node is asked the same query again and again.
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from typing import Callable

from .result import SubQueries

FEW_SHOT_PROMPT = """Split a description of a target in a video into two parts.
attribute: the target with its appearance only (no action).
action: the target with what it does (no appearance).
Answer with exactly two lines.

Description: The man in purple clothes takes a step forward and sits on the bench.
attribute: the man in purple clothes
action: the man takes a step forward and sits on the bench

Description: the woman with a white hat turns around and walks to the door
attribute: the woman with a white hat
action: the woman turns around and walks to the door

Description: a small red ball that rolls to the left
attribute: a small red ball
action: a ball that rolls to the left

Description: {query}
"""

_EXAMPLE_PARTS = {
    "the man in purple clothes", "the man takes a step forward and sits on the bench",
    "the woman with a white hat", "the woman turns around and walks to the door",
    "a small red ball", "a ball that rolls to the left",
}

_DETERMINERS = {"the", "a", "an", "this", "that", "one", "another", "some", "his", "her", "their", "its"}
_QUESTION_WORDS = {"what", "who", "whom", "which", "where", "when", "how", "why", "whose"}
_RELATIVES = {"who", "that", "which", "whose"}
_AUXILIARIES = {"is", "are", "was", "were", "has", "have", "had", "does", "do", "did", "gets", "got",
                "can", "will", "would", "should", "could", "begins", "starts", "keeps", "continues"}
_PREPOSITIONS = {"in", "on", "at", "with", "of", "from", "by", "near", "behind", "beside", "under", "over",
                 "wearing", "dressed", "holding", "carrying", "without", "inside", "next", "above", "below"}
# base forms of verbs that describe actions in STVG queries (HC-STVG, VidSTG) and our synthetic world
_VERBS = """
walk run jump sit stand turn take put pick hold carry push pull throw catch hit kick touch open close
go come leave enter exit move step stop start look watch talk speak say shake nod wave point reach
lean bend kneel lie fall rise get give hand hug kiss grab drop raise lower lift climb ride drive chase
follow approach pass cross roll spin rotate grow shrink appear disappear bounce slide fly swim dance
play eat drink read write smile laugh cry sing pour wipe clean wash cut eat fight punch push pat knock
stare glance beckon return arrive head hurry rush dash stride pace jog wander circle stay remain wait
shout yell answer ask nudge help lead escort bring fetch toss swing flip twist glide hop crawl
ring light flash blink sleep
""".split()
_IRREGULAR_PAST = {
    "ran": "run", "sat": "sit", "stood": "stand", "took": "take", "held": "hold", "went": "go", "came": "come",
    "left": "leave", "spoke": "speak", "said": "say", "shook": "shake", "fell": "fall", "rose": "rise",
    "got": "get", "gave": "give", "threw": "throw", "caught": "catch", "drove": "drive", "rode": "ride",
    "flew": "fly", "swam": "swim", "ate": "eat", "drank": "drink", "wrote": "write", "cut": "cut", "put": "put",
    "hit": "hit", "lay": "lie", "grew": "grow", "brought": "bring", "led": "lead", "rang": "ring", "lit": "light",
    "slept": "sleep",
}


def _verb_forms() -> tuple[set[str], set[str]]:
    """(finite forms: base, 3rd person, past; -ing forms) of the verb list."""
    finite, ing = set(), set()
    for v in _VERBS:
        finite.add(v)
        finite.add(v + "es" if v.endswith(("s", "sh", "ch", "x", "z", "o")) else
                   (v[:-1] + "ies" if v.endswith("y") and v[-2] not in "aeiou" else v + "s"))
        stem = v[:-1] if v.endswith("e") and not v.endswith("ee") else v
        if len(v) >= 3 and v[-1] not in "aeiouwxy" and v[-2] in "aeiou" and v[-3] not in "aeiou" and len(v) <= 4:
            ing.add(v + v[-1] + "ing")
            finite.add(v + v[-1] + "ed")
        ing.add(stem + "ing")
        finite.add(stem + "ed" if not v.endswith("e") else v + "d")
        if v.endswith("y") and v[-2] not in "aeiou":
            finite.add(v[:-1] + "ied")
    finite.update(_IRREGULAR_PAST)
    finite.discard("left")  # far more often "to the left" than the verb in these queries
    return finite, ing


_FINITE, _ING = _verb_forms()

# --- telling a verb from a noun of the same spelling ("the watch", "a red circle", "on the walk") ------------
# A word of the verb list is read as a verb only where English puts a verb: never right after a
# determiner, number, possessive or preposition (a noun phrase starts there); a bare base form
# ("circle", "watch") needs a plural subject ("people circle", "the men watch"), since a singular
# one takes "-s" or a past form; after an adjective ("in black walks", "the red lights") a form is a
# verb only when no later word is one.  Derived from these rules, no data file, nothing downloaded.
_BE = {"is", "are", "was", "were"}
_MODALS = {"can", "will", "would", "should", "could", "may", "might", "must"}
_NUMBERS = {"two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "several", "many", "few",
            "both", "all", "other", "each", "every", "no"}
_PLURAL_WORDS = {"men", "women", "people", "children", "police", "they", "we", "you", "i", "feet", "sheep",
                 "deer", "fish", "both", "kids", "others"}
_ADJECTIVES = set("""
red green blue yellow purple white black grey gray brown pink orange golden silver dark light pale bright
small big large little tall short long tiny huge giant young old elderly middle-aged fat thin slim bald
blond blonde bearded striped spotted plaid checked wooden metal plastic leather new
""".split())
#: base forms that are also past forms ("the man cut the rope"): finite whatever the subject
_PAST_LIKE_BASE = {v for past, v in _IRREGULAR_PAST.items() if past == v}
_BASE_FORMS = (set(_VERBS) | {"do", "have"}) - _PAST_LIKE_BASE


def _plural(word: str) -> bool:
    return word in _PLURAL_WORDS or (word.endswith("s") and not word.endswith(("ss", "us", "is")) and len(word) > 2)


def _verb_reading(lower: list[str], i: int, start: int) -> str | None:
    """How ``lower[i]`` reads after the subject starting at ``start``: "verb", "weak" (a verb only
    if no later word is one) or None (not a finite verb here)."""
    w, prev = lower[i], lower[i - 1]
    if w not in _AUXILIARIES and w not in _FINITE and w not in _MODALS:
        return None
    if w in _BE:
        return "verb"
    if prev in _DETERMINERS or prev in _PREPOSITIONS or prev in _NUMBERS or prev.endswith("'s"):
        return None  # a noun phrase starts here: "the watch", "on the walk", "with two rings"
    if prev == "to" or w in _MODALS:
        return "verb"
    if w in _BASE_FORMS and not _plural(prev) and "and" not in lower[start:i]:
        return None  # "a small red circle": a singular subject would take "circles"
    if prev in _ADJECTIVES:
        return "weak"  # "in black walks" (verb) or "the red lights" (noun)
    return "verb"


def _finite_verb(lower: list[str], start: int) -> tuple[str, int] | None:
    """("relative" | "verb", index) of where the subject ends, or None."""
    weak = None
    for i in range(start + 1, len(lower)):
        if lower[i] in _RELATIVES:
            return "relative", i
        reading = _verb_reading(lower, i, start)
        if reading == "verb":
            return "verb", i
        if reading == "weak" and weak is None:
            weak = i
    return None if weak is None else ("verb", weak)


def _participle(lower: list[str], start: int) -> int | None:
    """Index of an -ing form that carries the action ("a dog running"), not one that starts a noun
    phrase ("in a running suit")."""
    for i in range(start + 1, len(lower)):
        prev = lower[i - 1]
        if lower[i] in _ING and lower[i] not in _PREPOSITIONS and prev not in _DETERMINERS \
                and prev not in _PREPOSITIONS and prev not in _NUMBERS:
            return i
    return None


def _words(text: str) -> list[str]:
    return re.findall(r"[A-Za-z0-9'\-]+|[,;]", text)


def _clean(text: str) -> str:
    text = re.sub(r"\s+", " ", text).strip().strip(".").strip()
    text = re.sub(r"\s+,", ",", text)
    return text


def subject_head(query: str) -> str | None:
    """The head noun of the query's subject ('man' in 'the man in purple clothes sits')."""
    words = [w for w in _words(query) if w not in ",;"]
    lower = [w.lower() for w in words]
    start = 1 if lower and lower[0] in _DETERMINERS else 0
    split = _finite_verb(lower, start) if lower else None
    end = split[1] if split else (_participle(lower, start) or len(words))
    head = None
    for i in range(start, end):
        if lower[i] in _PREPOSITIONS:
            break
        head = words[i]
    return head


def decompose_by_rules(query: str) -> SubQueries:
    """Deterministic decomposition: split at a relative pronoun or at the first verb after the subject
    (a verb where English puts one: "the man with the watch | sits down", not at "watch").

    attribute = the subject noun phrase with its adjectives and prepositional attributes;
    action = determiner + subject head noun + the verb phrase.  A query with no recognisable
    verb is all attribute: both sub-queries are then the query itself (as the official code does
    when a decomposition fails).
    """
    words = _words(_clean(query))
    if not words:
        return SubQueries(attribute="", action="", source="rules")
    lower = [w.lower() for w in words]
    if lower[0] in _QUESTION_WORDS:  # an interrogative query names no subject to split off
        text = _clean(query)
        return SubQueries(attribute=text, action=text, source="rules")
    # subject head: first non-determiner word run before a preposition / verb / relative pronoun
    start = 1 if lower[0] in _DETERMINERS else 0
    split = _finite_verb(lower, start)
    if split is None:  # no finite verb: an -ing participle may carry the action ("a dog running")
        i = _participle(lower, start)
        split = None if i is None else ("verb", i)
    if split is None:
        text = _clean(query)
        return SubQueries(attribute=text, action=text, source="rules")
    kind, i = split
    attribute_words = [w for w in words[:i] if w not in ",;"]
    rest = words[i + 1:] if kind == "relative" else words[i:]
    head_i = start
    for j in range(start, len(attribute_words)):
        if attribute_words[j].lower() in _PREPOSITIONS:
            break
        head_i = j
    det = [words[0].lower()] if start == 1 else []
    action_words = det + [attribute_words[head_i]] + list(rest)
    attribute = _clean(" ".join(attribute_words).replace(" ,", ","))
    action = _clean(" ".join(action_words).replace(" ,", ","))
    if not rest or not attribute:
        text = _clean(query)
        return SubQueries(attribute=text, action=text, source="rules")
    return SubQueries(attribute=attribute, action=action, source="rules")


def parse_model_answer(answer: str) -> tuple[str, str] | None:
    """``'attribute: ...\\naction: ...'`` → (attribute, action), or None when absent."""
    attr = re.search(r"attribute\s*:\s*(.+)", answer, flags=re.IGNORECASE)
    act = re.search(r"action\s*:\s*(.+)", answer, flags=re.IGNORECASE)
    if not attr or not act:
        return None
    return _clean(attr.group(1).split("\n")[0]), _clean(act.group(1).split("\n")[0])


def validate_decomposition(query: str, attribute: str, action: str) -> str | None:
    """Why a model decomposition is unusable (None when it is fine)."""
    q_words = {w.lower() for w in _words(query)}
    for name, part in (("attribute", attribute), ("action", action)):
        if not part:
            return f"empty {name}"
        words = [w.lower() for w in _words(part)]
        if len(words) > 2 * len(q_words) + 4:
            return f"{name} much longer than the query"
        if part.lower() in _EXAMPLE_PARTS and part.lower() not in query.lower():
            return f"{name} copies the prompt's example"
        if re.search(r"attribute|action|description", part, flags=re.IGNORECASE) and \
                not re.search(r"attribute|action|description", query, flags=re.IGNORECASE):
            return f"{name} repeats the prompt's labels"
        if sum(w in q_words for w in words) < max(1, len(words) // 2):
            return f"{name} is mostly not from the query"
    head = subject_head(query)
    if head:
        for name, part in (("attribute", attribute), ("action", action)):
            if head.lower() not in {w.lower() for w in _words(part)}:
                return f"{name} lacks the subject '{head}'"
    return None


class Decomposer:
    """Query → :class:`SubQueries`, by the model (few-shot) with a rule fallback, cached (LRU)."""

    def __init__(self, generate: Callable[[str, int], str] | None, use_model: bool = True,
                 max_new_tokens: int = 48, cache_size: int = 256):
        self._generate = generate
        self.use_model = use_model and generate is not None
        self.max_new_tokens = max_new_tokens
        self.cache_size = cache_size
        self._cache: OrderedDict[str, SubQueries] = OrderedDict()
        self._lock = threading.Lock()  # a node may ground from a worker thread while another asks
        self.last_rejection: str | None = None

    def __call__(self, query: str, sub_queries: SubQueries | tuple[str, str] | dict | None = None) -> SubQueries:
        if sub_queries is not None:
            return self._from_caller(query, sub_queries)
        key = _clean(query)
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        result = None
        self.last_rejection = None
        if self.use_model:
            answer = self._generate(FEW_SHOT_PROMPT.format(query=key), self.max_new_tokens)
            parsed = parse_model_answer(answer)
            if parsed is None:
                self.last_rejection = "answer is not two lines 'attribute: ...' / 'action: ...'"
            else:
                self.last_rejection = validate_decomposition(key, *parsed)
                if self.last_rejection is None:
                    result = SubQueries(attribute=parsed[0], action=parsed[1], source="model")
        if result is None:
            result = decompose_by_rules(key)
        with self._lock:
            self._cache[key] = result
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return result

    @staticmethod
    def _from_caller(query: str, sub_queries) -> SubQueries:
        if isinstance(sub_queries, SubQueries):
            attribute, action = sub_queries.attribute, sub_queries.action
        elif isinstance(sub_queries, dict):
            attribute, action = sub_queries.get("attribute", ""), sub_queries.get("action", "")
        else:
            attribute, action = sub_queries
        attribute, action = _clean(attribute or ""), _clean(action or "")
        if not attribute and not action:
            raise ValueError("sub_queries has neither an attribute nor an action; pass None to decompose the query")
        # a missing half falls back to the full query, as the official code does for failed decompositions
        return SubQueries(attribute=attribute or _clean(query), action=action or _clean(query), source="caller")
