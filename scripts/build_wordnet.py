"""Build the compact WordNet 3.0 noun graph shipped in ``circuitcut/data/files/``.

Needs the Princeton WordNet 3.0 database, e.g. Debian's ``wordnet-base``::

    apt-get update && apt-get install -y wordnet-base
    python scripts/build_wordnet.py            # reads /usr/share/wordnet

Writes ``wordnet_nouns.tsv.gz`` (format in ``circuitcut/data/wordnet.py``) and
``wordnet_LICENSE.txt`` (the Princeton notice, which must accompany every copy). The output is
byte-for-byte reproducible. Users and CI never need this script: the runtime reads only the
shipped file.

Pointer directions in ``data.noun`` (synset X holds ``%p Y``): Y is a part of X; ``%m Y``: Y is a
member of X; ``%s Y``: Y is a substance of X, i.e. X is made of Y. ``@ Y``: Y is a hypernym of X;
``@i Y``: X is an instance of Y.
"""

from __future__ import annotations

import argparse
import gzip
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from circuitcut.data.wordnet import LICENSE_FILE, SHIPPED_FILE

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "circuitcut" / "data" / "files"

NOTICE_HEADER = """\
The file wordnet_nouns.tsv.gz is derived from WordNet 3.0 (data.noun, index.noun, cntlist.rev):
the noun hypernym hierarchy, the first lemma of every noun synset, SemCor tag counts, and the
part, member and substance meronym pointers, rewritten by scripts/build_wordnet.py of
circuitcut. It is distributed under the WordNet 3.0 licence reproduced below.

George A. Miller (1995). WordNet: A Lexical Database for English. Communications of the ACM
Vol. 38, No. 11: 39-41. Christiane Fellbaum (1998, ed.) WordNet: An Electronic Lexical
Database. Cambridge, MA: MIT Press. https://wordnet.princeton.edu/

WordNet Release 3.0
"""


#: meronym pointer symbol -> (record tag, True when the pointer's target is the head)
MERONYM_POINTERS: dict[str, tuple[str, bool]] = {
    "%p": ("P", True),  # X %p Y: Y is part of X -> (Y, PartOf, X)
    "%m": ("M", True),  # X %m Y: Y is a member of X -> (Y, MemberOf, X)
    "%s": ("D", False),  # X %s Y: Y is a substance of X -> (X, MadeOf, Y)
}


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
        for symbol, (tag, target_is_head) in MERONYM_POINTERS.items():
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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--wordnet-dir", default="/usr/share/wordnet", help="folder with data.noun and index.noun")
    parser.add_argument("--out-dir", default=str(DEFAULT_OUT))
    args = parser.parse_args(argv)
    wordnet_dir, out_dir = Path(args.wordnet_dir), Path(args.out_dir)
    if not (wordnet_dir / "data.noun").exists():
        parser.error(f"{wordnet_dir}/data.noun not found: install WordNet 3.0 (apt-get install -y wordnet-base).")
    out_dir.mkdir(parents=True, exist_ok=True)
    out = write_compact(wordnet_dir, out_dir / SHIPPED_FILE)
    (out_dir / LICENSE_FILE).write_text(NOTICE_HEADER + "\n" + read_license(wordnet_dir / "data.noun"))
    with gzip.open(out, "rt", encoding="utf-8") as f:
        counts = Counter(line.split("\t", 1)[0] for line in f if not line.startswith("#"))
    print(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB): {dict(counts)}")


if __name__ == "__main__":
    main()
