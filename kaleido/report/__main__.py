"""``python -m kaleido.report``: see :mod:`kaleido.report.cli`."""

from kaleido.report.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
