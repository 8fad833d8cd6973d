"""A sqlite MLflow store that exists whole or not at all.

MLflow builds a new sqlite store in place: it creates the initial tables, then runs ~60 alembic migrations, and
sqlite applies their DDL outside one transaction. A process killed during those ~2 s leaves the database at an
intermediate revision, and every later open fails (``table review_queues already exists``,
``table _alembic_tmp_experiments already exists``, ``duplicate column name: ...``): one unlucky kill of the report
job broke every later report.

:func:`prepare_sqlite_store` therefore

- creates a missing (or zero-byte) database at a temporary name beside it and links it into place only once
  MLflow has built and verified the whole schema (``os.link``: never over a store another process finished first);
- removes the temporaries of killed creators on this host;
- checks an existing database read-only (its alembic revision against the installed MLflow's head). A database
  that is not at the head and holds no runs is damage from such a kill: it is moved aside to
  ``<db>.broken-<UTC time>`` with a warning and created afresh. One that holds runs is never touched; the
  :class:`~metrics.errors.InputError` names the file and the two ways out.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import socket
import sqlite3
import time
from pathlib import Path

from metrics.errors import InputError

log = logging.getLogger(__name__)

#: Name of a database being created, beside the final one (``{name}``: the final file's name).
CREATING_NAME = ".{name}.creating-{host}-{pid}"
#: Suffix of a damaged, run-less database moved out of the way.
BROKEN_SUFFIX = ".broken-{stamp}"
#: sqlite's side files of a database (rollback journal, WAL mode's log and shared memory).
_SIDE_SUFFIXES = ("-journal", "-wal", "-shm")


def head_revision() -> str:
    """The alembic revision the installed MLflow's tracking schema ends at."""
    from mlflow.store.db.utils import _get_latest_schema_revision

    return _get_latest_schema_revision()


def schema_state(db: Path) -> tuple[str | None, int]:
    """``(alembic revision or None, number of runs)`` of a sqlite MLflow store, read without changing it.

    Raises:
        InputError: ``db`` is not an sqlite database.
    """
    try:
        # read-write mode only so that sqlite can roll back a hot journal a killed writer left (what any opener,
        # MLflow included, does first); nothing here writes
        with contextlib.closing(sqlite3.connect(db)) as connection:
            tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            revision = None
            if "alembic_version" in tables:
                row = connection.execute("SELECT version_num FROM alembic_version").fetchone()
                revision = row[0] if row else None
            runs = connection.execute("SELECT count(*) FROM runs").fetchone()[0] if "runs" in tables else 0
    except sqlite3.DatabaseError as err:
        raise InputError(f"MLflow store {db}: not a readable sqlite database ({err}); move it aside or pass another "
                         "--tracking-uri") from None
    return revision, runs


def prepare_sqlite_store(db: Path, artifact_root: Path) -> None:
    """Make ``db`` a complete MLflow sqlite store at the installed MLflow's schema (see the module docstring).

    Args:
        db: the database file (its directory is created).
        artifact_root: MLflow's default artifact location for a store created here (its Default experiment's).

    Raises:
        InputError: ``db`` is not an sqlite database, or is not at the installed MLflow's schema and holds runs.
    """
    db.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_creations(db)
    if db.exists() and db.stat().st_size == 0:  # opened by sqlite and killed before its first page: no store
        db.unlink()
    if not db.exists():
        _create(db, artifact_root)
        return
    revision, runs = schema_state(db)
    head = head_revision()
    if revision == head:
        return
    if runs:
        raise InputError(
            f"MLflow store {db} is at schema revision {revision}, not the installed MLflow's {head}, and holds "
            f"{runs} runs; left untouched. If an older MLflow made it, back it up and run "
            f"`mlflow db upgrade sqlite:///{db.resolve()}`. If a killed job left it half-migrated, move it aside "
            f"(`mv {db} {db}.old`) and rerun: the report recreates every run from the results.")
    aside = db.with_name(db.name + BROKEN_SUFFIX.format(stamp=time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())))
    log.warning("MLflow store %s is at schema revision %s, not %s, and holds no runs (a creation that was killed "
                "half-way): moved aside to %s and created afresh", db, revision, head, aside)
    for suffix in ("", *_SIDE_SUFFIXES):
        if Path(f"{db}{suffix}").exists():
            os.replace(f"{db}{suffix}", f"{aside}{suffix}")
    _create(db, artifact_root)


def _create(db: Path, artifact_root: Path) -> None:
    """Build the whole schema at a temporary name beside ``db``, then link it to ``db`` unless another process
    finished first (whose store is then kept)."""
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    temp = db.with_name(CREATING_NAME.format(name=db.name, host=socket.gethostname(), pid=os.getpid()))
    _remove_with_side_files(temp)
    log.info("mlflow: creating the store %s", db)
    store = SqlAlchemyStore(f"sqlite:///{temp}", artifact_root.as_uri())
    store.engine.dispose()  # no pooled connection outlives the rename
    try:
        os.link(temp, db)
    except FileExistsError:
        log.info("mlflow: %s was created meanwhile by another process; keeping it", db)
    except OSError as err:  # a file system without hard links: rename, racing only with another creator
        if err.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP) or db.exists():
            raise
        os.replace(temp, db)
    finally:
        _remove_with_side_files(temp)


def remove_stale_creations(db: Path) -> list[Path]:
    """Remove this host's temporaries of ``db`` whose creating process is gone; return what was removed."""
    host = socket.gethostname()
    prefix = CREATING_NAME.format(name=db.name, host=host, pid="")
    removed = []
    for path in db.parent.glob(f"{prefix}*"):
        pid = path.name[len(prefix):]
        for suffix in _SIDE_SUFFIXES:
            pid = pid.removesuffix(suffix)
        if pid.isdigit() and not _process_alive(int(pid)):
            path.unlink(missing_ok=True)
            removed.append(path)
    if removed:
        log.info("mlflow: removed %d temporaries of killed store creations: %s", len(removed),
                 ", ".join(p.name for p in removed))
    return removed


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError as err:
        return err.errno == errno.EPERM  # exists, owned by someone else
    return True


def _remove_with_side_files(path: Path) -> None:
    for suffix in ("", *_SIDE_SUFFIXES):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
