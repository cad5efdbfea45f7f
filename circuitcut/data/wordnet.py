"""WordNet 3.0 nouns: the compact graph shipped in ``files/wordnet_nouns.tsv.gz``.

:func:`load_graph` reads only the shipped file; no WordNet installation is needed.
``scripts/build_wordnet.py`` builds the file from the Princeton database.

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

#: record tag of the shipped file -> relation (see the format above)
TAG_RELATION = {"P": "PartOf", "M": "MemberOf", "D": "MadeOf"}


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
