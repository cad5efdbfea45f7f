"""Corpora: the shipped and run-time sources, splits, seeded windows, budgets and every error."""

from __future__ import annotations

import copy
import json
import lzma
from importlib import resources

import datasets
import pytest
import torch

from circuitcut.data import corpora
from circuitcut.data.corpora import (
    CORPORA,
    CorpusError,
    corpus_notes,
    corpus_size_tokens,
    corpus_windows,
    load_documents,
    split_of,
)

WORDS = ["apple", "river", "cloud", "stone", "music", "table", "green", "light", "paper", "horse"]


def _marked_folder(root, n=40):
    """A folder of documents, each made of one distinctive word so windows reveal their documents."""
    root.mkdir(exist_ok=True)
    for i in range(n):
        word = f"{WORDS[i % 10]}{i}"
        (root / f"doc{i:02d}.txt").write_text(" ".join([word] * 30) + ".\n")
    return root


def _words(tokenizer, windows) -> set[str]:
    words = tokenizer.decode(windows.flatten().tolist(), skip_special_tokens=True).split()[:-1]  # last may be cut
    return {w.strip(".") for w in words if w.strip(".")[-1:].isdigit()}


def test_same_seed_gives_the_same_windows_and_a_longer_budget_extends_them(tokenizer):
    first = corpus_windows("prose", tokenizer, n_tokens=1024, window=64, seed=3)
    corpora._source.cache_clear()
    corpora._split_groups.cache_clear()
    again = corpus_windows("prose", tokenizer, n_tokens=1024, window=64, seed=3)
    longer = corpus_windows("prose", tokenizer, n_tokens=4096, window=64, seed=3)
    assert first.shape == (16, 64) and first.dtype == torch.long
    assert torch.equal(first, again)
    assert torch.equal(longer[:16], first)


def test_another_seed_gives_other_windows(tokenizer):
    a = corpus_windows("python", tokenizer, n_tokens=512, window=128, seed=0)
    b = corpus_windows("python", tokenizer, n_tokens=512, window=128, seed=1)
    assert not torch.equal(a, b)


def test_budget_gives_full_windows_with_eos_between_documents(tokenizer, tmp_path):
    folder = _marked_folder(tmp_path / "docs")
    windows = corpus_windows(str(folder), tokenizer, n_tokens=1000, window=128)
    assert windows.shape == (7, 128)
    ids = windows.flatten().tolist()
    assert tokenizer.bos_token_id not in ids  # no special tokens but the separators
    eos = [i for i, t in enumerate(ids) if t == tokenizer.eos_token_id]
    between = [tokenizer.decode(ids[a + 1 : b]) for a, b in zip(eos, eos[1:], strict=False)]
    assert len(between) >= 5 and set(between) <= set(load_documents(str(folder)))


def test_stats_and_eval_never_share_a_document_whatever_the_seed_or_budget(tokenizer, tmp_path):
    folder = str(_marked_folder(tmp_path / "docs"))
    expected = {s: {d.split()[0] for d in load_documents(folder) if split_of(d) == s} for s in ("stats", "eval")}
    assert expected["stats"] and expected["eval"] and not expected["stats"] & expected["eval"]
    for seed, n_tokens in [(0, 256), (1, 512), (7, 384)]:
        for split in ("stats", "eval"):
            seen = _words(tokenizer, corpus_windows(folder, tokenizer, n_tokens=n_tokens, window=64,
                                                    split=split, seed=seed))
            assert seen and seen <= expected[split]


def test_named_corpora_split_about_evenly():
    for name in ("prose", "python"):
        docs = load_documents(name)
        stats = sum(len(d) for d in docs if split_of(d) == "stats")
        assert 0.3 < stats / sum(len(d) for d in docs) < 0.7


def test_shipped_prose_is_over_a_megabyte_of_clean_articles():
    docs = load_documents("prose")
    assert len(docs) >= 90 and sum(len(d.encode()) for d in docs) >= 1_000_000
    text = "\n".join(docs)
    for markup in ("{{", "[[", "<ref", "|}", "Category:", "thumb|"):
        assert markup not in text
    notice = (resources.files("circuitcut.data") / "files" / "prose.NOTICE.md").read_text()
    assert "CC BY-SA" in notice and "Wikipedia contributors" in notice


def test_code_mixes_three_languages_with_recorded_licences():
    groups = corpora._source("code").groups
    assert len(groups) >= 3 and all(len(g) >= 50 for g in groups)
    shipped = lzma.decompress((resources.files("circuitcut.data") / "files" / "code.jsonl.xz").read_bytes())
    records = [json.loads(line) for line in shipped.decode().splitlines()]
    assert {r["language"] for r in records} >= {"c", "javascript"}
    assert all(r["licence"] and r["package"] and r["path"] for r in records)
    # The seeded order takes every language early, not only the largest one (Python).
    first = list(corpora._ordered("code", "stats", 0))[:3]
    assert {next(i for i, g in enumerate(groups) if d in g) for d in first} == {0, 1, 2}


