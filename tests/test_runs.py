"""Run folders: permissions of written files, output folders checked early, settings that differ, provenance."""

import importlib.util
import os
import shlex
import shutil
import stat
import subprocess
import sys
from dataclasses import dataclass
from datetime import datetime
from importlib import metadata
from pathlib import Path

import pytest

import circuitcut
from circuitcut import runs
from circuitcut.runs import (
    PROVENANCE, check_out_folder, check_same_settings, config_from_dict, differing_settings, provenance, read_json,
    write_config, write_json,
)


@pytest.mark.parametrize("umask", [0o022, 0o002])
def test_run_files_get_the_permissions_of_any_new_file(tmp_path, umask):
    """They were 0600, from mkstemp, whatever the umask."""
    old = os.umask(umask)
    try:
        write_json(tmp_path / "history.json", {"a": 1})
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "history.json").stat().st_mode) == 0o666 & ~umask


def test_an_out_folder_that_is_a_file_or_under_one_is_refused(tmp_path):
    (tmp_path / "results.txt").write_text("not a folder")
    for out in (tmp_path / "results.txt", tmp_path / "results.txt" / "run"):
        with pytest.raises(FileExistsError, match="it is a file. Give a folder path"):
            check_out_folder(out)
    (tmp_path / "run").mkdir()
    assert check_out_folder(tmp_path / "run", resume=False) == tmp_path / "run"
    (tmp_path / "run" / "config.json").write_text("{}")
    with pytest.raises(FileExistsError, match="already holds a run: pass --resume"):
        check_out_folder(tmp_path / "run", resume=False)
    check_out_folder(tmp_path / "run", resume=True)


def test_differing_settings_name_saved_and_asked_values():
    saved = {"model": "a", "steps": 5, "sites": ["mlp"], "old": 1}
    asked = {"model": "b", "steps": 5, "sites": ["mlp", "attn_v"], "new": [2]}
    assert differing_settings(saved, asked) == [
        'model: saved "a", asked "b"', "new: saved (absent), asked [2]", "old: saved 1, asked (absent)",
        'sites: saved ["mlp"], asked ["mlp", "attn_v"]']
    # A setting a run written before it existed lacks counts as its default.
    assert differing_settings({"steps": 5}, {"steps": 5, "bos": []}, {"bos": []}) == []
    assert differing_settings({"steps": 5}, {"steps": 5, "bos": ["<s>"]}, {"bos": []}) == \
        ['bos: saved [], asked ["<s>"]']
    with pytest.raises(ValueError, match=r"runs/x holds a run with other settings \(model: saved \"a\", asked \"b\""):
        check_same_settings("runs/x", {"model": "a"}, {"model": "b"})


def test_write_config_records_each_start_once_and_keeps_the_first(tmp_path):
    """A run writes its settings several times per start (each curve, the end); a resume adds its own start."""
    path = tmp_path / "config.json"
    first = provenance()
    write_config(path, {"steps": 5}, first)
    write_config(path, {"steps": 5, "curves": [1]}, first)
    assert read_json(path) == {"steps": 5, "curves": [1], PROVENANCE: [first]}
    write_config(path, {"steps": 5})  # a resume: a new start of its own
    starts = read_json(path)[PROVENANCE]
    assert len(starts) == 2 and starts[0] == first and starts[1]["date"] > first["date"]


def _git(cwd, *args) -> str:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True).stdout.strip()


def test_provenance_names_versions_commit_date_and_command(monkeypatch):
    source = Path(circuitcut.__file__).parent
    checkout = subprocess.run(["git", "ls-files", "--error-unmatch", "runs.py"], cwd=source).returncode == 0
    heads = [_git(source, "rev-parse", "HEAD")]
    p = provenance()
    heads.append(_git(source, "rev-parse", "HEAD"))  # someone may commit meanwhile
    assert p["git_commit"] in heads if checkout else p["git_commit"] is None
    assert p["circuitcut"] == metadata.version("circuitcut") and p["torch"] == metadata.version("torch")
    assert p["transformers"] == metadata.version("transformers") and p["command"] == shlex.join(sys.argv)
    assert datetime.fromisoformat(p["date"]).tzinfo is not None

    # git missing or hanging never stops a run: the commit is unknown
    def hangs(*args, **kwargs):
        raise subprocess.TimeoutExpired(args[0], 5)

    monkeypatch.setattr(runs.subprocess, "run", hangs)
    assert provenance()["git_commit"] is None and provenance()["git_dirty"] is None


def test_a_copy_inside_another_projects_repository_records_no_commit(tmp_path):
    """The commit of the repository around an installed copy is not circuitcut's."""
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "-c", "user.name=a", "-c", "user.email=a@b.c", "commit", "-q", "--allow-empty", "-m", "theirs")
    assert _git(tmp_path, "rev-parse", "HEAD")
    (tmp_path / "site-packages").mkdir()
    shutil.copy(runs.__file__, tmp_path / "site-packages" / "runs.py")
    spec = importlib.util.spec_from_file_location("copied_runs", tmp_path / "site-packages" / "runs.py")
    copied = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(copied)
    assert copied.provenance()["git_commit"] is None


def test_provenance_is_no_setting_and_no_config_field():
    """Comparing a saved run with the asked one, and reading its config back, ignore the provenance."""
    saved = {"steps": 5, PROVENANCE: [{"date": "2020-01-01", "git_commit": "abc"}]}
    assert differing_settings(saved, {"steps": 5}) == []
    assert differing_settings(saved, {"steps": 6}) == ["steps: saved 5, asked 6"]

    @dataclass
    class Config:
        steps: int = 1

    assert config_from_dict(Config, saved) == Config(steps=5)
    with pytest.raises(ValueError, match="Unknown Config fields: \\['stpes'\\]"):
        config_from_dict(Config, {"stpes": 5, PROVENANCE: []})
