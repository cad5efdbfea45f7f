"""WordNet 3.0 nouns: parse the Princeton data files, write and read the compact shipped graph.

Two halves:

* **Build time** (``scripts/build_wordnet.py``): :func:`parse_data_line` and :func:`read_index`
  read the Princeton database (``data.noun`` / ``index.noun``, e.g. Debian ``wordnet-base`` at
  ``/usr/share/wordnet``) and :func:`write_compact` writes ``files/wordnet_nouns.tsv.gz``.
* **Run time**: :func:`load_graph` reads only the shipped file; no WordNet installation is needed.

The shipped file is a gzip TSV, one record per line, ``#`` lines are comments:

``S <offset> <name> <hypernym offsets, comma separated, instance hypernyms prefixed with i> <count>``
    every noun synset (82,115), named NLTK-style after its first lemma and that lemma's sense
    number (``dog.n.01``; case and underscores kept, e.g. ``Paris.n.01``); ``count`` is the
    synset's SemCor tag count (``cntlist.rev``, summed over its lemmas; empty for 0), a measure of
    how familiar the concept is (dog 42, canine 0);
``P <part> <whole>``
    part meronymy: the first is part of the second ("wheel" part of "car");
``M <member> <group>``
    member meronymy: the first is a member of the second ("player" member of "team");
``D <thing> <substance>``
    substance meronymy: the first is made of the second ("horn" made of "keratin").

Pointer directions in ``data.noun`` (synset X holds ``%p Y``): Y is a part of X; ``%m Y``: Y is a
member of X; ``%s Y``: Y is a substance of X, i.e. X is made of Y. ``@ Y``: Y is a hypernym of X;
``@i Y``: X is an instance of Y.
"""

from __future__ import annotations

import gzip
import io
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path

SHIPPED_FILE = "wordnet_nouns.tsv.gz"
LICENSE_FILE = "wordnet_LICENSE.txt"

#: meronym pointer symbol -> (record tag, relation name, True when the pointer's target is the head)
MERONYM_POINTERS: dict[str, tuple[str, str, bool]] = {
    "%p": ("P", "PartOf", True),  # X %p Y: Y is part of X -> (Y, PartOf, X)
    "%m": ("M", "MemberOf", True),  # X %m Y: Y is a member of X -> (Y, MemberOf, X)
    "%s": ("D", "MadeOf", False),  # X %s Y: Y is a substance of X -> (X, MadeOf, Y)
}
TAG_RELATION = {tag: relation for tag, relation, _ in MERONYM_POINTERS.values()}


# --------------------------------------------------------------------------------------------
# Build time: the Princeton data files
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pointer:
    symbol: str
    offset: str
    pos: str
    source_target: str

    @property
    def semantic(self) -> bool:
        """Synset-to-synset (``0000``), as opposed to a lexical pointer between two words."""
        return self.source_target == "0000"


@dataclass(frozen=True)
class SynsetRecord:
    """One line of a ``data.*`` file."""

    offset: str
    lex_filenum: int
    ss_type: str
    lemmas: tuple[str, ...]
    lex_ids: tuple[int, ...]
    pointers: tuple[Pointer, ...]
    gloss: str

    def targets(self, *symbols: str, pos: str = "n") -> list[str]:
        return [p.offset for p in self.pointers if p.symbol in symbols and p.pos == pos and p.semantic]


def parse_data_line(line: str) -> SynsetRecord | None:
    """Parse one line of a WordNet 3.0 ``data.*`` file; ``None`` for the licence header lines.

    Format: ``offset lex_filenum ss_type w_cnt(hex) {word lex_id} p_cnt {symbol offset pos
    source/target} [frames] | gloss``.
    """
    if not line.strip() or line.startswith("  "):
        return None
    data, _, gloss = line.partition(" | ")
    fields = data.split()
    offset, lex_filenum, ss_type = fields[0], int(fields[1]), fields[2]
    w_cnt = int(fields[3], 16)
    lemmas, lex_ids = [], []
    i = 4
    for _ in range(w_cnt):
        word = fields[i]
        if ss_type in "as" and word.endswith(")") and "(" in word:  # adjective markers: "big(a)"
            word = word[: word.index("(")]
        lemmas.append(word)
        lex_ids.append(int(fields[i + 1], 16))
        i += 2
    p_cnt = int(fields[i])
    i += 1
    pointers = []
    for _ in range(p_cnt):
        pointers.append(Pointer(fields[i], fields[i + 1], fields[i + 2], fields[i + 3]))
        i += 4
    return SynsetRecord(offset, lex_filenum, ss_type, tuple(lemmas), tuple(lex_ids), tuple(pointers), gloss.strip())


def read_data(path: str | Path) -> Iterator[SynsetRecord]:
    """All synsets of a ``data.*`` file (the licence header is skipped; CRLF tolerated)."""
    with open(path, encoding="utf-8", errors="replace", newline=None) as f:
        for line in f:
            record = parse_data_line(line.rstrip("\r\n"))
            if record is not None:
                yield record


