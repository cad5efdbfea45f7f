"""Text corpora cut into token windows: the data that pruning scores neurons on and evaluates with.

A corpus is named by a string:

* ``prose``: English Wikipedia articles shipped with the package (CC BY-SA, see
  ``files/prose.NOTICE.md``);
* ``python``: the running interpreter's standard library, read at run time;
* ``code``: that Python plus shipped C and JavaScript (``files/code.NOTICE.md``);
* a local text file or folder;
* ``hf:NAME[:CONFIG][@SPLIT][#COLUMN]``: a Hugging Face dataset, streamed (online only).

Every document belongs to one of two splits, ``stats`` (to score neurons) and ``eval`` (to
measure the effect of pruning), by a hash of its text. The split therefore depends on nothing
but the document, so whatever the seed or the token budget, scores are never measured on a
document that evaluation reuses.
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

Split = Literal["stats", "eval"]
SPLITS: tuple[Split, ...] = ("stats", "eval")

CORPORA: dict[str, str] = {
    "prose": "English Wikipedia prose: 97 articles, 2.5 MB, shipped (CC BY-SA 3.0)",
    "python": "Python source of this interpreter's standard library, tests excluded (PSF licence)",
    "code": "Python (standard library), C (CPython headers) and JavaScript (npm modules), mixed evenly",
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


class CorpusError(ValueError):
    """A corpus that cannot give what was asked: unknown, empty, unreachable or too small."""


def load_documents(corpus: str) -> list[str]:
    """The non-empty documents of a corpus, in a fixed order (cached per process)."""
    return [doc for group in _groups(_key(corpus)) for doc in group]


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
    the stream is cut into windows. The same arguments always give the same tensor.
    """
    if window < 1:
        raise CorpusError(f"window={window}: a window holds at least one token.")
    if n_tokens < window:
        raise CorpusError(f"n_tokens={n_tokens} is less than one window of {window} tokens: use --tokens >= {window}.")
    if split not in SPLITS:
        raise CorpusError(f"Unknown split '{split}': choose from {', '.join(SPLITS)}.")
    n_windows = n_tokens // window
    needed = n_windows * window
    stream: list[int] = []
    for ids in _token_ids(_ordered(_key(corpus), split, seed), tokenizer):
        stream.extend(ids)
        if len(stream) >= needed:
            return torch.tensor(stream[:needed], dtype=torch.long).view(n_windows, window)
    raise CorpusError(
        f"Corpus '{corpus}' has {len(stream):,} tokens in its '{split}' split (about half of its documents), "
        f"fewer than the {needed:,} asked for: use a smaller --tokens (at most {len(stream) // window * window:,}) "
        f"or a larger corpus."
    )


def corpus_size_tokens(corpus: str, tokenizer: PreTrainedTokenizerBase, split: Split | None = None) -> int:
    """Tokens in a corpus or one split (EOS separators included), to report what budgets draw from.

    Exact up to ``SIZE_SAMPLE_CHARS`` characters. Larger ones are estimated from that many
    characters in evenly spaced slices of the text (within about 1%), because tokenizing all of
    the 12 MB standard library takes 15 s or more. Cached per process.
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
    return tuple(tuple(d for d in group if split_of(d) == split) for group in _groups(key))


def _key(corpus: str) -> str:
    """A cache key for a corpus: its name, its hf: spec, or its resolved path."""
    if corpus in CORPORA or corpus.startswith("hf:"):
        return corpus
    path = Path(corpus).expanduser()
    if not path.exists():
        raise CorpusError(
            f"Unknown corpus '{corpus}': use one of {', '.join(CORPORA)}, or {OTHER_FORMS}."
        )
    return str(path.resolve())


@lru_cache(maxsize=16)
def _groups(key: str) -> tuple[tuple[str, ...], ...]:
    """The documents of a corpus, in groups that ``_ordered`` mixes evenly (one group but for code)."""
    if key == "prose":
        return (tuple(r["text"] for r in _shipped("prose.jsonl.xz")),)
    if key == "python":
        return (_stdlib_python(),)
    if key == "code":
        shipped = _shipped("code.jsonl.xz")
        languages = sorted({r["language"] for r in shipped})
        return (_stdlib_python(), *(tuple(r["text"] for r in shipped if r["language"] == lang) for lang in languages))
    if key.startswith("hf:"):
        return (_hf_documents(key),)
    return (_local_documents(Path(key)),)


def _shipped(name: str) -> list[dict]:
    data = lzma.decompress((resources.files("circuitcut.data") / "files" / name).read_bytes())
    return [json.loads(line) for line in data.decode().splitlines()]


def _stdlib_python() -> tuple[str, ...]:
    """Every .py file of the standard library outside test folders, one document each."""
    paths = []
    for folder, subfolders, files in os.walk(sysconfig.get_paths()["stdlib"]):
        subfolders[:] = [d for d in subfolders if d not in STDLIB_EXCLUDED]  # and never walk them
        paths.extend(Path(folder, f) for f in files if f.endswith(".py"))
    return tuple(text for p in sorted(paths) if (text := _read_text(p)) and text.strip())


def _read_text(path: Path) -> str | None:
    """A file's text, or None when it is not UTF-8 text (binary files inside folders are skipped)."""
    data = path.read_bytes()
    if b"\0" in data:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _local_documents(path: Path) -> tuple[str, ...]:
    """A folder gives one document per text file (recursively, sorted, hidden entries skipped);
    a single file is cut at blank lines into documents of about ``FILE_DOC_CHARS``."""
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and not any(
            part.startswith(".") for part in p.relative_to(path).parts))
        docs = tuple(text for p in files if (text := _read_text(p)) and text.strip())
        if not docs:
            raise CorpusError(f"Folder '{path}' holds no non-empty UTF-8 text file to use as a corpus.")
        return docs
    text = _read_text(path)
    if text is None or not text.strip():
        raise CorpusError(f"File '{path}' is empty or not UTF-8 text.")
    docs, current = [], ""
    for block in text.replace("\r\n", "\n").split("\n\n"):
        current = f"{current}\n\n{block}" if current else block
        if len(current) >= FILE_DOC_CHARS:
            docs.append(current)
            current = ""
    docs.append(current)
    return tuple(d for d in docs if d.strip())


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
