"""Run folders: permissions of written files, output folders checked early, settings that differ."""

import os
import stat

import pytest

from circuitcut.runs import check_out_folder, check_same_settings, differing_settings, write_json


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
