"""Text corpora cut into token windows: the data that pruning scores neurons on and evaluates with.

A corpus is named by a string:

* ``prose``: English Wikipedia articles shipped with the package (CC BY-SA, see
  ``files/prose.NOTICE.md``);
* ``python``: the running interpreter's standard library, read at run time;
* ``code``: other Python files of that standard library, plus shipped C and JavaScript
  (``files/code.NOTICE.md``);
* a local text file or folder;
* ``hf:NAME[:CONFIG][@SPLIT][#COLUMN]``: a Hugging Face dataset, streamed (online only).

Every document belongs to one of two splits, ``stats`` (to score neurons) and ``eval`` (to
measure the effect of pruning), by a hash of its text. The split therefore depends on nothing
but the document, so whatever the seed or the token budget, scores are never measured on a
document that evaluation reuses.

``python`` and ``code`` draw on the same standard library, so each of its files goes to exactly one
of them, again by a hash of its text (:func:`stdlib_share`): forget ``python`` / retain ``code``
(the paper's pair) never scores or evaluates one corpus on the other's text.

Windows start as the tokenizer starts any text by default (:func:`~circuitcut.special_tokens.window_prefix`:
BOS for Gemma, nothing for SmolLM2).
"""

from __future__ import annotations

import hashlib
import json
import lzma
import os
import random
import sysconfig
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from difflib import get_close_matches
from functools import lru_cache
from importlib import resources
from itertools import islice
from pathlib import Path
from typing import Literal

import torch
from jaxtyping import Int
from torch import Tensor
from transformers import PreTrainedTokenizerBase

from circuitcut.models import _hub_reachable
from circuitcut.special_tokens import window_prefix

Split = Literal["stats", "eval"]
SPLITS: tuple[Split, ...] = ("stats", "eval")

CORPORA: dict[str, str] = {
    "prose": "English Wikipedia prose: 97 articles, 2.5 MB, shipped (CC BY-SA 3.0)",
    "python": "Python source of this interpreter's standard library, tests excluded: the files (about three "
              "quarters) that 'code' does not use (PSF licence)",
    "code": "Python (the other quarter of the standard library's files: no document shared with 'python'), "
            "C (CPython headers) and JavaScript (npm modules), mixed evenly",
}
OTHER_FORMS = "a local text file or folder, or hf:NAME[:CONFIG][@SPLIT][#COLUMN] (Hugging Face, online)"

STDLIB_EXCLUDED = {"test", "tests", "idle_test", "site-packages", "dist-packages", "__pycache__"}
HF_MAX_CHARS = 20_000_000
"""A streamed dataset is read up to this many characters, enough for millions of tokens per split."""
FILE_DOC_CHARS = 2_000
"""A single local file is cut at blank lines into documents of about this size, so both splits get some."""
TOKENIZE_BATCH = 16
SIZE_SAMPLE_CHARS = 500_000
SIZE_SLICE_CHARS = 2_000
CODE_PYTHON_SHARE = 64
"""Of 256 hash buckets, the standard-library files in this many go to ``code``, the rest to ``python``:
about 3 MB of Python for ``code``, more than its C or JavaScript, so an even mix never runs short."""
NOT_UTF8_FALLBACK = "latin-1"
"""Text files that are not UTF-8 are read in this encoding (it decodes any bytes); :func:`corpus_notes`
says which files were."""


class CorpusError(ValueError):
    """A corpus that cannot give what was asked: unknown, empty, unreachable or too small."""


def load_documents(corpus: str) -> list[str]:
    """The non-empty documents of a corpus, in a fixed order (cached per process)."""
    return [doc for group in _source(_key(corpus)).groups for doc in group]


def corpus_notes(corpus: str) -> list[str]:
    """What reading a corpus decided on its own: files read as Latin-1, binary files skipped.

    Empty when every file was UTF-8 text. A run reports these beside its results.
    """
    return list(_source(_key(corpus)).notes)


def stdlib_share(document: str) -> Literal["python", "code"]:
    """Which named corpus a standard-library file belongs to, by a stable hash of its text.

    A hash of the text, not the path, sends identical files to the same corpus.
    """
    digest = hashlib.blake2b(document.encode(), digest_size=8, person=b"stdlib-share").digest()
    return "code" if digest[0] < CODE_PYTHON_SHARE else "python"