def test_python_reads_the_stdlib_without_test_folders(tmp_path, monkeypatch):
    for rel in ["a.py", "pkg/m.py", "test/t.py", "pkg/tests/x.py", "idlelib/idle_test/y.py",
                "site-packages/z.py", "pkg/data.txt"]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(f"# {rel}\n")
    monkeypatch.setattr(corpora.sysconfig, "get_paths", lambda: {"stdlib": str(tmp_path)})
    found = corpora._stdlib_python("python") + corpora._stdlib_python("code")
    assert sorted(found) == ["# a.py\n", "# pkg/m.py\n"]
    assert sum(len(d) for d in load_documents("python")) > 5_000_000  # the real one


def test_local_folder_is_every_text_file_recursively_sorted_and_cached(tmp_path):
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "z.txt").write_text("second")
    (tmp_path / "a.md").write_text("first")
    (tmp_path / "c.bin").write_bytes(b"\x00\x01binary")
    (tmp_path / "empty.txt").write_text("  \n")
    (tmp_path / ".hidden").write_text("hidden")
    assert load_documents(str(tmp_path)) == ["first", "second"]
    (tmp_path / "a.md").unlink()
    assert load_documents(str(tmp_path)) == ["first", "second"]  # read once per process
    assert corpus_notes(str(tmp_path)) == ["1 of 4 files (8 bytes) are binary and were skipped: c.bin"]


LATIN1_HEADER = "/* Copyright \xa9 1995 J\xfcrgen M\xfcller */\n#define NAME \"caf\xe9\"\n".encode("latin-1")


def test_a_file_that_is_not_utf8_is_read_as_latin1_and_reported(tmp_path):
    """It was refused alone and skipped without a word inside a folder."""
    (tmp_path / "folder").mkdir()
    (tmp_path / "folder" / "ok.h").write_text("int x;\n")
    (tmp_path / "folder" / "old.h").write_bytes(LATIN1_HEADER)
    folder = str(tmp_path / "folder")
    assert load_documents(folder) == ["int x;\n", LATIN1_HEADER.decode("latin-1")]
    assert corpus_notes(folder) == [f"1 of 2 files ({len(LATIN1_HEADER)} bytes) are not UTF-8 and were read as "
                                    "latin-1: old.h"]
    alone = tmp_path / "folder" / "old.h"
    assert "Jürgen Müller" in load_documents(str(alone))[0]
    assert corpus_notes(str(alone)) == [f"1 of 1 files ({len(LATIN1_HEADER)} bytes) are not UTF-8 and were "
                                        "read as latin-1: old.h"]
    assert corpus_notes("prose") == []


def test_python_and_code_share_no_document_and_no_window(tokenizer):
    """``code`` took its Python from the front of the same seeded stdlib stream as ``python``."""
    python, code = set(load_documents("python")), set(load_documents("code"))
    assert not python & code
    assert len(corpora._source("code").groups[0]) > 50 and len(python) > 400
    for split in ("stats", "eval"):
        py = corpus_windows("python", tokenizer, n_tokens=16384, window=64, split=split).tolist()
        py_stream = [t for w in py for t in w]
        starts = {tuple(py_stream[i : i + 16]) for i in range(len(py_stream) - 15)}
        for window in corpus_windows("code", tokenizer, n_tokens=4096, window=64, split=split).tolist():
            assert not any(tuple(window[i : i + 16]) in starts for i in range(0, 64 - 15, 8))


def _bos_tokenizer(tokenizer):
    """SmolLM2's tokenizer made to put BOS before every text, as Gemma's does."""
    from tokenizers.processors import TemplateProcessing

    bos_tok = copy.deepcopy(tokenizer)
    bos = bos_tok.bos_token
    bos_tok._tokenizer.post_processor = TemplateProcessing(
        single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, bos_tok.bos_token_id)])
    return bos_tok


def test_windows_start_as_the_tokenizer_starts_a_text(tokenizer, tmp_path):
    """Windows had no BOS whatever the tokenizer: Gemma was measured off its usual input."""
    folder = str(_marked_folder(tmp_path / "docs"))
    plain = corpus_windows(folder, tokenizer, n_tokens=512, window=64)
    assert corpora.window_prefix(tokenizer) == []
    assert tokenizer.bos_token_id not in plain.flatten().tolist()
    with_bos = _bos_tokenizer(tokenizer)
    assert with_bos("a")["input_ids"][0] == with_bos.bos_token_id
    assert corpora.window_prefix(with_bos) == [with_bos.bos_token_id]
    windows = corpus_windows(folder, with_bos, n_tokens=512, window=64)
    assert windows.shape == plain.shape
    assert (windows[:, 0] == with_bos.bos_token_id).all()
    assert (windows[:, 1:] != with_bos.bos_token_id).all()
    # Same text, 63 tokens of it per window after the BOS.
    assert windows[:, 1:].flatten().tolist() == plain.flatten().tolist()[: 8 * 63]


