"""The prior-sampling grammar: real latent strings are never masked, and every string that ends is well formed.

Runs on the offline BPE tokenizer trained on random bbox / blob strings (the tokenizer the shapes latents use), with
random logits and with a random-init T5 prior through its real ``generate`` loop.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from kaleido.latents import formats, grammar
from kaleido.latents import tokenizer as tok
from kaleido.models.t5 import T5LatentPrior, t5_config

NAMES = [f"{c} {s}" for c in ("red", "green", "light blue") for s in ("circle", "square", "triangle")]


def _strings(latent: str, n: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        items = []
        for _ in range(rng.integers(1, 4)):
            name = NAMES[rng.integers(len(NAMES))]
            if latent == "bbox":
                x, y = np.sort(rng.integers(0, 1001, 2)), np.sort(rng.integers(0, 1001, 2))
                items.append(formats.Box(name, int(x[0]), int(y[0]), int(x[1]), int(y[1])))
            else:
                r = np.sort(rng.integers(0, 1001, 2))
                items.append(formats.Blob(name, *(int(v) for v in rng.integers(0, 1001, 2)), int(r[1]), int(r[0]),
                                          int(rng.integers(0, 180))))
        out.append(formats.format_bbox(items) if latent == "bbox" else formats.format_blob(items))
    return out


@pytest.fixture(scope="module", params=["bbox", "blob"])
def setup(request):
    latent = request.param
    strings = _strings(latent, 400)
    tokenizer = tok.build("offline", strings, [])
    ids, _ = tok.encode(tokenizer, strings)
    meta = grammar.grammar_meta(latent, tokenizer, len(tokenizer), NAMES, ids, strings)
    assert meta is not None and not meta["leading_space"]
    return latent, tokenizer, ids, meta


def _parses(latent: str, text: str) -> bool:
    try:
        formats.parse_latent(latent, text, NAMES)
    except formats.LatentFormatError:
        return False
    return True


def _random_draws(constraint, tokenizer, rows: int, steps: int, seed: int) -> list[str]:
    """Strings drawn token by token from random logits under ``constraint``; only those that reached EOS."""
    gen = torch.Generator().manual_seed(seed)
    prefix, done = torch.zeros(rows, 0, dtype=torch.int64), torch.zeros(rows, dtype=torch.bool)
    for _ in range(steps):
        logits = constraint(prefix, 3.0 * torch.randn(rows, len(tokenizer), generator=gen, dtype=torch.float64))
        choice = torch.multinomial(torch.softmax(logits, -1), 1, generator=gen)[:, 0]
        choice = torch.where(done, torch.full_like(choice, tokenizer.pad_token_id), choice)
        done |= choice == tokenizer.eos_token_id
        prefix = torch.cat([prefix, choice[:, None]], 1)
    return [t for t, d in zip(tok.decode(tokenizer, prefix.numpy()), done.tolist(), strict=True) if d]


def test_prefix_feasibility_matches_brute_force() -> None:
    for lo, hi in [(0, 1000), (37, 42), (0, 179), (-128, 127), (5, 5), (-7, -3), (3, 2)]:
        canonical = [str(n) for n in range(lo, hi + 1)]
        for length in range(5):
            for chars in itertools.product("-0123456789", repeat=length):
                prefix = "".join(chars)
                expected = any(s.startswith(prefix) for s in canonical)
                assert grammar._prefix_feasible(prefix, lo, hi) == expected, (prefix, lo, hi)


def test_real_strings_are_never_masked(setup) -> None:
    latent, tokenizer, ids, meta = setup
    constraint = grammar.from_meta(meta, tokenizer.eos_token_id)
    rows = torch.as_tensor(ids)
    for k in range(rows.shape[1]):
        out = constraint(rows[:, :k], torch.zeros(len(rows), len(tokenizer), dtype=torch.float64))
        real = rows[:, k]
        allowed = torch.isfinite(out[torch.arange(len(rows)), real])
        assert bool((allowed | (real == tokenizer.pad_token_id)).all()), f"a real token is masked at step {k}"


def test_random_logits_give_only_well_formed_strings(setup) -> None:
    latent, tokenizer, _, meta = setup
    constraint = grammar.from_meta(meta, tokenizer.eos_token_id)
    rows = 300
    finished = _random_draws(constraint, tokenizer, rows, steps=60, seed=0)
    assert len(finished) > rows // 4  # measured: 256 of 500 for bbox at 70 steps
    assert all(_parses(latent, t) for t in finished), [t for t in finished if not _parses(latent, t)][:3]
    # unconstrained, the same random logits almost never write a valid string: the grammar does the work
    gen = torch.Generator().manual_seed(0)
    unconstrained = torch.multinomial(torch.softmax(torch.randn(rows, len(tokenizer), generator=gen), -1), 20,
                                      replacement=True, generator=gen)
    assert sum(_parses(latent, t) and t != "" for t in tok.decode(tokenizer, unconstrained.numpy())) == 0


def test_prior_generate_with_grammar_is_well_formed_and_batch_independent(setup) -> None:
    latent, tokenizer, _, meta = setup
    torch.manual_seed(0)
    vocab = len(tokenizer)
    prior = T5LatentPrior(t5_config("t5_tiny", vocab), vocab, enc_dim=16, pad_id=tokenizer.pad_token_id,
                          eos_id=tokenizer.eos_token_id).eval()
    ctx = (torch.randn(32, 3, 16), torch.ones(32, 3, dtype=torch.bool))
    index = torch.arange(32)

    def draw(rows: slice) -> torch.Tensor:
        constraint = grammar.from_meta(meta, tokenizer.eos_token_id)
        return prior.sample((ctx[0][rows], ctx[1][rows]), 64, seed=1, index=index[rows], stream=0,
                            top_p=0.95, constraint=constraint)

    ids = draw(slice(0, 32))
    assert torch.equal(torch.cat([draw(slice(0, 5)), draw(slice(5, 32))]), ids)
    texts = tok.decode(tokenizer, ids.numpy())
    ended = (ids == tokenizer.eos_token_id).any(1).tolist()
    nonempty = sum(bool(e and t) for t, e in zip(texts, ended, strict=True))
    assert nonempty >= 5, texts  # measured: 11 of 32 (bbox), 14 (blob)
    assert all(_parses(latent, t) for t, e in zip(texts, ended, strict=True) if e)


def _sentencepiece_tokenizer(strings: list[str]):
    """A T5-style tokenizer: unigram pieces with the word marker (Metaspace), </s> appended."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    spm = Tokenizer(models.Unigram())
    spm.pre_tokenizer = pre_tokenizers.Metaspace()
    spm.decoder = decoders.Metaspace()
    spm.train_from_iterator(strings, trainers.UnigramTrainer(vocab_size=300, special_tokens=["<pad>", "</s>", "<unk>"],
                                                             unk_token="<unk>", show_progress=False))
    spm.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=spm, pad_token="<pad>", eos_token="</s>", unk_token="<unk>")


