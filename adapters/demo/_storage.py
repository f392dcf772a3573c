"""``regulator demo --storage``: checked before the market phase, shown with only the password
hidden.

A value with ``://`` is an SQLAlchemy URL (Optuna's RDB storage): it must parse, name a dialect
SQLAlchemy knows, and that dialect's driver must import, so a missing driver is reported in one
line at once instead of a traceback after the whole market phase. Anything else is the path of
an Optuna journal file (``JournalStorage``), whose folder must exist.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from ...fsm import RegulatorError

__all__ = ["DRIVERS", "StorageError", "check_storage", "open_storage", "redact_storage"]

#: The driver package SQLAlchemy 2 imports for each database URL Optuna users write; also the
#: table in docs/demo.md.
DRIVERS = {
    "sqlite": ("sqlite3", "built into Python"),
    "postgresql": ("psycopg", 'pip install "psycopg[binary]"'),
    "postgresql+psycopg": ("psycopg", 'pip install "psycopg[binary]"'),
    "postgresql+psycopg2": ("psycopg2", "pip install psycopg2-binary"),
    "mysql": ("MySQLdb", "pip install mysqlclient"),
    "mysql+pymysql": ("pymysql", "pip install PyMySQL"),
}


class StorageError(RegulatorError, ValueError):
    """``--storage`` names a storage the demo cannot open."""


def redact_storage(storage: str) -> str:
    """``storage`` with its password, and nothing else, replaced by ``***`` (still a URL that
    parses, with every slash kept: ``sqlite:////abs/path`` stays as it is)."""
    if "://" not in storage:
        return storage
    parts = urlsplit(storage)
    userinfo, at, hostport = parts.netloc.rpartition("@")
    if not at or ":" not in userinfo:
        return storage
    user = userinfo.split(":", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{hostport}"))


def check_storage(storage: str) -> None:
    """Raise :class:`StorageError` (one line: argument, value, rule) unless it can be opened."""
    shown = redact_storage(storage)
    if "://" not in storage:
        parent = Path(storage).expanduser().resolve().parent
        if not parent.is_dir():
            raise StorageError(
                f"--storage: {shown!r} is taken as a journal file path, and its folder"
                f" {str(parent)!r} does not exist"
            )
        return
    try:
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError, NoSuchModuleError
    except ImportError:  # SQLAlchemy comes with Optuna
        raise StorageError(
            f"--storage: {shown!r} needs Optuna, which is not installed"
            ' (pip install "regulator[demo]")'
        ) from None

    try:
        url = make_url(storage)
    except (ArgumentError, ValueError) as exc:  # a bad port is a bare ValueError
        raise StorageError(
            f"--storage: {shown!r} is not a valid SQLAlchemy URL ({exc});"
            " give dialect+driver://user:password@host/db, or a journal file path"
        ) from None
    try:
        dialect = url.get_dialect()
    except NoSuchModuleError:
        raise StorageError(
            f"--storage: {shown!r} names the database {url.drivername!r}, which SQLAlchemy"
            f" does not know (for example: {', '.join(sorted(DRIVERS))})"
        ) from None
    try:
        dialect.import_dbapi()
    except ImportError as exc:
        module, install = DRIVERS.get(url.drivername, (exc.name or "?", ""))
        hint = f" ({install})" if install else ""
        raise StorageError(
            f"--storage: {shown!r} needs the database driver {module!r}, which is not"
            f" installed{hint}"
        ) from None
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        parent = Path(url.database).expanduser().resolve().parent
        if not parent.is_dir():
            raise StorageError(
                f"--storage: {shown!r}: the folder {str(parent)!r} of the SQLite file"
                " does not exist"
            )


def open_storage(storage: str) -> Any:
    """What ``optuna.create_study(storage=...)`` takes: the URL, or a ``JournalStorage``."""
    check_storage(storage)
    if "://" in storage:
        return storage
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    return JournalStorage(JournalFileBackend(str(Path(storage).expanduser())))