def split_of(document: str) -> Split:
    """The split a document belongs to: a stable hash of its text, about half each."""
    return "stats" if hashlib.blake2b(document.encode(), digest_size=8).digest()[0] < 128 else "eval"


def corpus_windows(
    corpus: str,
    tokenizer: PreTrainedTokenizerBase,
    *,
    n_tokens: int,
    window: int = 128,
    split: Split = "stats",
    seed: int = 0,
) -> Int[Tensor, "n_windows window"]:
    """``n_tokens // window`` full windows of consecutive tokens from one split of a corpus.

    The seed orders the split's documents; documents are tokenized without special tokens, in
    that order and only as far as the budget needs, joined with the tokenizer's EOS token, and
    the stream is cut into windows. Each window starts with :func:`window_prefix` (the BOS of a
    tokenizer that adds one) and holds ``window`` tokens with it. The same arguments always give
    the same tensor.
    """
    if window < 1:
        raise CorpusError(f"window={window}: a window holds at least one token.")
    if n_tokens < window:
        raise CorpusError(f"n_tokens={n_tokens} is less than one window of {window} tokens: use --tokens >= {window}.")
    if split not in SPLITS:
        raise CorpusError(f"Unknown split '{split}': choose from {', '.join(SPLITS)}.")
    prefix = window_prefix(tokenizer)
    body = window - len(prefix)
    if body < 1:
        raise CorpusError(f"window={window} leaves no room for text after the {len(prefix)} special token(s) "
                          f"each window starts with: use a larger --window.")
    n_windows = n_tokens // window
    needed = n_windows * body
    stream: list[int] = []
    for ids in _token_ids(_ordered(_key(corpus), split, seed), tokenizer):
        stream.extend(ids)
        if len(stream) >= needed:
            text = torch.tensor(stream[:needed], dtype=torch.long).view(n_windows, body)
            return torch.cat((torch.tensor(prefix, dtype=torch.long).expand(n_windows, -1), text), dim=1)
    raise CorpusError(
        f"Corpus '{corpus}' has {len(stream):,} tokens in its '{split}' split (about half of its documents), "
        f"fewer than the {needed:,} asked for: use a smaller --tokens (at most {len(stream) // body * window:,}) "
        f"or a larger corpus."
    )


def corpus_size_tokens(corpus: str, tokenizer: PreTrainedTokenizerBase, split: Split | None = None) -> int:
    """Tokens in a corpus or one split (EOS separators included), to report what budgets draw from.

    Exact up to ``SIZE_SAMPLE_CHARS`` characters. Larger ones are estimated from that many
    characters in evenly spaced slices of the text (within about 1%), because tokenizing all of
    the standard library is slow. Cached per process.
    """
    if split is None:
        return sum(corpus_size_tokens(corpus, tokenizer, s) for s in SPLITS)
    return _size_tokens(_key(corpus), tokenizer, split)


@lru_cache(maxsize=32)
def _size_tokens(key: str, tokenizer: PreTrainedTokenizerBase, split: Split) -> int:
    docs = [d for group in _split_groups(key, split) for d in group]
    text = "".join(docs)
    if len(text) <= SIZE_SAMPLE_CHARS:
        return sum(len(ids) for ids in _token_ids(iter(docs), tokenizer))
    n_slices = SIZE_SAMPLE_CHARS // SIZE_SLICE_CHARS
    stride = len(text) // n_slices
    slices = [text[i * stride : i * stride + SIZE_SLICE_CHARS] for i in range(n_slices)]
    tokens = sum(len(ids) for ids in tokenizer(slices, add_special_tokens=False, verbose=False)["input_ids"])
    separators = 0 if tokenizer.eos_token_id is None else len(docs)
    return round(tokens * len(text) / sum(len(s) for s in slices)) + separators


