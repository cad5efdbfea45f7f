"""Build the compact WordNet 3.0 noun graph shipped in ``circuitcut/data/files/``.

Needs the Princeton WordNet 3.0 database, e.g. Debian's ``wordnet-base``::

    apt-get update && apt-get install -y wordnet-base
    python scripts/build_wordnet.py            # reads /usr/share/wordnet

Writes ``wordnet_nouns.tsv.gz`` (format in ``circuitcut/data/wordnet.py``) and
``wordnet_LICENSE.txt`` (the Princeton notice, which must accompany every copy). The output is
byte-for-byte reproducible. Users and CI never need this script: the runtime reads only the
shipped file.
"""

from __future__ import annotations

import argparse
import gzip
from collections import Counter
from pathlib import Path

from circuitcut.data.wordnet import LICENSE_FILE, SHIPPED_FILE, read_license, write_compact

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
