"""Constrained decoding for the item latents: the AR prior can only write strings its format's parser accepts.

A latent type whose registry entry declares a ``grammar`` (an :class:`~kaleido.latents.formats.ItemFormat`: bbox,
blob) is written as ``name (n1, ..., nk)`` items joined by ``"; "`` (:mod:`kaleido.latents.formats`). During
prior sampling :class:`ItemGrammar` masks, at every step, the tokens that would make the string impossible to
complete: names outside the latent's object vocabulary, malformed separators, non-canonical or out-of-range
numbers, and order violations (bbox ``x1 <= x2``, ``y1 <= y2``; blob ``r_minor <= r_major``). EOS is allowed only
where the string is complete (after an item, or at the start: an image without objects). Every string that ends in
EOS therefore parses; a string cut by the prior's ``seq_len`` before EOS stays unfinished (the edit stage counts it
as not editable).

Works on any tokenizer whose tokens spell the strings one at a time (:func:`grammar_meta` checks this on the
training latents: byte-level BPE read by decoding each id, SentencePiece read from its pieces); tokens whose text is
not plain printable ASCII (byte fragments, specials) are never allowed. Each row's state is a small hashable tuple
advanced one character at a time; a state's allowed-token mask is computed from the tokens whose first character
the state accepts and cached, so a step costs a dictionary lookup per row.
"""

from __future__ import annotations

import warnings
from bisect import bisect_left
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from kaleido.errors import ConfigError
from kaleido.latents.formats import ITEM_SEP, ItemFormat

State = tuple  # ("name", prefix, first) | ("num", field, digits, values) | ("lit", text, then) | ("after",) | ("done",)


def item_formats() -> dict[str, ItemFormat]:
    """Latent type -> its item format, for the registered types whose entry declares a ``grammar`` (bbox, blob);
    the others (color, voken, text, combined) are sampled unconstrained."""
    from kaleido.latents import EXTRACTORS

    entries = {name: EXTRACTORS.get(name) for name in EXTRACTORS.names()}
    return {name: entry.grammar for name, entry in entries.items() if entry.grammar is not None}


def _prefix_feasible(digits: str, lo: int, hi: int) -> bool:
    """Whether some canonical integer in [lo, hi] (no leading zeros, no ``-0``) starts with ``digits``."""
    if lo > hi:
        return False
    if digits in ("", "-"):
        return digits == "" or lo <= -1
    negative = digits.startswith("-")
    body = digits[1:] if negative else digits
    if not body.isdigit() or (body[0] == "0" and (len(body) > 1 or negative)):
        return False
    mag_lo, mag_hi = (max(1, -hi), -lo) if negative else (max(0, lo), hi)
    if mag_lo > mag_hi:
        return False
    base = int(body)
    if base == 0:
        return mag_lo == 0
    for extra in range(len(str(mag_hi)) - len(body) + 1):
        first, last = base * 10 ** extra, base * 10 ** extra + 10 ** extra - 1
        if first <= mag_hi and last >= mag_lo:
            return True
    return False


