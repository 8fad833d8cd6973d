"""The feature stage: ``python -m kaleido.features --config C --experiment E --net N --out F.npz items.npz...``.

Runs :func:`metrics.extract.write_features` with the network options of the experiment's ``metrics`` block
(:func:`kaleido.config.feature_options`; ``--weights`` overrides the weights, as the DAG does for the in-DAG
``domain`` network; a Hugging Face repository there is read from the local cache, :mod:`kaleido.pretrained`) and
the config's ``weights`` rules (pinned digests, artifacts allowed unverified), and writes the arrays, chunk by chunk
(memory bounded by the chunk, not the set), with the harness's provenance, which holds the digest check of every
weight file used.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from kaleido import config
from kaleido.cli import load_stage_config, run_cli, stage_parser
from kaleido.pretrained import resolve
from kaleido.provenance import provenance
from metrics.extract import write_features
from metrics.features import FEATURE_NETS


def main(argv: Sequence[str] | None = None) -> None:
    parser = stage_parser(__doc__)
    parser.add_argument("--net", required=True, help="feature network name (metrics.features.FEATURE_NETS)")
    parser.add_argument("--weights", help="weight file/dir (default: the config's feature_weights for --net)")
    parser.add_argument("inputs", nargs="+", type=Path, help="input .npz files, concatenated in the given order")
    args = parser.parse_args(argv)
    cfg, exp = load_stage_config(args)
    opts = config.feature_options(exp, args.net)
    weights = args.weights or opts["feature_weights"]
    network = FEATURE_NETS.get(args.net)
    files, pinned = getattr(network, "files", ()), getattr(network, "weight_file", None)
    rules = cfg["weights"]
    write_features(
        args.out, args.net, args.inputs, lambda settings: provenance("kaleido.features", settings),
        weights=None if weights is None else resolve(weights, f"weights of {args.net}"),
        batch_size=opts["feature_batch_size"], device=opts["feature_device"], precision=opts["feature_precision"],
        weights_sha256=rules["sha256"].get(pinned) if pinned else None,
        allow_unverified=any(name in rules["allow_unverified"] for name in files), compile=opts["feature_compile"])


if __name__ == "__main__":
    run_cli(main)