def test_sentencepiece_pieces_carry_the_space_decoding_drops() -> None:
    """T5's tokenizer decodes '\u2581red' alone as 'red': the grammar reads the pieces instead, and the string may
    open with the marker's space; sampled strings still parse after the tokenizer's own decoding."""
    strings = _strings("bbox", 300)
    tokenizer = _sentencepiece_tokenizer(strings)
    ids, _ = tok.encode(tokenizer, strings)
    meta = grammar.grammar_meta("bbox", tokenizer, len(tokenizer), NAMES, ids, strings)
    assert meta is not None and meta["leading_space"]
    finished = _random_draws(grammar.from_meta(meta, tokenizer.eos_token_id), tokenizer, 200, steps=60, seed=1)
    assert len(finished) > 20 and all(_parses("bbox", t) for t in finished)


def test_a_tokenizer_that_cannot_spell_token_by_token_gets_no_grammar(setup) -> None:
    latent, tokenizer, ids, _ = setup
    shuffled = ids[:, ::-1].copy()  # these ids do not spell the strings: no reading of the vocabulary fits
    with pytest.warns(UserWarning, match="samples its latents unconstrained"):
        assert grammar.grammar_meta(latent, tokenizer, len(tokenizer), NAMES, shuffled, _strings(latent, 400)) is None


def test_well_formed_flags(setup) -> None:
    latent, tokenizer, ids, meta = setup
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    assert grammar.well_formed(meta, ids, eos, pad).all()  # the training latents themselves
    cut = ids.copy()
    cut[0, :] = np.where(cut[0] == eos, pad, cut[0])  # no EOS: unfinished
    digit = tokenizer.convert_tokens_to_ids("9")
    bracket = int(np.flatnonzero(np.array(tokenizer.convert_ids_to_tokens(list(ids[1]))) == ")")[0])
    cut[1, bracket - 1] = digit  # a number grows a digit: 4 digits over 1000, or a corner out of order, or fine
    flags = grammar.well_formed(meta, cut, eos, pad)
    assert not flags[0] and flags[2:].all()
    assert flags[1] == _parses(latent, tok.decode(tokenizer, cut[1:2])[0])


def test_types_without_a_grammar_are_left_unconstrained() -> None:
    assert grammar.grammar_meta("color", None, 10, NAMES, np.zeros((1, 1)), [""]) is None
    assert grammar.grammar_meta("bbox", None, 10, NAMES, np.zeros((0, 1)), []) is None  # nothing to check against
    assert grammar.from_meta(None, 1) is None
    with pytest.raises(ValueError, match="no grammar for latent type 'voken'"):
        grammar.ItemGrammar("voken", ["a"], NAMES, 1)


def test_an_open_vocabulary_of_caption_nouns_is_looked_up_by_prefix():
    """``queries: caption_nouns`` (config/cc12m.yaml) gives hundreds of thousands of names: the grammar finds the
    characters a name prefix may continue with by bisection, with the same answers as a scan of every name."""
    rng = np.random.default_rng(0)
    letters = list("abcdefghijklmnopqrstuvwxyz")
    names = sorted({" ".join("".join(rng.choice(letters, rng.integers(2, 8))) for _ in range(rng.integers(1, 3)))
                    for _ in range(50_000)})
    texts = [None, None, *letters, " ", "(", ")", ",", ";", *map(str, range(10)), "ab", "cat"]
    g = grammar.ItemGrammar("bbox", texts, names, eos_id=0)
    for prefix in ["", "a", "ab", "q", "zz", "zzzzzzzz", names[123][:3], names[123], names[123] + " ("]:
        scan = {h[len(prefix)] for h in g.heads if h.startswith(prefix) and len(h) > len(prefix)}
        assert g._next_chars(prefix) == scan, prefix
    state = ("name", "", True)
    for char in names[123]:  # every character of a known name is allowed, and the name then takes its numbers
        assert g.allowed(state)[texts.index(char)]
        state = g._step(state, char)
    assert g._step(g._step(state, " "), "(") == ("num", 0, "", ())
    assert g._step(("name", "", False), "9") is None  # no name starts with a digit
