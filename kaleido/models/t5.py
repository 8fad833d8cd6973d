"""T5 building blocks for Kaleido: the frozen context encoder and the autoregressive latent prior (T5 decoder).

Tiny configs are randomly initialised from a seeded :class:`transformers.T5Config` (no download); the paper's
configs (``t5-xl``) load from a local directory or the local Hugging Face cache only, with a clear error if absent.

Shapes: texts list[str] of length B; encoder states (B, S, C_enc) float32; mask (B, S) bool (True = real token);
latent token ids (B, L) int64 in [0, vocab_size).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from kaleido.errors import ConfigError
from kaleido.models.conditioning import filter_logits
from kaleido.models.t5_sizes import T5_SIZES
from kaleido.pretrained import resolve
from kaleido.rng import counter_uniform
from metrics.errors import InputError

# A constraint maps (prefix ids (B, k), logits (B, V) float64) -> logits with forbidden tokens set to -inf.
Constraint = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _hf_missing(name: str, what: str, err: Exception) -> InputError:
    return InputError(f"{what} {name!r} not found locally ({type(err).__name__}: {err}). Pass a directory written "
                      f"by save_pretrained, or fetch it once on a host with internet (`python -m kaleido.weights "
                      f"fetch --config C`, or huggingface-cli download {name}) into the Hugging Face cache (HF_HOME / "
                      "~/.cache/huggingface); nothing is downloaded here")


def load_tokenizer(name_or_path: str) -> Any:
    """A fast tokenizer from a save_pretrained directory or the local HF cache (``local_files_only``)."""
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(resolve(name_or_path, "tokenizer"), local_files_only=True)
    except (OSError, ValueError) as err:
        raise _hf_missing(name_or_path, "tokenizer", err) from None
    if tok.pad_token_id is None:
        raise InputError(f"tokenizer {name_or_path!r} has no pad token; save it with pad_token set")
    return tok


def t5_config(size: str, vocab_size: int, **overrides: Any) -> Any:
    """A T5Config for a random-init size of :data:`T5_SIZES`."""
    from transformers import T5Config

    if size not in T5_SIZES:
        raise ConfigError(f"unknown random T5 size {size!r}; choose one of {sorted(T5_SIZES)}")
    return T5Config(vocab_size=vocab_size, dropout_rate=0.0, feed_forward_proj="gated-gelu",
                    pad_token_id=0, eos_token_id=1, decoder_start_token_id=0, **{**T5_SIZES[size], **overrides})


def build_t5_encoder(spec: dict[str, Any], vocab_size: int) -> Any:
    """``spec["encoder"]``: a :data:`T5_SIZES` name (random init from ``spec["seed"]``) or a pretrained name/dir."""
    from transformers import T5EncoderModel

    name = spec.get("encoder", "t5_tiny")
    if name in T5_SIZES:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(spec.get("seed", 0)))
            return T5EncoderModel(t5_config(name, vocab_size))
    try:
        return T5EncoderModel.from_pretrained(resolve(name, "T5 encoder"), local_files_only=True)
    except (OSError, ValueError) as err:
        raise _hf_missing(name, "T5 encoder weights", err) from None


class T5ContextEncoder(nn.Module):
    """Frozen T5 encoder over class names or captions: texts -> (states (B, S, C), mask (B, S) bool).

    spec keys: ``encoder`` (T5_SIZES name or pretrained name/dir, default "t5_tiny"), ``tokenizer`` (a
    save_pretrained dir / local HF name, or ``"offline"`` (default): a BPE trained on ``texts``, the class names, so
    a randomly initialised encoder needs no file; deterministic, rebuilt identically at sampling), ``max_length``
    (default 32), ``seed`` (random-init seed, default 0).
    """

    def __init__(self, spec: dict[str, Any], texts: list[str] | None = None) -> None:
        super().__init__()
        name = spec.get("tokenizer", "offline")
        if name == "offline":
            from kaleido.latents.tokenizer import build_offline

            if not texts:
                raise ConfigError("context tokenizer 'offline' is built from the class names; none were given "
                                  "(set context.tokenizer to a save_pretrained directory or local HF name)")
            self.tokenizer = build_offline(texts)
        else:
            self.tokenizer = load_tokenizer(name)
        self.max_length = int(spec.get("max_length", 32))
        self.encoder = build_t5_encoder(spec, len(self.tokenizer)).eval().requires_grad_(False)
        self.dim = int(self.encoder.config.d_model)

    def train(self, mode: bool = True) -> T5ContextEncoder:  # frozen: always eval (no dropout)
        super().train(mode)
        self.encoder.eval()
        return self

    @torch.no_grad()
    def forward(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        if isinstance(texts, str) or not all(isinstance(s, str) for s in texts):
            raise InputError(f"T5ContextEncoder needs a list of strings, got {type(texts).__name__}")
        batch = self.tokenizer(list(texts), padding="max_length", truncation=True, max_length=self.max_length,
                               return_tensors="pt")
        dev = next(self.encoder.parameters()).device
        ids, mask = batch["input_ids"].to(dev), batch["attention_mask"].to(dev)
        states = self.encoder(input_ids=ids, attention_mask=mask).last_hidden_state
        return states * mask[..., None], mask.bool()


class T5LatentPrior(nn.Module):
    """p_AR(z | c): a T5 decoder stack + LM head over latent token ids, cross-attending to encoder states.

    ``config``: a T5Config (its ``vocab_size`` is replaced by ``vocab_size``, the latent tokenizer's size incl. added
    tokens); ``enc_dim``: width of the encoder states (projected to d_model when different). Token
    ``config.decoder_start_token_id`` starts every sequence; ``pad_id`` marks padding after EOS.
    """

    def __init__(self, config: Any, vocab_size: int, enc_dim: int, pad_id: int = 0, eos_id: int | None = 1) -> None:
        super().__init__()
        import copy

        from transformers.models.t5.modeling_t5 import T5Stack

        cfg = copy.deepcopy(config)
        cfg.vocab_size, cfg.is_decoder, cfg.use_cache, cfg.is_encoder_decoder = vocab_size, True, False, False
        cfg.num_layers = getattr(cfg, "num_decoder_layers", None) or cfg.num_layers
        self.config, self.vocab_size, self.pad_id, self.eos_id = cfg, vocab_size, pad_id, eos_id
        self.start_id = int(cfg.decoder_start_token_id if cfg.decoder_start_token_id is not None else pad_id)
        self.decoder = T5Stack(cfg)
        self.enc_proj = nn.Linear(enc_dim, cfg.d_model) if enc_dim != cfg.d_model else nn.Identity()
        self.lm_head = nn.Linear(cfg.d_model, vocab_size, bias=False)
        self.dim = int(cfg.d_model)

    def _decode(self, context: tuple[torch.Tensor, torch.Tensor], inp: torch.Tensor) -> torch.Tensor:
        states, mask = context
        attn = torch.ones_like(inp)
        return self.decoder(input_ids=inp, attention_mask=attn, encoder_hidden_states=self.enc_proj(states),
                            encoder_attention_mask=mask.long()).last_hidden_state

    def _cached_step(self, context: tuple[torch.Tensor, torch.Tensor]) -> Callable[[torch.Tensor], torch.Tensor]:
        """A decoding step that feeds only the newest id of the prefix (B, k+1) and returns its state (B, d)."""
        from transformers.cache_utils import DynamicCache, EncoderDecoderCache

        states, mask = context
        enc, enc_mask = self.enc_proj(states), mask.long()
        cache = EncoderDecoderCache(DynamicCache(), DynamicCache())

        def step(prefix: torch.Tensor) -> torch.Tensor:
            out = self.decoder(input_ids=prefix[:, -1:], encoder_hidden_states=enc, encoder_attention_mask=enc_mask,
                               past_key_values=cache, use_cache=True)
            return out.last_hidden_state[:, -1]

        return step

    def forward(self, context: tuple[torch.Tensor, torch.Tensor], tokens: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """Teacher forcing: next-token logits (B, L, V) for z_1..z_L and final-layer states (B, L, d) at z_1..z_L."""
        start = torch.full((tokens.shape[0], 1), self.start_id, dtype=torch.int64, device=tokens.device)
        h = self._decode(context, torch.cat([start, tokens], dim=1))  # (B, L+1, d)
        scale = self.dim ** -0.5 if self.config.tie_word_embeddings else 1.0
        return self.lm_head(h[:, :-1] * scale), h[:, 1:]

    def loss(self, logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """L_AR: mean cross-entropy over non-pad target tokens (the first pad after the text counts as EOS-less)."""
        return F.cross_entropy(logits.flatten(0, 1), tokens.flatten(), ignore_index=self.pad_id)

    @torch.no_grad()
    def generate(self, context: tuple[torch.Tensor, torch.Tensor], seq_len: int, seed: int, index: torch.Tensor,
                 stream: int, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0,
                 constraint: Constraint | None = None, use_cache: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """Sample z (B, seq_len) and return (ids, final-layer states (B, seq_len, d)).

        Token k of sample i is an inverse-CDF draw with uniform (seed, index[i], stream, k), so each row depends only
        on its own counters (batch-size independent). After EOS a row is filled with ``pad_id``. ``constraint``
        masks the logits given the prefix so callers can force well-formed strings. ``use_cache`` keeps the
        self- and cross-attention keys/values between steps (O(L) decoder work instead of O(L^2)); the returned
        states always come from one teacher-forced pass over the sampled ids, so they do not depend on it.
        """
        if temperature <= 0:
            raise ConfigError(f"prior temperature must be > 0, got {temperature}")
        b, dev = context[0].shape[0], context[0].device
        ids = torch.full((b, 1), self.start_id, dtype=torch.int64, device=dev)
        done = torch.zeros(b, dtype=torch.bool, device=dev)
        step = self._cached_step(context) if use_cache else (lambda prefix: self._decode(context, prefix)[:, -1])
        for k in range(seq_len):
            h = step(ids)
            scale = self.dim ** -0.5 if self.config.tie_word_embeddings else 1.0
            logits = self.lm_head(h * scale).double() / temperature
            if constraint is not None:
                logits = constraint(ids[:, 1:], logits)
            probs = torch.softmax(filter_logits(logits, top_k, top_p), dim=-1)
            u = counter_uniform(seed, index, stream, k, 1).to(dev)
            choice = torch.searchsorted(torch.cumsum(probs, dim=-1), u).clamp_(max=self.vocab_size - 1)
            choice = torch.where(done[:, None], torch.full_like(choice, self.pad_id), choice)
            if self.eos_id is not None:
                done |= choice[:, 0] == self.eos_id
            ids = torch.cat([ids, choice], dim=1)
        tokens = ids[:, 1:]
        return tokens, self.forward(context, tokens)[1]

    def sample(self, context: tuple[torch.Tensor, torch.Tensor], seq_len: int, seed: int, index: torch.Tensor,
               stream: int, temperature: float = 1.0, **kwargs: Any) -> torch.Tensor:
        """Token ids only (the toy LatentPrior.sample signature)."""
        return self.generate(context, seq_len, seed, index, stream, temperature, **kwargs)[0]