def read_index(path: str | Path) -> dict[str, list[str]]:
    """``index.*``: lemma (lowercase, underscores) -> synset offsets in sense-number order."""
    senses: dict[str, list[str]] = {}
    with open(path, encoding="utf-8", errors="replace", newline=None) as f:
        for line in f:
            if line.startswith("  ") or not line.strip():
                continue
            fields = line.split()
            lemma, p_cnt = fields[0], int(fields[3])
            synset_cnt = int(fields[2])
            offsets = fields[4 + p_cnt + 2 :]
            senses[lemma] = offsets[:synset_cnt]
    return senses


def read_counts(path: str | Path) -> dict[str, int]:
    """``cntlist.rev``: sense key (``dog%1:05:00::``) -> SemCor tag count."""
    counts: dict[str, int] = {}
    with open(path, encoding="utf-8", errors="replace", newline=None) as f:
        for line in f:
            fields = line.split()
            if len(fields) == 3:
                counts[fields[0]] = int(fields[2])
    return counts


def sense_key(record: SynsetRecord, i: int) -> str:
    """The sense key of a noun synset's i-th lemma, as in ``cntlist.rev`` and ``index.sense``."""
    return f"{record.lemmas[i].lower()}%1:{record.lex_filenum:02d}:{record.lex_ids[i]:02d}::"


def read_license(path: str | Path) -> str:
    """The Princeton licence notice at the head of every data file, without line numbers."""
    lines = []
    with open(path, encoding="utf-8", errors="replace", newline=None) as f:
        for line in f:
            if not line.startswith("  "):
                break
            text = line.strip()
            number, _, rest = text.partition(" ")
            lines.append(rest.rstrip() if number.isdigit() else text)
    return "\n".join(lines).strip() + "\n"


def compact_records(wordnet_dir: str | Path) -> Iterator[str]:
    """The lines of the shipped file, built from ``data.noun`` and ``index.noun``."""
    wordnet_dir = Path(wordnet_dir)
    records = list(read_data(wordnet_dir / "data.noun"))
    senses = read_index(wordnet_dir / "index.noun")
    cnt_path = wordnet_dir / "cntlist.rev"
    counts = read_counts(cnt_path) if cnt_path.exists() else {}
    yield "# WordNet 3.0 nouns, compact graph for circuitcut (see circuitcut/data/wordnet.py)."
    yield "# WordNet 3.0 Copyright 2006 by Princeton University. Licence: wordnet_LICENSE.txt."
    yield "# S offset name hypernyms(i=instance) semcor_count | P part whole | M member group | D thing substance"
    for rec in records:
        lemma = rec.lemmas[0]
        order = senses.get(lemma.lower(), [])
        sense = order.index(rec.offset) + 1 if rec.offset in order else 1
        parents = rec.targets("@") + ["i" + o for o in rec.targets("@i")]
        count = sum(counts.get(sense_key(rec, i), 0) for i in range(len(rec.lemmas)))
        yield f"S\t{rec.offset}\t{lemma}.n.{sense:02d}\t{','.join(parents)}\t{count or ''}"
    for rec in records:
        for symbol, (tag, _, target_is_head) in MERONYM_POINTERS.items():
            for other in rec.targets(symbol):
                head, tail = (other, rec.offset) if target_is_head else (rec.offset, other)
                yield f"{tag}\t{head}\t{tail}"


def write_compact(wordnet_dir: str | Path, out: str | Path) -> Path:
    """Write the shipped gzip TSV reproducibly (fixed gzip timestamp)."""
    out = Path(out)
    payload = ("\n".join(compact_records(wordnet_dir)) + "\n").encode("utf-8")
    with open(out, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=9) as gz:
        gz.write(payload)
    return out


# --------------------------------------------------------------------------------------------
# Run time: the shipped graph
# --------------------------------------------------------------------------------------------


