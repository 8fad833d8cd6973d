"""Does the AR latent prior learn the class? Prior-only training on the shapes bbox latents, on the CPU.

    python benchmarks/prior_class_study.py --order area --lr 1e-3 --steps 3000 [--num-train 6000]
    python benchmarks/prior_class_study.py --smoke      # 64 latents, 2 steps, one evaluation of 30 samples

Trains only Kaleido's T5 latent prior (``t5_tiny``, cross-attending to the frozen random-init T5 states of the
class name, as in ``config/shapes.yaml``) with Adam at ``--lr``, batch ``--batch`` (128), on the offline bbox latents
of ``--num-train`` shapes images listed in ``--order`` (``area``: largest object first; ``found``: top-to-bottom).
Every ``--eval-every`` steps it samples ``--eval-samples`` latents (300: 100 per class, temperature 1, under the bbox
grammar) and prints the share that parse and the class accuracy: how often the largest box of a sampled latent has
the class's shape (the shapes label is the shape of the largest object; on the training latents this reads 0.96).
Chance is 1/3.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import _smoke  # noqa: E402

from kaleido.data import DATASETS  # noqa: E402
from kaleido.latents import EXTRACTORS  # noqa: E402
from kaleido.latents import formats as fmt  # noqa: E402
from kaleido.latents import tokenizer as ltok  # noqa: E402
from kaleido.latents.grammar import from_meta, grammar_meta  # noqa: E402
from kaleido.latents.images import ImageContext  # noqa: E402
from kaleido.models.t5 import T5ContextEncoder, T5LatentPrior, t5_config  # noqa: E402

SMOKE = {"num_train": 64, "steps": 2, "eval_every": 2, "batch": 16, "eval_samples": 30}


def largest_shape(text: str, names: list[str]) -> str | None:
    """The shape word of the largest box of a bbox latent, or None (empty or malformed)."""
    try:
        boxes = fmt.parse_bbox(text, names)
    except fmt.LatentFormatError:
        return None
    return max(boxes, key=lambda b: b.area).name.split()[-1] if boxes else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--order", choices=("area", "found"), default="area")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--num-train", type=int, default=6000)
    parser.add_argument("--eval-every", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch", type=int, default=128, help="training batch")
    parser.add_argument("--eval-samples", type=int, default=300, help="latents sampled per evaluation")
    args = _smoke.parse_args(parser, SMOKE, argv)
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    data = DATASETS.get("shapes").generate({"name": "shapes", "num_train": args.num_train, "image_size": 32,
                                            "max_objects": 3, "label": "shape"}, 0)
    classes = [str(c) for c in data["class_names"]]
    found = EXTRACTORS.get("bbox").extract_strings(data["x"], ImageContext(data["labels"], classes),
                                                   {"order": args.order}, 0)
    strings, names = [str(s) for s in found.strings], found.names
    truth = np.mean([largest_shape(s, names) == classes[y] for s, y in zip(strings, data["labels"], strict=True)])
    print(f"{args.num_train} latents ({args.order} order), e.g. {strings[0]!r}; training latents whose largest "
          f"box has the class's shape: {truth:.3f}", flush=True)

    tok = ltok.build("offline", strings, [])
    ids, _ = ltok.encode(tok, strings)
    seq_len, vocab = ids.shape[1], len(tok)
    encoder = T5ContextEncoder({"encoder": "t5_tiny", "max_length": 4}, classes)
    states, mask = encoder(classes)
    prior = T5LatentPrior(t5_config("t5_tiny", vocab), vocab, encoder.dim, pad_id=tok.pad_token_id,
                          eos_id=tok.eos_token_id)
    grammar = from_meta(grammar_meta("bbox", tok, vocab, names, ids, strings), tok.eos_token_id)
    opt = torch.optim.Adam(prior.parameters(), lr=args.lr, betas=(0.9, 0.99), eps=1e-8)
    labels, tokens = torch.as_tensor(data["labels"]), torch.as_tensor(ids)
    gen = torch.Generator().manual_seed(0)
    started = time.perf_counter()
    for step in range(1, args.steps + 1):
        idx = torch.randint(0, args.num_train, (args.batch,), generator=gen)
        logits, _ = prior((states[labels[idx]], mask[labels[idx]]), tokens[idx])
        loss = prior.loss(logits, tokens[idx])
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(prior.parameters(), 1.0)
        opt.step()
        if step % args.eval_every == 0:
            prior.eval()
            y = torch.arange(args.eval_samples) % len(classes)
            with torch.no_grad():
                z, _ = prior.generate((states[y], mask[y]), seq_len, 1, torch.arange(args.eval_samples), 0,
                                      constraint=grammar)
            got = [largest_shape(t, names) for t in ltok.decode(tok, z.numpy())]
            parsed = np.mean([g is not None for g in got])
            accuracy = np.mean([g == classes[c] for g, c in zip(got, y.tolist(), strict=True)])
            print(f"step {step}: loss {loss.item():.3f}, sampled latents that parse {parsed:.3f}, class accuracy "
                  f"{accuracy:.3f} ({(time.perf_counter() - started) / step * 1000:.0f} ms/step)", flush=True)
            prior.train()
    return 0


if __name__ == "__main__":
    sys.exit(main())
