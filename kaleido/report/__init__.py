"""Report stage: turn per-run metric JSON files into ``table1``, figures and one MLflow run per key.

Modules, one job each:

- :mod:`~kaleido.report.collect`  -- read and validate metric / extra JSON files, run keys, sort order
- :mod:`~kaleido.report.samples`  -- read the first points of a run's 2-D sample shards (toy data)
- :mod:`~kaleido.report.table`    -- ``table1.csv`` / ``table1.md``
- :mod:`~kaleido.report.style`    -- matplotlib style, method colours/markers/labels, atomic PNG+PDF saving
- :mod:`~kaleido.report.figures`  -- FD/recall-vs-guidance, toy-mode grid (paper fig. 3), per-run scatter
- :mod:`~kaleido.report.tracking` -- idempotent MLflow sync (the only MLflow writer of the harness)
- :mod:`~kaleido.report.cli`      -- ``python -m kaleido.report``

The package deliberately does not import torch.
"""