@dataclass
class WordNetGraph:
    """The noun hierarchy and meronym pairs, with ancestry queries.

    Synsets are identified by their 8-digit offset string (``"02084071"``, the dog synset).
    """

    names: dict[str, str]
    parents: dict[str, tuple[str, ...]]
    instance_parents: dict[str, tuple[str, ...]]
    pairs: dict[str, list[tuple[str, str]]]
    counts: dict[str, int] = field(default_factory=dict)
    _lemmas: dict[str, str] = field(default_factory=dict, repr=False)
    _by_name: dict[str, str] = field(default_factory=dict, repr=False)
    _by_lemma: dict[str, list[str]] = field(default_factory=dict, repr=False)
    _children: dict[str, list[str]] | None = field(default=None, repr=False)
    _ancestors: dict[str, frozenset[str]] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        for offset, name in self.names.items():
            lemma, _, sense = name.rsplit(".", 2)
            self._lemmas[offset] = lemma = lemma.replace("_", " ")
            self._by_name[name.lower()] = offset
            self._by_lemma.setdefault(lemma.lower(), []).append(offset)
        for offsets in self._by_lemma.values():
            if len(offsets) > 1:
                offsets.sort(key=lambda o: self.names[o].rsplit(".", 1)[1])

    def __len__(self) -> int:
        return len(self.names)

    def lemma(self, offset: str) -> str:
        """Display form of the first lemma: ``"domestic animal"``, ``"Paris"``."""
        return self._lemmas[offset]

    def count(self, offset: str) -> int:
        """SemCor tag count of the synset (0 for most; familiar concepts have more)."""
        return self.counts.get(offset, 0)

    def all_parents(self, offset: str) -> tuple[str, ...]:
        return self.parents.get(offset, ()) + self.instance_parents.get(offset, ())

    def find(self, query: str) -> list[str]:
        """Synsets matching a name: ``"dog.n.01"``, an offset ``"02084071"``, or a lemma ``"dog"``
        (all synsets whose first lemma it is, most frequent sense first). Case-insensitive."""
        q = query.strip()
        if q in self.names:
            return [q]
        key = q.lower().replace(" ", "_")
        if key in self._by_name:
            return [self._by_name[key]]
        return list(self._by_lemma.get(q.lower().replace("_", " "), []))

    def ancestors(self, offset: str) -> frozenset[str]:
        """All hypernyms (instance hypernyms included) at any depth, excluding the synset itself."""
        cached = self._ancestors.get(offset)
        if cached is not None:
            return cached
        result: set[str] = set()
        for parent in self.all_parents(offset):
            result.add(parent)
            result |= self.ancestors(parent)
        frozen = frozenset(result)
        self._ancestors[offset] = frozen
        return frozen

    def is_under(self, offset: str, ancestor: str) -> bool:
        """True when ``offset`` is ``ancestor`` or one of its hyponyms (at any depth)."""
        return offset == ancestor or ancestor in self.ancestors(offset)

    def hypernym_paths(self, offset: str, max_depth: int) -> Iterator[tuple[str, int]]:
        """Ancestors within ``max_depth`` steps, each once, with its shortest distance (BFS)."""
        seen = {offset}
        queue = deque([(offset, 0)])
        while queue:
            node, depth = queue.popleft()
            if depth == max_depth:
                continue
            for parent in self.all_parents(node):
                if parent not in seen:
                    seen.add(parent)
                    yield parent, depth + 1
                    queue.append((parent, depth + 1))

    def children(self, offset: str) -> list[str]:
        if self._children is None:
            kids: dict[str, list[str]] = {}
            for node in self.names:
                for parent in self.all_parents(node):
                    kids.setdefault(parent, []).append(node)
            self._children = kids
        return self._children.get(offset, [])

    def descendants(self, offset: str) -> set[str]:
        """All hyponyms and instances at any depth, excluding the synset itself."""
        out: set[str] = set()
        stack = [offset]
        while stack:
            for child in self.children(stack.pop()):
                if child not in out:
                    out.add(child)
                    stack.append(child)
        return out


def parse_compact(lines: Iterable[str]) -> WordNetGraph:
    names: dict[str, str] = {}
    parents: dict[str, tuple[str, ...]] = {}
    instance_parents: dict[str, tuple[str, ...]] = {}
    pairs: dict[str, list[tuple[str, str]]] = {relation: [] for relation in TAG_RELATION.values()}
    counts: dict[str, int] = {}
    for line in lines:
        if not line or line.startswith("#"):
            continue
        parts = line.rstrip("\n").split("\t")
        tag = parts[0]
        if tag == "S":
            offset, name = parts[1], parts[2]
            names[offset] = name
            links = [p for p in parts[3].split(",") if p] if len(parts) > 3 else []
            hyper = tuple(p for p in links if not p.startswith("i"))
            inst = tuple(p[1:] for p in links if p.startswith("i"))
            if hyper:
                parents[offset] = hyper
            if inst:
                instance_parents[offset] = inst
            if len(parts) > 4 and parts[4]:
                counts[offset] = int(parts[4])
        elif tag in TAG_RELATION:
            pairs[TAG_RELATION[tag]].append((parts[1], parts[2]))
    return WordNetGraph(names, parents, instance_parents, pairs, counts)


def shipped_path() -> Path:
    """Location of the shipped compact file inside the installed package."""
    return Path(str(resources.files("circuitcut.data") / "files" / SHIPPED_FILE))


def load_graph(path: str | Path | None = None) -> WordNetGraph:
    """Read the compact graph (default: the file shipped in the package). Cached per path."""
    if path is None:
        return _default_graph()
    return _load_graph(str(Path(path).resolve()))


@lru_cache(maxsize=1)
def _default_graph() -> WordNetGraph:
    return _load_graph(str(shipped_path()))


@lru_cache(maxsize=4)
def _load_graph(path: str) -> WordNetGraph:
    source = Path(path)
    if not source.exists():
        raise FileNotFoundError(
            f"WordNet graph file {source} is missing. It ships with circuitcut; rebuild it with "
            "`python scripts/build_wordnet.py` (needs WordNet 3.0, e.g. `apt-get install wordnet-base`)."
        )
    with gzip.open(source, "rb") as raw:
        return parse_compact(io.TextIOWrapper(raw, encoding="utf-8"))