def _token_ids(documents: Iterator[str], tokenizer: PreTrainedTokenizerBase) -> Iterator[list[int]]:
    """Token ids of each document followed by EOS.

    Batches grow from one document to ``TOKENIZE_BATCH``: small budgets tokenize little, large
    ones use the tokenizer's parallel batches.
    """
    eos = [] if tokenizer.eos_token_id is None else [tokenizer.eos_token_id]
    size = 1
    while batch := list(islice(documents, size)):
        encoded = tokenizer(batch, add_special_tokens=False, return_attention_mask=False, verbose=False)
        yield from (ids + eos for ids in encoded["input_ids"])
        size = min(2 * size, TOKENIZE_BATCH)


def _ordered(key: str, split: Split, seed: int) -> Iterator[str]:
    """The split's documents in a seeded order; several groups (languages) are mixed evenly.

    Each group is shuffled, then the next document always comes from the group with the fewest
    characters taken so far, so that any budget holds about as much of each language.
    """
    rng = random.Random(seed)
    queues = []
    for group in _split_groups(key, split):
        docs = list(group)
        rng.shuffle(docs)
        queues.append(deque(docs))
    taken = [0] * len(queues)
    while any(queues):
        i = min((i for i, q in enumerate(queues) if q), key=taken.__getitem__)
        doc = queues[i].popleft()
        taken[i] += len(doc)
        yield doc


@lru_cache(maxsize=32)
def _split_groups(key: str, split: Split) -> tuple[tuple[str, ...], ...]:
    return tuple(tuple(d for d in group if split_of(d) == split) for group in _source(key).groups)


def _key(corpus: str) -> str:
    """A cache key for a corpus: its name, its hf: spec, or its resolved path."""
    if corpus in CORPORA or corpus.startswith("hf:"):
        return corpus
    path = Path(corpus).expanduser()
    if path.exists():
        return str(path.resolve())
    if _looks_like_path(corpus):
        raise CorpusError(f"Corpus path '{corpus}' does not exist: check the path, or use one of "
                          f"{', '.join(CORPORA)}.")
    close = get_close_matches(corpus, CORPORA, n=1)
    hint = f" Did you mean '{close[0]}'?" if close else ""
    raise CorpusError(f"Unknown corpus '{corpus}'.{hint} Use one of {', '.join(CORPORA)}, or {OTHER_FORMS}.")


def _looks_like_path(corpus: str) -> bool:
    """A name with a folder separator, a leading ``.``/``~`` or a file suffix was meant as a path."""
    return any(sep in corpus for sep in ("/", os.sep)) or corpus.startswith((".", "~")) or bool(Path(corpus).suffix)


@dataclass(frozen=True)
class _Source:
    """A corpus as read: documents in groups that ``_ordered`` mixes evenly (one group but for
    code), and notes on what reading it decided (see :func:`corpus_notes`)."""

    groups: tuple[tuple[str, ...], ...]
    notes: tuple[str, ...] = ()


@lru_cache(maxsize=16)
def _source(key: str) -> _Source:
    if key == "prose":
        return _Source((tuple(r["text"] for r in _shipped("prose.jsonl.xz")),))
    if key == "python":
        return _Source((_stdlib_python("python"),))
    if key == "code":
        shipped = _shipped("code.jsonl.xz")
        languages = sorted({r["language"] for r in shipped})
        return _Source((_stdlib_python("code"),
                        *(tuple(r["text"] for r in shipped if r["language"] == lang) for lang in languages)))
    if key.startswith("hf:"):
        return _Source((_hf_documents(key),))
    return _local_documents(Path(key))


def _shipped(name: str) -> list[dict]:
    data = lzma.decompress((resources.files("circuitcut.data") / "files" / name).read_bytes())
    return [json.loads(line) for line in data.decode().splitlines()]


def _stdlib_python(share: Literal["python", "code"]) -> tuple[str, ...]:
    """The .py files of the standard library outside test folders that belong to ``share``
    (:func:`stdlib_share`), one document each."""
    paths = []
    for folder, subfolders, files in os.walk(sysconfig.get_paths()["stdlib"]):
        subfolders[:] = [d for d in subfolders if d not in STDLIB_EXCLUDED]  # and never walk them
        paths.extend(Path(folder, f) for f in files if f.endswith(".py"))
    texts = (_read_text(p)[0] for p in sorted(paths))
    return tuple(text for text in texts if text and text.strip() and stdlib_share(text) == share)


