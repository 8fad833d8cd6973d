"""The sqlite MLflow store survives a kill during its creation (real MLflow, real SIGKILL)."""

from __future__ import annotations

import logging
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from kaleido.report.sqlite_store import CREATING_NAME, head_revision, schema_state
from kaleido.report.tracking import make_client
from metrics.errors import InputError

#: Runs ``{create}`` on a store and SIGKILLs itself at its second DDL statement after MLflow's tenth alembic revision:
#: inside a migration whose first statements already landed, at the same place on every run. (A kill between two
#: migrations is harmless: MLflow goes on from the recorded revision.)
_KILL_MID_MIGRATION = textwrap.dedent("""
    import os, signal
    from sqlalchemy import event
    from sqlalchemy.engine import Engine
    revisions = statements = 0
    @event.listens_for(Engine, "before_cursor_execute")
    def kill_mid_migration(conn, cursor, statement, parameters, context, executemany):
        global revisions, statements
        sql = statement.lstrip().upper()
        if sql.startswith("UPDATE ALEMBIC_VERSION"):
            revisions, statements = revisions + 1, 0
        elif revisions >= 10 and sql.startswith(("CREATE", "ALTER", "DROP", "INSERT")):
            statements += 1
            if statements == 2:
                os.kill(os.getpid(), signal.SIGKILL)
    {create}
""")
_PLAIN_MLFLOW = "import mlflow; mlflow.MlflowClient({uri!r}).search_experiments()"
_HARNESS = "from kaleido.report.tracking import make_client; make_client({uri!r})"


def _killed(code: str) -> None:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == -9, done.stderr[-2000:]


def _uri(db: Path) -> str:
    return f"sqlite:///{db}"


def test_fresh_store_is_complete(tmp_path: Path) -> None:
    db = tmp_path / "results" / "mlflow.db"
    make_client(_uri(db)).search_experiments()
    assert schema_state(db) == (head_revision(), 0)
    assert sorted(p.name for p in db.parent.iterdir()) == ["mlflow.db"]  # no temporary left behind


def test_empty_file_becomes_a_complete_store(tmp_path: Path) -> None:
    db = tmp_path / "mlflow.db"
    db.touch()  # what sqlite leaves when its opener dies before writing the first page
    make_client(_uri(db)).search_experiments()
    assert schema_state(db) == (head_revision(), 0)


def test_half_migrated_store_is_rebuilt(tmp_path: Path, caplog) -> None:
    db = tmp_path / "mlflow.db"
    _killed(_KILL_MID_MIGRATION.format(create=_PLAIN_MLFLOW.format(uri=_uri(db))))  # MLflow's own in-place build
    revision, runs = schema_state(db)
    assert revision not in (None, head_revision()) and runs == 0
    reopened = subprocess.run([sys.executable, "-c", _PLAIN_MLFLOW.format(uri=_uri(db))], capture_output=True,
                              text=True)
    assert reopened.returncode != 0 and "OperationalError" in reopened.stderr  # the bug: the store stays broken
    damaged = db.read_bytes()

    with caplog.at_level(logging.WARNING, logger="kaleido.report.sqlite_store"):
        client = make_client(_uri(db))
    assert client.search_experiments()[0].name == "Default"
    assert schema_state(db) == (head_revision(), 0)
    aside = [p for p in tmp_path.iterdir() if p.name.startswith("mlflow.db.broken-")]
    assert len(aside) == 1 and aside[0].read_bytes() == damaged  # moved aside as it was, not deleted
    assert any(str(aside[0]) in record.getMessage() for record in caplog.records)


def test_killed_creation_leaves_no_store_and_its_temporary_is_removed(tmp_path: Path) -> None:
    db = tmp_path / "mlflow.db"
    _killed(_KILL_MID_MIGRATION.format(create=_HARNESS.format(uri=_uri(db))))
    assert not db.exists()
    (temporary,) = [p for p in tmp_path.iterdir() if p.name.startswith(".mlflow.db.creating-")]
    make_client(_uri(db)).search_experiments()
    assert schema_state(db) == (head_revision(), 0)
    assert not temporary.exists()


def test_live_creators_temporary_is_kept(tmp_path: Path) -> None:
    import socket

    db = tmp_path / "mlflow.db"
    live = tmp_path / CREATING_NAME.format(name=db.name, host=socket.gethostname(), pid=1)  # pid 1 always runs
    live.write_bytes(b"")
    make_client(_uri(db))
    assert live.exists() and db.exists()


def test_store_with_runs_at_another_revision_is_refused_untouched(tmp_path: Path) -> None:
    db = tmp_path / "mlflow.db"
    client = make_client(_uri(db))
    client.create_run(client.create_experiment("e"))
    client._tracking_client.store.engine.dispose()
    with sqlite3.connect(db) as connection:  # as an older MLflow (or a half-migration with runs) would leave it
        connection.execute("UPDATE alembic_version SET version_num = 'c48cb773bb87'")
    before = db.read_bytes()
    with pytest.raises(InputError, match=r"(?s)mlflow\.db is at schema revision c48cb773bb87.*holds 1 runs.*"
                                         r"mlflow db upgrade.*move it aside"):
        make_client(_uri(db))
    assert db.read_bytes() == before
    assert not [p for p in tmp_path.iterdir() if ".broken-" in p.name]


def test_non_database_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "mlflow.db"
    db.write_text("not a database\n" * 100)
    with pytest.raises(InputError, match="not a readable sqlite database"):
        make_client(_uri(db))
    assert db.read_text() == "not a database\n" * 100
