"""T5 building blocks for Kaleido: the frozen context encoder and the autoregressive latent prior (T5 decoder).

Tiny configs are randomly initialised from a seeded :class:`transformers.T5Config` (no download); the paper's
configs (``t5-xl``) load from a local directory or the local Hugging Face cache only, with a clear error if absent.
The prior is either a random-init size or the decoder of a pretrained T5 / Flan-T5 checkpoint with its vocabulary
resized to the latent tokenizer's (:func:`build_t5_prior`).

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
from kaleido.models.t5_sizes import DEFAULT_PRIOR, T5_SIZES, prior_source
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


def pretrained_t5_config(name: str) -> Any:
    """The T5Config of checkpoint ``name`` (a save_pretrained directory or a local HF name; config.json only)."""
    from transformers import AutoConfig, T5Config

    try:
        config = AutoConfig.from_pretrained(resolve(name, "T5 prior"), local_files_only=True)
    except (OSError, ValueError) as err:
        raise _hf_missing(name, "T5 prior checkpoint", err) from None
    if not isinstance(config, T5Config):
        raise ConfigError(f"prior.pretrained {name!r} is a {config.model_type!r} model; accepted: a T5 / Flan-T5 "
                          "checkpoint (model_type 't5', e.g. google/flan-t5-xl or google-t5/t5-large)")
    return config


def scales_decoder_output(config: Any) -> bool:
    """Whether T5 multiplies the decoder's output by d_model**-0.5 before the LM head: T5 v1.0 (whose LM head is its
    tied input embedding) does, T5 v1.1 / Flan-T5 (untied) do not. transformers >= 5 records this as
    ``scale_decoder_outputs`` and always reports ``tie_word_embeddings``; earlier versions read it from
    ``tie_word_embeddings``."""
    return bool(getattr(config, "scale_decoder_outputs", config.tie_word_embeddings))


def resize_rows(weight: torch.Tensor, rows: int) -> torch.Tensor:
    """An embedding / LM-head matrix (V, d) resized to (rows, d): row i < min(V, rows) is row i of ``weight``; rows
    past V are the mean of all V rows (what HF's ``resize_token_embeddings(mean_resizing=True)`` draws them around,
    without its 1e-9-scaled noise, so the result is the same whatever the seed)."""
    out = weight.new_empty(rows, weight.shape[1])
    kept = min(rows, weight.shape[0])
    out[:kept] = weight[:kept]
    out[kept:] = weight.mean(dim=0, dtype=torch.float64).to(weight.dtype)
    return out


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
    tokens); ``enc_dim``: width of the encoder states (projected to d_model when different, else the identity).
    Token ``config.decoder_start_token_id`` starts every sequence; ``pad_id`` marks padding after EOS. The decoder's
    output is scaled by d_model**-0.5 before the LM head where the config says so (:func:`scales_decoder_output`).
    :meth:`from_pretrained` starts it from a T5 / Flan-T5 checkpoint's decoder.
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
        self.output_scale = self.dim ** -0.5 if scales_decoder_output(cfg) else 1.0

    @classmethod
    def from_pretrained(cls, name: str, vocab_size: int, enc_dim: int, pad_id: int = 0, eos_id: int | None = 1,
                        load_weights: bool = True) -> T5LatentPrior:
        """The decoder of T5 / Flan-T5 checkpoint ``name`` (a save_pretrained directory or a local HF name, read
        with ``local_files_only``), its vocabulary resized to ``vocab_size`` rows (:func:`resize_rows`: ids the
        checkpoint has rows for keep them, the latent tokenizer's further ids start at the mean row).

        Takes the decoder blocks and final layer norm, the shared embedding (the decoder's input embedding) and the
        LM head. A checkpoint whose LM head is its embedding (T5 v1.0: it scales the decoder output) keeps them
        one tied parameter; T5 v1.1 / Flan-T5 keep two. Dropout is off, as in the random-init sizes: the training
        loop's draws are a function of (seed, step), and dropout's would come from the global generator.
        ``load_weights=False`` reads config.json only: the same architecture, randomly initialised, for a state
        dict to fill (sampling, resuming).
        """
        config = pretrained_t5_config(name)
        config.dropout_rate = 0.0
        prior = cls(config, vocab_size, enc_dim, pad_id=pad_id, eos_id=eos_id)
        if scales_decoder_output(config):  # T5 v1.0: tied input and output embeddings
            prior.lm_head.weight = prior.decoder.embed_tokens.weight
        if load_weights:
            prior._load_checkpoint(name)
        return prior

    @property
    def tied(self) -> bool:
        """Whether the LM head is the decoder's input embedding (one parameter)."""
        return self.lm_head.weight is self.decoder.embed_tokens.weight

    @torch.no_grad()
    def _load_checkpoint(self, name: str) -> None:
        """Copy the decoder stack, embedding (V_ckpt, d) and LM head (V_ckpt, d) of checkpoint ``name`` in, resized
        to (vocab_size, d)."""
        from transformers import T5ForConditionalGeneration

        try:
            source = T5ForConditionalGeneration.from_pretrained(resolve(name, "T5 prior"), local_files_only=True)
        except (OSError, ValueError) as err:
            raise _hf_missing(name, "T5 prior weights", err) from None
        stack = {k: v for k, v in source.decoder.state_dict().items() if not k.startswith("embed_tokens.")}
        missing, unexpected = self.decoder.load_state_dict(stack, strict=False)
        if unexpected or set(missing) != {"embed_tokens.weight"}:
            raise InputError(f"prior.pretrained {name!r}: its decoder does not fit the T5 decoder its config.json "
                             f"describes (missing {sorted(set(missing) - {'embed_tokens.weight'})}, unexpected "
                             f"{sorted(unexpected)}); accepted: a T5 / Flan-T5 checkpoint written by save_pretrained")
        self.decoder.embed_tokens.weight.copy_(resize_rows(source.get_input_embeddings().weight, self.vocab_size))
        if not self.tied:
            self.lm_head.weight.copy_(resize_rows(source.get_output_embeddings().weight, self.vocab_size))

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
        return self.lm_head(h[:, :-1] * self.output_scale), h[:, 1:]

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
            logits = self.lm_head(h * self.output_scale).double() / temperature
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


def build_t5_prior(arch: dict[str, Any], vocab_size: int, enc_dim: int, load_weights: bool = True) -> T5LatentPrior:
    """The AR prior of image model ``arch``: ``arch["prior"]`` (default ``{"size": "t5_tiny"}``) is ``{size: a
    T5_SIZES name}`` (random init from ``prior_seed``) or ``{pretrained: a T5 / Flan-T5 checkpoint}`` (its decoder
    stack and LM head, vocabulary resized to ``vocab_size``; ``load_weights=False`` builds the same architecture from
    the checkpoint's config.json only, for a model whose weights come from a state dict). ``pad_id`` / ``eos_id``
    of the latent tokenizer come from ``arch`` (default 0 / 1)."""
    kind, name = prior_source(arch.get("prior", DEFAULT_PRIOR), "model.prior")
    pad_id, eos_id = int(arch.get("pad_id", 0)), arch.get("eos_id", 1)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(arch.get("prior_seed", 0)))
        if kind == "size":
            return T5LatentPrior(t5_config(name, vocab_size), vocab_size, enc_dim, pad_id=pad_id, eos_id=eos_id)
        return T5LatentPrior.from_pretrained(name, vocab_size, enc_dim, pad_id=pad_id, eos_id=eos_id,
                                             load_weights=load_weights)
