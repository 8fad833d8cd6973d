"""Latent extraction spread over jobs (``resources.latents.jobs``) through the real DAG: each job writes its data
shards' part files, the stage's last job only reads them and tokenizes, and the strings equal one call over the
whole set (a part does not depend on how the set was split)."""

from __future__ import annotations

import numpy as np
import pytest
import yaml
from dag_helpers import REPO, executed_rules, make_workdir, snakemake, tiny_shapes

from kaleido import config
from kaleido.latents import EXTRACTORS
from kaleido.latents.stage import image_context, job_shards
from metrics.errors import InputError
from metrics.io import load_npz
from metrics.store import load_data


def test_job_shards_split_the_shards_into_contiguous_blocks():
    assert [job_shards(7, k, 3) for k in range(3)] == [[0, 1, 2], [3, 4], [5, 6]]
    assert job_shards(2, 3, 4) == []  # more jobs than shards: the last ones own nothing
    with pytest.raises(InputError, match="--job 3 is outside 0..2"):
        job_shards(7, 3, 3)


def test_latent_jobs_apply_only_where_a_set_can_be_split(default_config):
    cfg = yaml.safe_load((REPO / "config" / "shapes.yaml").read_text())
    cfg["resources"] = {"latents": {"jobs": 3}}
    cfg = config.validate(cfg)
    exp = cfg["experiments"]["shapes"]
    assert config.latent_jobs(cfg, exp, "bbox") == 1  # shapes is not sharded
    exp["data"]["shard_size"] = 100
    assert config.latent_jobs(cfg, exp, "bbox") == 3
    with pytest.raises(Exception, match=r"resources.sample.jobs: only resources.latents takes `jobs`"):
        config.validate({**default_config, "resources": {"sample": {"jobs": 2}}})


@pytest.mark.slow
def test_latents_spread_over_jobs_equal_one_extraction(tmp_path):
    workdir = make_workdir(tmp_path)
    cfg = tiny_shapes(yaml.safe_load((REPO / "config" / "shapes.yaml").read_text()), edits=[])
    exp = cfg["experiments"]["shapes"]
    exp["data"].update(num_train=120, shard_size=40)  # 3 data shards over 2 jobs: [0, 1] and [2]
    exp["latents"] = {"bbox": {}}
    cfg["resources"] = {"latents": {"jobs": 2}}
    (workdir / "config" / "config.yaml").write_text(yaml.safe_dump(cfg))
    proc = snakemake(workdir, "--cores", "2", "results/shapes/latents/bbox.npz")
    assert sorted(executed_rules(proc)) == ["data", "latents", "latents_job", "latents_job"], executed_rules(proc)
    latents_dir = workdir / "results" / "shapes" / "latents"
    assert not list(latents_dir.glob("bbox.job-*.json")), "the job records are temporary"
    assert not list(latents_dir.glob("bbox.part-*.npz")), "the part files are removed once the token file is written"
    got = load_npz(latents_dir / "bbox.npz", required=("strings", "tokens"))
    data = load_data(workdir / "results" / "shapes" / "data" / "train.npz")
    whole = EXTRACTORS.get("bbox").extract_strings(np.asarray(data["x"]), image_context(data), {}, 0)
    # the seed is unused by the offline bbox extractor: its strings are a function of each image alone
    np.testing.assert_array_equal(got["strings"], whole.strings)
    log = (workdir / "results" / "shapes" / "logs" / "latents_bbox_job1-of-2.log")
    assert log.is_file()
