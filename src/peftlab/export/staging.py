"""Write export folders atomically: everything goes to hidden staging folders, renamed into place at the end.

A failed export leaves nothing behind (not even the parent folders it created); a destination that exists is
replaced only when it is empty or an earlier peftlab export (it holds `peftlab_export.json`), never otherwise.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from peftlab.errors import PeftlabError

EXPORT_FILE = "peftlab_export.json"  # in every export folder: what was exported, from where, with which numbers


def check_destination(path: Path, flag: str) -> None:
    """PeftlabError, before anything is written, when `path` cannot take an export."""
    if path.exists() and not path.is_dir():
        raise PeftlabError(f"{flag} {path} is a file; pass a folder (it is created if missing)")
    if path.is_dir() and any(path.iterdir()) and not (path / EXPORT_FILE).is_file():
        raise PeftlabError(f"{flag} {path} exists and is not an earlier peftlab export; pass a new or empty folder")
    for parent in path.absolute().parents:
        if parent.exists():
            if not parent.is_dir() or not os.access(parent, os.W_OK):
                raise PeftlabError(f"{flag} {path}: cannot write into {parent}")
            break


class Staging:
    """Staging folders for several destinations; `publish` renames them all into place, `close` cleans up."""

    def __init__(self) -> None:
        self._staged: dict[Path, Path] = {}  # final -> staging
        self._created_parents: list[Path] = []
        self._published = False

    def folder(self, final: Path) -> Path:
        final = Path(final).absolute()
        missing = [p for p in [final.parent, *final.parent.parents] if not p.exists()]
        if missing:
            self._created_parents.append(missing[-1])  # the outermost folder this export creates
            final.parent.mkdir(parents=True)
        staging = final.parent / f".{final.name}.partial-{os.getpid()}"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
        self._staged[final] = staging
        return staging

    def publish(self) -> None:
        for final, staging in self._staged.items():
            if final.exists():
                shutil.rmtree(final)  # empty, or an earlier export (check_destination)
            staging.rename(final)
        self._published = True

    def __enter__(self) -> Staging:
        return self

    def __exit__(self, *exc) -> None:
        if self._published:
            return
        for staging in self._staged.values():
            shutil.rmtree(staging, ignore_errors=True)
        for parent in self._created_parents:
            shutil.rmtree(parent, ignore_errors=True)
