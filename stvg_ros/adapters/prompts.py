"""The prompt layout of the transformers families: the prompt rendered from the model's own chat template
(or the official code's conversation), tokenised, with the video placeholder, the grounding-token candidates
(the question's last token to the end of the prompt), the official fixed grounding token (the first token of
the template's generation prompt) and the yes/no answer ids located in it; a batch of prompts
prepared for the decoder (:class:`PreparedBatch`).

:class:`ChatPrompts` is a part of :class:`~stvg_ros.adapters.common.HFAdapter`; it reads the adapter's
``tokenizer``, ``chat_template``, ``video_token_id``, ``options``, ``path`` and ``_layout_cache``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

from .base import AdapterError

log = logging.getLogger(__name__)


@dataclass
class PromptLayout:
    """One tokenised prompt and where things are in it (indices into ``ids``, before expansion)."""

    ids: list[int]
    placeholder: int  # index of the video placeholder token
    candidate_start: int  # index of the question's last token; candidates run to the end
    question_start: int  # index of the question's first token: what comes before it is the clip prefix


@dataclass
class PreparedBatch:
    """Decoder inputs for B prompts, right-padded, with the rows/columns to capture."""

    embeds: torch.Tensor  # (B, L, D)
    positions: torch.Tensor  # (B, L) or (3, B, L)
    last: torch.Tensor  # (B,) index of each prompt's last real token
    rows: torch.Tensor  # (B, K) candidate positions in the expanded sequence
    cols: torch.Tensor  # (B, N) visual token positions
    candidate_tokens: list[list[str]]
    candidate_offsets: list[list[int]]
    lengths: list[int]
    prompt_ids: list[list[int]]  # expanded token ids (visual tokens as the placeholder id)
    question_starts: list[int]  # where each question's first token sits in the expanded sequence


class ChatPrompts:
    """Prompts of a chat-template model: rendering, tokenising and locating what the method needs."""

    #: the content part the chat template renders as the video placeholder
    video_part = {"type": "video"}
    #: the official code's conversation for this family (``prompt_style='official'``): the user turn with
    #: ``{video}`` (the placeholder token) and ``{question}``, and the generation prompt; None = the family
    #: has no official driver and its own chat template is used
    official_conversation: tuple[str, str] | None = None

    def render(self, question: str, add_generation_prompt: bool = True) -> str:
        """The prompt text of ``video + question``: the model's chat template, or with
        ``prompt_style='official'`` the official code's conversation where the family has one."""
        if self.options.prompt_style == "official" and self.official_conversation is not None:
            turn, generation = self.official_conversation
            video = self.tokenizer.convert_ids_to_tokens(self.video_token_id)
            text = turn.format(video=video, question=question)
            return text + generation if add_generation_prompt else text
        messages = [{"role": "user", "content": [dict(self.video_part), {"type": "text", "text": question}]}]
        return self.tokenizer.apply_chat_template(messages, chat_template=self.chat_template, tokenize=False,
                                                  add_generation_prompt=add_generation_prompt)

    def _encode(self, text: str):
        if self.options.prompt_style == "official" and self.official_conversation is not None:
            return self._encode_chunks(text)
        bos = getattr(self.tokenizer, "bos_token", None)
        add_special = not (bos and text.startswith(bos))
        enc = self.tokenizer(text, add_special_tokens=add_special, return_offsets_mapping=True)
        return enc["input_ids"], enc["offset_mapping"]

    def _encode_chunks(self, text: str):
        """The official code's ``tokenizer_image_token``: the text before and after the video placeholder
        tokenised separately (each with the tokenizer's bos, kept on the first chunk only).  Llama's
        sentencepiece then starts the text after the video with its dummy-prefix '▁' (29871) before the
        newline, which tokenising the whole prompt does not; Qwen2's BPE gives the same ids either way."""
        video = self.tokenizer.convert_ids_to_tokens(self.video_token_id)
        bos_id = getattr(self.tokenizer, "bos_token_id", None)
        ids: list[int] = []
        offsets: list[tuple[int, int]] = []
        pos = 0
        for k, chunk in enumerate(text.split(video)):
            if k:
                ids.append(self.video_token_id)
                offsets.append((pos, pos + len(video)))
                pos += len(video)
            enc = self.tokenizer(chunk, add_special_tokens=True, return_offsets_mapping=True)
            chunk_ids, chunk_offsets = list(enc["input_ids"]), list(enc["offset_mapping"])
            if k and bos_id is not None and chunk_ids[:1] == [bos_id]:
                chunk_ids, chunk_offsets = chunk_ids[1:], chunk_offsets[1:]
            ids += chunk_ids
            offsets += [(a + pos, b + pos) for a, b in chunk_offsets]
            pos += len(chunk)
        return ids, offsets

    def layout(self, question: str) -> PromptLayout:
        """Tokenise ``question`` in the chat template and locate the placeholder and candidates."""
        question = question.strip()
        if not question:
            raise AdapterError("empty question: pass the text to ask about the video")
        cached = self._layout_cache.get(question)
        if cached is not None:
            return cached
        text = self.render(question)
        ids, offsets = self._encode(text)
        where = [i for i, t in enumerate(ids) if t == self.video_token_id]
        if len(where) != 1:
            raise AdapterError(f"the chat template of {self.path} rendered {len(where)} video placeholders "
                               f"(token id {self.video_token_id}) for one video; expected exactly one")
        q_start = text.rfind(question)
        last_char = q_start + len(question) - 1
        cand = next(i for i, (a, b) in enumerate(offsets) if a <= last_char < b or a > last_char)
        # the grounding tokens must see the video: with a template that puts the question first,
        # they start after the video block
        cand = max(cand, where[0] + 1)
        first = next(i for i, (a, b) in enumerate(offsets) if b > q_start)
        lay = PromptLayout(ids=list(ids), placeholder=where[0], candidate_start=cand, question_start=min(first, cand))
        if len(self._layout_cache) > 512:
            self._layout_cache.clear()
        self._layout_cache[question] = lay
        return lay

    def _derive_grounding_offset(self) -> int:
        """The official code's fixed token, found in this template: the generation prompt's first token.

        (" ASSISTANT:"'s '▁A' in Vicuna templates = -5, ChatML's '<|im_start|>' of the assistant
        turn = -3.)  The class default is kept when it agrees; a tokenizer that splits differently
        gets the derived offset, so the fixed token is always the intended one.
        """
        probe = "Is there a person in this video?"
        full = self.render(probe, add_generation_prompt=True)
        head = self.render(probe, add_generation_prompt=False)
        if not full.startswith(head) or full == head:
            return type(self).default_grounding_offset
        ids, offsets = self._encode(full)
        start = len(head)
        idx = next((i for i, (_, b) in enumerate(offsets) if b > start), None)
        if idx is None:
            return type(self).default_grounding_offset
        derived = idx - len(ids)
        if derived != type(self).default_grounding_offset:
            log.info("%s: the generation prompt starts at offset %d (class default %d); using %d",
                     self.path, derived, type(self).default_grounding_offset, derived)
        return derived

    def _resolve_answer_ids(self) -> tuple[int, int]:
        """The yes/no ids ``options.answer_tokens`` names (see :class:`AdapterOptions`)."""
        spec = self.options.answer_tokens
        if spec != "auto":
            pieces = ("yes", "no") if spec == "official" else tuple(p.strip() for p in spec.split(","))
            vocab = self.tokenizer.get_vocab()
            missing = [p for p in pieces if p not in vocab]
            if len(pieces) != 2 or missing:
                raise AdapterError(f"answer_tokens={spec!r}: the vocabulary of {self.path} has no piece(s) {missing}; "
                                   "write two vocabulary pieces as 'YES,NO' (e.g. 'Yes,No', or '▁Yes,▁No' for "
                                   "sentencepiece vocabularies), or use 'auto' / 'official'")
            return int(vocab[pieces[0]]), int(vocab[pieces[1]])
        tried = []
        for yes, no in (("Yes", "No"), ("yes", "no")):
            a = self.tokenizer.encode(yes, add_special_tokens=False)
            b = self.tokenizer.encode(no, add_special_tokens=False)
            tried.append(f"{yes!r}->{self.tokenizer.convert_ids_to_tokens(a)}, "
                         f"{no!r}->{self.tokenizer.convert_ids_to_tokens(b)}")
            if len(a) == 1 and len(b) == 1:
                return int(a[0]), int(b[0])
        raise AdapterError(f"the tokenizer of {self.path} has no single-token yes/no answer ({'; '.join(tried)}); "
                           "the grounding needs a model whose vocabulary has them")

    @property
    def answer_token_ids(self) -> tuple[int, int]:
        return self._yes_no