def _read_text(path: Path) -> tuple[str | None, str | None]:
    """A file's text and the encoding it was read in: UTF-8, else ``NOT_UTF8_FALLBACK``; ``(None, None)``
    for a binary file (one holding a NUL byte)."""
    data = path.read_bytes()
    if b"\0" in data:
        return None, None
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        return data.decode(NOT_UTF8_FALLBACK), NOT_UTF8_FALLBACK


def _local_documents(path: Path) -> _Source:
    """A folder gives one document per text file (recursively, sorted, hidden entries skipped);
    a single file is cut at blank lines into documents of about ``FILE_DOC_CHARS``."""
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and not any(
            part.startswith(".") for part in p.relative_to(path).parts))
        read = {p: _read_text(p) for p in files}
        docs = tuple(text for text, _ in read.values() if text and text.strip())
        if not docs:
            raise CorpusError(f"Folder '{path}' holds no non-empty text file to use as a corpus.")
        return _Source((docs,), _reading_notes(path, read))
    text, encoding = _read_text(path)
    if text is None:
        raise CorpusError(f"File '{path}' is binary (it holds NUL bytes), not text.")
    if not text.strip():
        raise CorpusError(f"File '{path}' is empty.")
    docs, current = [], ""
    for block in text.replace("\r\n", "\n").split("\n\n"):
        current = f"{current}\n\n{block}" if current else block
        if len(current) >= FILE_DOC_CHARS:
            docs.append(current)
            current = ""
    docs.append(current)
    return _Source((tuple(d for d in docs if d.strip()),), _reading_notes(path.parent, {path: (text, encoding)}))


def _reading_notes(root: Path, read: dict[Path, tuple[str | None, str | None]]) -> tuple[str, ...]:
    """Say which files were read in the fallback encoding and which binary files were skipped."""
    notes = []
    fallback = [p for p, (_, enc) in read.items() if enc == NOT_UTF8_FALLBACK]
    binary = [p for p, (text, _) in read.items() if text is None]
    for files, what in ((fallback, f"are not UTF-8 and were read as {NOT_UTF8_FALLBACK}"),
                        (binary, "are binary and were skipped")):
        if files:
            size = sum(p.stat().st_size for p in files)
            names = ", ".join(str(p.relative_to(root)) for p in files[:5]) + (", ..." if len(files) > 5 else "")
            notes.append(f"{len(files)} of {len(read)} files ({size:,} bytes) {what}: {names}")
    return tuple(notes)


def _parse_hf(spec: str) -> tuple[str, str | None, str, str]:
    """``hf:NAME[:CONFIG][@SPLIT][#COLUMN]`` -> (name, config, split, column)."""
    rest, _, column = spec.removeprefix("hf:").partition("#")
    rest, _, split = rest.partition("@")
    name, _, config = rest.partition(":")
    if not name:
        raise CorpusError(f"'{spec}' names no dataset: write hf:NAME[:CONFIG][@SPLIT][#COLUMN].")
    return name, config or None, split or "train", column or "text"


def _hf_documents(spec: str) -> tuple[str, ...]:
    """The first ``HF_MAX_CHARS`` characters of a dataset column, streamed, one document per row."""
    name, config, split, column = _parse_hf(spec)
    if not _hub_reachable():
        raise CorpusError(
            f"Dataset '{name}' cannot be streamed: the Hugging Face hub cannot be reached. "
            f"Run with network access, or save its text to a local file or folder and pass that path, "
            f"or use a built-in corpus ({', '.join(CORPORA)})."
        )
    import datasets

    try:
        rows = datasets.load_dataset(name, config, split=split, streaming=True)
        docs, chars = [], 0
        for row in rows:
            if column not in row:
                raise CorpusError(f"Dataset '{name}' has no column '{column}' (it has {', '.join(row)}): add #COLUMN.")
            text = row[column]
            if isinstance(text, str) and text.strip():
                docs.append(text)
                chars += len(text)
                if chars >= HF_MAX_CHARS:
                    break
    except CorpusError:
        raise
    except (OSError, ValueError) as err:
        raise CorpusError(f"Dataset '{name}' (config {config}, split {split}) could not be read: {err}") from err
    if not docs:
        raise CorpusError(f"Dataset '{name}' gave no text in column '{column}' of split '{split}'.")
    return tuple(docs)
