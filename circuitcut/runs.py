"""Run folders: atomic writes, so an interrupted run never leaves a half-written file behind; checks of
an output folder before anything slow runs; configs written with their provenance and read back from a
folder; and the one way to say how a saved run differs from the one asked for."""

from __future__ import annotations

import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import fields
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

PROVENANCE = "provenance"
"""The key under which a run's settings file lists what made the run: one :func:`provenance` per start,
the first start's first, then each resume's. Reading a config back and comparing settings ignore it, so
a resume is never refused because the date or the code changed, and a folder written before it existed
still loads."""


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it into place only if the block succeeds.

    The file gets the permissions of any newly created file (``0o666`` less the umask), not the
    ``0o600`` of ``mkstemp``: run folders are results that users share.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _umask() -> int:
    # The umask can only be read by setting it; set it straight back.
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_json(path: str | Path, data) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2))


def read_json(path: str | Path):
    return json.loads(Path(path).read_text())


def provenance() -> dict:
    """What makes this start of a run: the versions of circuitcut, torch, transformers, TransformerLens and
    Python, circuitcut's git commit (see :func:`_git_commit`), the date (UTC) and the command line."""
    return {
        "circuitcut": _version("circuitcut"),
        **_git_commit(),
        "torch": _version("torch"),
        "transformers": _version("transformers"),
        "transformer_lens": _version("transformer-lens"),
        "python": platform.python_version(),
        # to the microsecond, so that two starts of one run never look the same (see write_config)
        "date": datetime.now(timezone.utc).isoformat(),
        "command": shlex.join(sys.argv),
    }


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _git_commit() -> dict:
    """``git_commit`` and ``git_dirty`` (tracked files of the package changed since it) when circuitcut's
    source is a git checkout, both None otherwise; never raises.

    An installed copy inside another project's repository is not a checkout of circuitcut: the package's
    own files must be tracked, or that project's commit would be recorded.
    """
    here = Path(__file__).parent
    if _git(here, "ls-files", "--error-unmatch", Path(__file__).name) is None:
        return {"git_commit": None, "git_dirty": None}
    status = _git(here, "status", "--porcelain", "--untracked-files=no", "--", ".")
    return {"git_commit": _git(here, "rev-parse", "HEAD"), "git_dirty": None if status is None else status != ""}


def _git(cwd: Path, *args: str) -> str | None:
    """A git command's output, or None when git is missing, fails or hangs (a run must not wait on it)."""
    try:
        # --no-optional-locks: reading must not take the index lock of a checkout someone is committing in.
        done = subprocess.run(["git", "--no-optional-locks", *args], cwd=cwd, capture_output=True, text=True,
                              timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def write_config(path: str | Path, data: Mapping, start: Mapping | None = None) -> None:
    """Write a run's settings file (atomically) with its :data:`PROVENANCE`: the starts the file already
    records, then ``start`` (default: a new :func:`provenance`) unless it is among them.

    A run that writes the file several times (after each curve, at the end) passes the one ``start`` it
    took, so it is recorded once; a resume adds its own, so a run continued with other code says so.
    The file at ``path`` must hold the same run: callers check the settings before writing.
    """
    path = Path(path)
    starts = read_json(path).get(PROVENANCE, []) if path.exists() else []
    start = dict(start) if start is not None else provenance()
    write_json(path, {**data, PROVENANCE: starts if start in starts else [*starts, start]})


def config_from_dict(cls, data: Mapping, recorded: tuple[str, ...] = ()):
    """A config dataclass from its saved dict, as every config reads itself back.

    Keys in ``recorded`` (what a run folder records beside the config, such as the model) and the
    :data:`PROVENANCE` are dropped; any other key the class lacks is refused by name, so a misspelt
    field never passes unnoticed. A field added after runs were saved may name, as ``metadata["legacy"]``,
    the value that reproduces how those runs behaved; a saved dict without the field reads as that value
    (so resuming such a run with the new default is refused, naming the field).
    """
    known = {f.name for f in fields(cls)}
    unknown = set(data) - known - set(recorded) - {PROVENANCE}
    if unknown:
        raise ValueError(f"Unknown {cls.__name__} fields: {sorted(unknown)}. Known fields: {', '.join(sorted(known))}.")
    legacy = {f.name: f.metadata["legacy"] for f in fields(cls) if "legacy" in f.metadata and f.name not in data}
    return cls(**{**legacy, **{k: v for k, v in data.items() if k in known}})


def check_out_folder(path: str | Path, *, holds: str = "config.json", resume: bool | None = None) -> Path:
    """Refuse an output folder that cannot take a run, before any model or data is loaded.

    ``path`` must be a folder or not exist yet, and so must every parent that exists. With
    ``resume=False``, a folder that already holds a run (a ``holds`` file) is refused too;
    ``resume=None`` leaves that to the caller.
    """
    path = Path(path).expanduser()
    for part in (path, *path.parents):
        if part.exists() and not part.is_dir():
            where = "" if part == path else f" (its parent {part} is a file)"
            raise FileExistsError(f"--out {path} cannot be a run folder{where}: it is a file. Give a folder path.")
    if resume is False and (path / holds).exists():
        raise FileExistsError(f"{path} already holds a run: pass --resume (resume=True) to continue it, "
                              f"or give another --out folder.")
    return path


def differing_settings(saved: Mapping, asked: Mapping, defaults: Mapping | None = None) -> list[str]:
    """Each setting whose saved value differs from the asked one, as ``name: saved X, asked Y``.

    A setting missing on one side counts as its value in ``defaults`` (how a run written before that
    setting existed was made), else as absent. The :data:`PROVENANCE` is no setting. Sorted by name, so
    the message is stable.
    """
    defaults = defaults or {}
    out = []
    for name in sorted((set(saved) | set(asked)) - {PROVENANCE}):
        old = saved.get(name, defaults.get(name, _ABSENT))
        new = asked.get(name, defaults.get(name, _ABSENT))
        if old != new:
            out.append(f"{name}: saved {_show(old)}, asked {_show(new)}")
    return out


_ABSENT = object()


def _show(value) -> str:
    return "(absent)" if value is _ABSENT else json.dumps(value)


def check_same_settings(folder: str | Path, saved: Mapping, asked: Mapping, defaults: Mapping | None = None) -> None:
    """Refuse to continue a run folder whose saved settings differ from the asked ones, naming each."""
    differ = differing_settings(saved, asked, defaults)
    if differ:
        raise ValueError(f"{folder} holds a run with other settings ({'; '.join(differ)}): "
                         f"ask for the same settings to resume it, or give another --out folder.")