def test_a_single_file_is_cut_into_documents_at_blank_lines(tmp_path, tokenizer):
    paragraphs = [f"Paragraph {i} " + "word " * 100 for i in range(60)]
    path = tmp_path / "book.txt"
    path.write_text("\n\n".join(paragraphs))
    docs = load_documents(str(path))
    assert 5 < len(docs) < 60 and "\n\n".join(docs) == path.read_text()
    assert {split_of(d) for d in docs} == {"stats", "eval"}
    assert corpus_windows(str(path), tokenizer, n_tokens=256, window=64, split="eval").shape == (4, 64)


def test_size_in_tokens_is_exact_when_small_and_close_when_estimated(tokenizer, tmp_path, monkeypatch):
    folder = str(_marked_folder(tmp_path / "docs"))
    exact = sum(len(tokenizer(d, add_special_tokens=False)["input_ids"]) + 1 for d in load_documents(folder))
    assert corpus_size_tokens(folder, tokenizer) == exact
    assert corpus_size_tokens(folder, tokenizer, "stats") + corpus_size_tokens(folder, tokenizer, "eval") == exact
    monkeypatch.setattr(corpora, "SIZE_SAMPLE_CHARS", 20_000)  # force the estimate on a small corpus
    corpora._size_tokens.cache_clear()
    docs = load_documents("prose")[:15]
    (tmp_path / "prose").mkdir()
    for i, d in enumerate(docs):
        (tmp_path / "prose" / f"{i:02d}.txt").write_text(d)
    exact = sum(len(tokenizer(d, add_special_tokens=False)["input_ids"]) + 1 for d in docs)
    assert corpus_size_tokens(str(tmp_path / "prose"), tokenizer) == pytest.approx(exact, rel=0.03)


@pytest.mark.parametrize(
    ("make", "kwargs", "message"),
    [
        (lambda p: "no-such-corpus", {}, "prose, python, code"),
        (lambda p: "pyhton", {}, "Unknown corpus 'pyhton'. Did you mean 'python'?"),
        (lambda p: str(p / "missing" / "docs"), {}, "path '.*missing/docs' does not exist"),
        (lambda p: "notes.txt", {}, "path 'notes.txt' does not exist"),
        (lambda p: str(p), {}, "no non-empty text file"),
        (lambda p: str(_binary(p)), {}, "is binary"),
        (lambda p: "prose", {"n_tokens": 100, "window": 128}, "less than one window"),
        (lambda p: "prose", {"window": 0}, "at least one token"),
        (lambda p: "prose", {"split": "train"}, "Unknown split"),
        (lambda p: "prose", {"n_tokens": 10_000_000}, "smaller --tokens"),
        (lambda p: "hf:", {}, "names no dataset"),
    ],
)
def test_bad_input_gives_one_clear_error(tokenizer, tmp_path, make, kwargs, message):
    with pytest.raises(CorpusError, match=message) as err:
        corpus_windows(make(tmp_path), tokenizer, **{"n_tokens": 256, **kwargs})
    if "--tokens" in message:
        assert "tokens in its 'stats' split" in str(err.value)
    if "no-such" in message or "prose, python" in message:
        assert "hf:NAME" in str(err.value) and "folder" in str(err.value)


def _binary(folder):
    path = folder / "data.bin"
    path.write_bytes(b"\x00\xff" * 10)
    return path


def test_hf_dataset_offline_names_the_dataset_and_the_fix(tokenizer, monkeypatch):
    monkeypatch.setattr(corpora, "_hub_reachable", lambda: False)
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: pytest.fail("must not try the hub"))
    with pytest.raises(CorpusError, match="'wikitext' cannot be streamed") as err:
        corpus_windows("hf:wikitext:wikitext-2-raw-v1@test", tokenizer, n_tokens=256)
    assert "local file or folder" in str(err.value)


def test_hf_dataset_streams_the_chosen_column(monkeypatch):
    calls = []

    def fake_load_dataset(name, config, *, split, streaming):
        calls.append((name, config, split, streaming))
        return iter([{"body": "first row", "id": 1}, {"body": "", "id": 2}, {"body": "third row", "id": 3}])

    monkeypatch.setattr(corpora, "_hub_reachable", lambda: True)
    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    assert load_documents("hf:someone/data:cfg@validation#body") == ["first row", "third row"]
    assert calls == [("someone/data", "cfg", "validation", True)]
    with pytest.raises(CorpusError, match="no column 'text' .*body, id"):
        load_documents("hf:someone/data")
    assert calls[-1] == ("someone/data", None, "train", True)


def test_corpora_are_described():
    assert set(CORPORA) == {"prose", "python", "code"} and all(CORPORA.values())