class ItemGrammar:
    """A prior-sampling constraint (``Constraint`` of :mod:`kaleido.models.t5`) for one item latent type.

    ``token_texts[i]`` is token i's text (None for special tokens); ``names`` the object vocabulary; ``eos_id``
    the end token; ``leading_space``: the string may open with one space (SentencePiece's word marker). Call it
    as ``constraint(prefix_ids (B, k), logits (B, V)) -> logits``; it keeps each row's parse state between
    consecutive calls of one generation (k = 0 starts a new batch).
    """

    def __init__(self, latent: str, token_texts: Sequence[str | None], names: Sequence[str], eos_id: int,
                 leading_space: bool = False) -> None:
        formats = item_formats()
        if latent not in formats:
            raise ConfigError(f"no grammar for latent type {latent!r}; grammars exist for {sorted(formats)}")
        if not names:
            raise ConfigError(f"the {latent} grammar needs the object names of the latents (got none)")
        self.format, self.eos_id, self.vocab_size = formats[latent], eos_id, len(token_texts)
        self.leading_space = leading_space  # SentencePiece pieces start the string with the word marker's space
        # sorted, so that prefix look-ups bisect: an open vocabulary (the noun phrases of CC12M's captions) holds
        # hundreds of thousands of names, and a scan per character would cost seconds per sampling step
        self.heads = sorted({f"{name} (" for name in names})
        self._head_set = frozenset(self.heads)
        self.texts = [t if t and t.isascii() and t.isprintable() else None for t in token_texts]
        self.by_first: dict[str, list[int]] = {}
        for i, text in enumerate(self.texts):
            if text is not None:
                self.by_first.setdefault(text[0], []).append(i)
        self._masks: dict[State, torch.Tensor] = {}
        self._states: list[State] = []

    # -- character-level automaton ---------------------------------------------------------------------------
    def _bounds(self, field: int, values: tuple[int, ...]) -> tuple[int, int]:
        lo, hi = self.format.bounds[field]
        if field in self.format.at_least:
            lo = max(lo, values[self.format.at_least[field]])
        if field in self.format.at_most:
            hi = min(hi, values[self.format.at_most[field]])
        return lo, hi

    def _number_done(self, field: int, digits: str, values: tuple[int, ...]) -> int | None:
        """The field's value if ``digits`` (a feasible canonical prefix) may end here, else None."""
        if digits in ("", "-"):
            return None
        lo, hi = self._bounds(field, values)
        return int(digits) if lo <= int(digits) <= hi else None

    def _step(self, state: State, char: str) -> State | None:
        kind = state[0]
        if kind == "name":
            if state[2] and char == " " and self.leading_space:
                return ("name", "", False)
            prefix = state[1] + char
            if prefix in self._head_set:
                return ("num", 0, "", ())
            first = bisect_left(self.heads, prefix)
            feasible = first < len(self.heads) and self.heads[first].startswith(prefix)
            return ("name", prefix, False) if feasible else None
        if kind == "num":
            _, field, digits, values = state
            if char.isdigit() or char == "-":
                lo, hi = self._bounds(field, values)
                return ("num", field, digits + char, values) if _prefix_feasible(digits + char, lo, hi) else None
            value = self._number_done(field, digits, values)
            if value is None:
                return None
            last = field == len(self.format.bounds) - 1
            if char == "," and not last:
                return ("lit", " ", ("num", field + 1, "", values + (value,)))
            if char == ")" and last:
                return ("after",)
            return None
        if kind == "lit":
            _, text, then = state
            if char != text[0]:
                return None
            return then if len(text) == 1 else ("lit", text[1:], then)
        if kind == "after":
            return ("lit", ITEM_SEP[1:], ("name", "", False)) if char == ITEM_SEP[0] else None
        return None

    def advance(self, state: State, text: str) -> State | None:
        """The state after reading ``text`` from ``state``; None if ``text`` cannot continue a valid string."""
        for char in text:
            state = self._step(state, char)
            if state is None:
                return None
        return state

    def _first_chars(self, state: State) -> set[str]:
        kind = state[0]
        if kind == "name":
            lead = {" "} if state[2] and self.leading_space else set()
            return lead | self._next_chars(state[1])
        if kind == "num":
            return set("0123456789-,)")
        if kind == "lit":
            return {state[1][0]}
        return {ITEM_SEP[0]} if kind == "after" else set()

    def _next_chars(self, prefix: str) -> set[str]:
        """The characters that follow ``prefix`` in some name head: one bisection per distinct character."""
        chars: set[str] = set()
        i = bisect_left(self.heads, prefix)
        while i < len(self.heads) and self.heads[i].startswith(prefix):
            if len(self.heads[i]) == len(prefix):
                i += 1
                continue
            char = self.heads[i][len(prefix)]
            chars.add(char)
            i = bisect_left(self.heads, prefix + char + "\U0010ffff", i)  # past every head with this next char
        return chars

    def allowed(self, state: State) -> torch.Tensor:
        """(V,) bool: the tokens that keep ``state`` completable (EOS where the string may end)."""
        mask = self._masks.get(state)
        if mask is None:
            mask = torch.zeros(self.vocab_size, dtype=torch.bool)
            if state[0] == "done":
                mask[:] = True  # finished rows are overwritten with pad by the sampler; any finite row will do
            for char in self._first_chars(state):
                for i in self.by_first.get(char, ()):
                    if self.advance(state, self.texts[i]) is not None:
                        mask[i] = True
            if state == ("name", "", True) or state == ("after",):
                mask[self.eos_id] = True
            if not mask.any():  # the vocabulary cannot spell what the state needs: leave the row unconstrained
                mask[:] = True
            if len(self._masks) * self.vocab_size < 64_000_000:  # number states carry the earlier values: bound it
                self._masks[state] = mask
        return mask

    # -- the Constraint interface ----------------------------------------------------------------------------
    def __call__(self, prefix: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        rows, k = prefix.shape
        if k == 0 or len(self._states) != rows:
            self._states = [("name", "", True)] * rows
            if k > 0:  # called mid-way without the earlier steps: replay the prefix
                for step in range(k):
                    self._advance_rows(prefix[:, step])
        else:
            self._advance_rows(prefix[:, -1])
        masks = torch.stack([self.allowed(s) for s in self._states]).to(logits.device)
        return logits.masked_fill(~masks, float("-inf"))

    def _advance_rows(self, tokens: torch.Tensor) -> None:
        for row, token in enumerate(tokens.tolist()):
            state = self._states[row]
            if state[0] == "done":
                continue
            if token == self.eos_id:
                self._states[row] = ("done",)
                continue
            text = self.texts[token] if 0 <= token < self.vocab_size else None
            nxt = None if text is None else self.advance(state, text)
            # a token the mask forbade (the caller sampled without the constraint): stop constraining this row
            self._states[row] = nxt if nxt is not None else ("done",)


def _spell(texts: Sequence[str | None], row: Sequence[int], stop: set[int]) -> str:
    """The string token ids spell by concatenating their texts (up to EOS / pad), one leading space dropped."""
    out = []
    for token in row:
        if token in stop:
            break
        out.append(texts[token] if texts[token] is not None else "\0")
    text = "".join(out)
    return text[1:] if text.startswith(" ") else text


def _candidate_texts(tokenizer: Any, vocab_size: int) -> list[list[str | None]]:
    """Per-id texts two ways: decoding each id alone (byte-level BPE), and the raw pieces with SentencePiece's
    word marker as a space (T5: decoding one id drops the space the piece carries)."""
    special = set(getattr(tokenizer, "all_special_ids", []))
    pieces = tokenizer.convert_ids_to_tokens(list(range(vocab_size)))
    decoded = [None if i in special else tokenizer.decode([i], clean_up_tokenization_spaces=False)
               for i in range(vocab_size)]
    marked = [None if i in special or p is None else p.replace("\u2581", " ") for i, p in enumerate(pieces)]
    return [decoded, marked]


#: how many training latents :func:`grammar_meta` checks the token texts against (callers may pass just these)
CHECK_ROWS = 256


def grammar_meta(latent: str, tokenizer: Any, vocab_size: int, names: Sequence[str], ids: np.ndarray,
                 strings: Sequence[str], check: int = CHECK_ROWS) -> dict[str, Any] | None:
    """What a trained model keeps to rebuild its grammar at sampling time, or None (no grammar for the type).

    The token texts are checked against the first ``check`` training latents: their ids (n, L) must spell
    ``strings`` token by token, since the grammar reads one token's text at a time. A tokenizer for which neither
    reading works gets no grammar (a warning says so) rather than a wrong one.
    """
    if latent not in item_formats() or not len(names) or not len(strings):
        return None
    stop = {tokenizer.pad_token_id, tokenizer.eos_token_id}
    rows = [[int(t) for t in row] for row in np.asarray(ids)[:check]]
    for texts in _candidate_texts(tokenizer, vocab_size):
        if all(_spell(texts, row, stop) == str(text) for row, text in zip(rows, strings, strict=False)):
            leading = any((texts[row[0]] or "").startswith(" ") for row in rows if row)
            return {"latent": latent, "names": [str(n) for n in names], "token_texts": texts,
                    "leading_space": leading}
    warnings.warn(f"prior_grammar: the {latent} latents' tokenizer does not spell its strings one token at a "
                  "time; this model samples its latents unconstrained", stacklevel=2)
    return None


def well_formed(meta: dict[str, Any], ids: np.ndarray, eos_id: int, pad_id: int) -> np.ndarray:
    """(n,) bool: which latent rows (n, L) end in EOS and parse under ``meta``'s format and names (an unfinished
    row, cut by the latent length, is not well formed)."""
    from kaleido.latents.formats import LatentFormatError, parse_latent

    out = np.zeros(len(ids), dtype=bool)
    for i, row in enumerate(np.asarray(ids).tolist()):
        if eos_id not in row:
            continue
        try:
            parse_latent(meta["latent"], _spell(meta["token_texts"], row, {eos_id, pad_id}), meta["names"])
        except LatentFormatError:
            continue
        out[i] = True
    return out


def from_meta(meta: dict[str, Any] | None, eos_id: int | None) -> Callable[[torch.Tensor, torch.Tensor],
                                                                            torch.Tensor] | None:
    """An :class:`ItemGrammar` from :func:`grammar_meta`'s record, or None (no record / no EOS token)."""
    if not meta or eos_id is None:
        return None
    return ItemGrammar(meta["latent"], meta["token_texts"], meta["names"], eos_id,
                       leading_space=bool(meta.get("leading_space", False)))

