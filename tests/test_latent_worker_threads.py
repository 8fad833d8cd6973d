"""The latents stage's worker processes run one OpenMP / BLAS thread each, including runtimes loaded after the
worker started (scikit-learn's OpenMP, loaded by the ``color`` latent's k-means): with Snakemake's
``OMP_NUM_THREADS`` = all cores in every worker, 16 workers ran 16 k-means threads each on 16 cores."""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor

import numpy as np

from kaleido.latents.stage import _one_thread


def _threads_after_color_extraction() -> dict[str, int]:
    from threadpoolctl import threadpool_info

    from kaleido.latents.color import dominant_colors

    image = np.repeat(np.arange(48, dtype=np.uint8).reshape(4, 4, 3), 8, axis=0).repeat(8, axis=1)
    dominant_colors(image, 4, 8, seed=0)
    return {info["internal_api"]: info["num_threads"] for info in threadpool_info()}


def test_workers_keep_one_thread_in_runtimes_loaded_later(monkeypatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "8")  # what Snakemake exports for a job of 8 threads
    with ProcessPoolExecutor(1, initializer=_one_thread) as pool:
        threads = pool.submit(_threads_after_color_extraction).result()
    assert "openmp" in threads, threads  # scikit-learn's k-means loaded its OpenMP runtime in the worker
    assert set(threads.values()) == {1}, threads
    assert os.environ["OMP_NUM_THREADS"] == "8"  # the stage's own process is left as it was
