"""Files written whole or not at all (a temporary file, then a rename); the project's folders."""

from __future__ import annotations

import csv
import io
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

from ._checks import SettingError

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def project_folder(name: str) -> Path:
    """The folder ``name`` (``results``, ``figures``, ``checkpoints``) of the project's checkout
    (``pyproject.toml`` beside the package), else ``name`` in the current folder."""
    return PROJECT_ROOT / name if (PROJECT_ROOT / "pyproject.toml").is_file() else Path(name)


@contextmanager
def atomic_path(path):
    """Yield a temporary path beside ``path`` (same suffix) to write; it replaces ``path`` when the
    block ends without an error, else it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        prefix=f".{path.stem}.", suffix=f".partial{path.suffix}", dir=path.parent
    )
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_atomic(path, text: str) -> None:
    """Write ``text`` to ``path`` whole or not at all (:func:`atomic_path`)."""
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        f.write(text)


def read_csv(path) -> list[dict]:
    """Rows of a CSV file, numbers as ints or floats and other values as text; ``[]`` when the file
    does not exist."""
    path = Path(path)
    if not path.exists():
        return []
    with open(path, newline="") as f:
        return [{k: _number(v) for k, v in row.items()} for row in csv.DictReader(f)]


def _number(v):
    for kind in (int, float):
        try:
            return kind(v)
        except (TypeError, ValueError):
            pass
    return v


def write_csv(path, rows: list[dict], columns=None) -> None:
    """Write ``rows`` to the CSV at ``path`` atomically; the columns are ``columns`` or every key
    in order of appearance (empty where a row has none)."""
    columns = list(columns or dict.fromkeys(k for r in rows for k in r))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: ("" if r.get(k) is None else r.get(k)) for k in columns} for r in rows)
    write_atomic(path, buf.getvalue())


def writable_dir(path, param: str = "output") -> Path:
    """Check that files can be written in the folder ``path`` (made and removed again when
    missing); a :class:`helpers._checks.SettingError` naming ``param`` otherwise."""
    path = Path(path)
    missing = [p for p in (path, *path.parents) if not p.exists()]
    try:
        path.mkdir(parents=True, exist_ok=True)
        tempfile.NamedTemporaryFile(prefix=".write-test.", dir=path).close()
    except OSError as exc:
        raise SettingError(
            param, str(path), f"is not a folder this user can write ({exc.strerror or exc})"
        ) from None
    finally:
        for folder in missing:  # deepest first
            if folder.is_dir():
                folder.rmdir()
    return path
