"""Materialise an experiment's training set: ``python -m kaleido.data --config C --experiment E --out train.npz``.

With ``data.shard_size`` the images go to checksummed shard files beside ``train.npz`` (:mod:`metrics.store`).
"""

from __future__ import annotations

from collections.abc import Sequence

from kaleido import config
from kaleido.cli import load_stage_config, run_cli, stage_parser
from kaleido.data import DATASETS
from kaleido.provenance import provenance
from kaleido.seeding import derive_seed
from metrics.store import save_data


def main(argv: Sequence[str] | None = None) -> None:
    args = stage_parser(__doc__).parse_args(argv)
    cfg, exp = load_stage_config(args)
    spec = config.stage_spec(cfg, args.experiment, "data")
    arrays = DATASETS.get(exp["data"]["name"]).generate(exp["data"], derive_seed(args.experiment, exp["seed"], "data"))
    save_data(args.out, arrays, provenance("kaleido.data", spec), exp["data"].get("shard_size"))


if __name__ == "__main__":
    run_cli(main)
