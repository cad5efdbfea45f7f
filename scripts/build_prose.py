"""Build circuitcut's shipped prose corpus from the Wikipedia sample inside the gensim wheel.

The gensim 4.4.0 wheel on PyPI carries 106 English Wikipedia articles (a 2016 dump excerpt) as a
test file. This script strips their wiki markup with ``mwparserfromhell`` and keeps only running
prose: references, tables, images, lists, templates, category lines, reference-like sections
(References, See also, External links ...) and sections left empty are dropped; redirects and
disambiguation pages are skipped. The result is written as one JSON object per article (title,
revision id, text), xz-compressed, next to a notice with the attribution and licence (CC BY-SA).

Usage (a build-time step, not run by users; needs ``pip install mwparserfromhell``)::

    python scripts/build_prose.py [--wheel gensim-4.4.0-....whl]

Without ``--wheel`` the wheel is fetched with ``pip download --no-deps gensim==4.4.0``.
"""

from __future__ import annotations

import argparse
import bz2
import hashlib
import io
import json
import lzma
import re
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path

import mwparserfromhell as mw
from mwparserfromhell.nodes import Comment, ExternalLink, Heading, HTMLEntity, Tag, Template, Text, Wikilink

GENSIM = "gensim==4.4.0"
MEMBER = "gensim/test/test_data/enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"
OUT_DIR = Path(__file__).resolve().parent.parent / "circuitcut" / "data" / "files"
XMLNS = "{http://www.mediawiki.org/xml/export-0.10/}"

# Sections that hold citations or link lists rather than prose; dropped with their subsections.
DROP_SECTIONS = {
    "references", "notes", "footnotes", "citations", "sources", "bibliography", "further reading",
    "external links", "see also", "works cited", "notes and references", "references and notes",
    "other uses", "selected works", "works", "publications", "discography", "filmography",
}
DROP_TAGS = {"ref", "references", "table", "gallery", "math", "code", "source", "syntaxhighlight",
             "timeline", "imagemap", "score", "hr", "onlyinclude"}
LIST_TAGS = {"li", "dd", "dt", "ol", "ul"}  # wiki list markers (*, #, :, ;) parse as these
LINK_DROP = {"file", "image", "media", "category"}
# Inline templates whose text belongs to the sentence; every other template is dropped.
FIRST_PARAM = {"nowrap", "vanchor", "smaller", "small", "sc", "angbr", "val", "nihongo", "sic"}
LAST_PARAM = {"lang", "transl"}
RANGE_WORDS = {"to", "-", "–", "and", "or", "by", "x", "×", "+/-", "±"}
LIST_MARK = "\x00"  # marks a line that began as a list item or table row; such lines are dropped


def _params(template: Template) -> list[str]:
    return [render(p.value).strip() for p in template.params if not p.showkey]


def _template(template: Template) -> str:
    name = str(template.name).strip().lower()
    args = _params(template)
    if name == "convert" and args:
        if len(args) >= 4 and args[1] in RANGE_WORDS:
            return f"{args[0]} {args[1]} {args[2]} {args[3]}"
        return " ".join(args[:2])
    if name in FIRST_PARAM and args:
        return args[0]
    if (name in LAST_PARAM or name.startswith("lang-")) and args:
        return args[-1]
    if name == "as of" and args:
        return str(template.name).strip()[:2] + " of " + args[0]
    if name == "frac" and args:
        return "/".join(args)
    if name in ("chem", "respell"):
        return ("" if name == "chem" else "-").join(args)
    if name == "'s":
        return "'s"
    return ""


def render(code) -> str:
    """Plain text of a wikicode tree: link text kept, markup and non-prose nodes removed."""
    out = []
    for node in code.nodes:
        if isinstance(node, Text):
            out.append(str(node))
        elif isinstance(node, Wikilink):
            target = str(node.title).strip().lstrip(":")
            prefix = target.split(":", 1)[0].strip().lower() if ":" in target else ""
            if prefix in LINK_DROP or (prefix and len(prefix) <= 3 and prefix.isalpha()):
                continue  # files, categories and interlanguage links are not prose
            out.append(render(node.text) if node.text is not None else target.split("#")[0])
        elif isinstance(node, ExternalLink):
            out.append(render(node.title) if node.title is not None else "")
        elif isinstance(node, Template):
            out.append(_template(node))
        elif isinstance(node, Tag):
            tag = str(node.tag).strip().lower()
            if tag in LIST_TAGS or tag in ("tr", "td", "th"):
                out.append(LIST_MARK)
            elif tag == "br":
                out.append(" ")
            elif tag not in DROP_TAGS and node.contents is not None:
                out.append(render(node.contents))
        elif isinstance(node, HTMLEntity):
            out.append(node.normalize())
        elif isinstance(node, Heading):
            out.append(f"\n\x01{node.level}\x01{render(node.title).strip()}\n")
        elif not isinstance(node, Comment):
            continue  # arguments and the like carry no prose
    return "".join(out)


def _tidy(line: str) -> str:
    """Repair what removed templates and references leave behind: empty brackets, stray spaces."""
    line = re.sub(r"\s+", " ", line).strip()
    for _ in range(3):
        line = re.sub(r"\(\s*[,;:]?\s*(or|;|,)?\s*\)", "", line)
        line = re.sub(r"\(\s*[,;:]\s*", "(", line)
        line = re.sub(r"\s*[,;:]\s*\)", ")", line)
        line = re.sub(r"\[\s*\]|\s?\(\"\"\)|\s?\"\"", "", line)
    line = re.sub(r"\s+([,.;:!?)])", r"\1", line)
    line = re.sub(r"\(\s+", "(", line)
    line = re.sub(r",\s*,", ",", line)
    return re.sub(r"\s+", " ", line).strip()


def _is_paragraph(line: str) -> bool:
    """Running prose: a sentence of some length, with no markup that the parser left unparsed."""
    return (
        len(line.split()) >= 8
        and re.search(r"[.!?][\"'”’)]*$", line) is not None
        and re.search(r"\{\{|\}\}|\[\[|\]\]|</?[a-zA-Z]+[^>]*>", line) is None
    )


def article_text(title: str, wikitext: str) -> str:
    """Title, then the article's prose paragraphs under the headings of non-empty sections."""
    lines = render(mw.parse(wikitext)).split("\n")
    blocks: list[str] = [title]
    pending: list[tuple[int, str]] = []  # headings waiting for their first paragraph
    drop_level = 0  # inside a dropped section of this level (0: not dropping)
    for raw in lines:
        if raw.startswith("\x01"):
            _, level, heading = raw.split("\x01", 2)
            level, heading = int(level), _tidy(heading)
            if drop_level and level > drop_level:
                continue
            drop_level = level if heading.lower() in DROP_SECTIONS else 0
            pending = [(lvl, h) for lvl, h in pending if lvl < level]
            if not drop_level:
                pending.append((level, heading))
            continue
        if drop_level or LIST_MARK in raw or raw.lstrip().startswith(("{|", "|", "!", "----")):
            continue
        line = _tidy(raw)
        if not _is_paragraph(line):
            continue
        blocks.extend(h for _, h in pending)
        pending = []
        blocks.append(line)
    return "\n\n".join(blocks)


def articles(xml_bytes: bytes):
    """(title, revision id, timestamp, wikitext) of each main-namespace article that is prose."""
    for _, el in ET.iterparse(io.BytesIO(xml_bytes)):
        if el.tag != XMLNS + "page":
            continue
        title = el.findtext(XMLNS + "title")
        rev = el.find(XMLNS + "revision")
        text = rev.findtext(XMLNS + "text") or ""
        skip = (
            el.findtext(XMLNS + "ns") != "0"
            or el.find(XMLNS + "redirect") is not None
            or "(disambiguation)" in title
            or re.search(r"\{\{\s*(disambiguation|disambig|dab|geodis|hndis)\b", text, re.I)
        )
        if not skip:
            yield title, rev.findtext(XMLNS + "id"), rev.findtext(XMLNS + "timestamp"), text
        el.clear()


def _wheel(path: str | None) -> Path:
    if path:
        return Path(path)
    folder = Path(tempfile.mkdtemp(prefix="gensim-"))
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", GENSIM, "-d", str(folder)], check=True)
    return next(folder.glob("gensim-*.whl"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--wheel", help="path of the gensim 4.4.0 wheel (downloaded when omitted)")
    args = parser.parse_args()
    wheel = _wheel(args.wheel)
    raw = zipfile.ZipFile(wheel).read(MEMBER)
    records, stamps = [], []
    for title, revid, stamp, wikitext in articles(bz2.decompress(raw)):
        text = article_text(title, wikitext)
        if text.count("\n\n") >= 1:  # at least one paragraph beyond the title
            records.append({"title": title, "revision": int(revid), "text": text})
            stamps.append(stamp)
    payload = "".join(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in records).encode()
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    (OUT_DIR / "prose.jsonl.xz").write_bytes(lzma.compress(payload, preset=9 | lzma.PRESET_EXTREME))
    n_chars = sum(len(r["text"]) for r in records)
    n_bytes = sum(len(r["text"].encode()) for r in records)
    (OUT_DIR / "prose.NOTICE.md").write_text(_notice(records, wheel.name, hashlib.sha256(raw).hexdigest(),
                                                     min(stamps), max(stamps), n_chars, n_bytes))
    print(f"{len(records)} articles, {n_bytes / 1e6:.2f} MB of text, "
          f"{(OUT_DIR / 'prose.jsonl.xz').stat().st_size / 1e6:.2f} MB compressed")


def _notice(records, wheel: str, sha: str, first: str, last: str, n_chars: int, n_bytes: int) -> str:
    rows = "\n".join(
        f"- {r['title']}: https://en.wikipedia.org/w/index.php?oldid={r['revision']}" for r in records
    )
    return f"""# prose.jsonl.xz: provenance and licence

Text of {len(records)} English Wikipedia articles ({n_chars:,} characters, {n_bytes:,} bytes of UTF-8),
one JSON object per line with the keys `title`, `revision` (the Wikipedia revision id) and `text`.

**Authors:** Wikipedia contributors. The revision history of each article, reachable from the
links below, lists its authors.

**Licence:** Creative Commons Attribution-ShareAlike 3.0 Unported (CC BY-SA 3.0),
https://creativecommons.org/licenses/by-sa/3.0/ (Wikipedia text of this period is also available
under the GNU Free Documentation License). This file is a modified version of that text and is
shared under the same licence; the rest of circuitcut is not affected by it.

**Source:** the file `{MEMBER}` inside the wheel `{wheel}` from PyPI (package gensim 4.4.0; the
data file is an excerpt of the enwiki dump `enwiki-latest-pages-articles1.xml-p000000010p000030302`,
revisions dated {first} to {last}); SHA-256 of the bz2 file: `{sha}`.

**Changes:** wiki markup stripped with mwparserfromhell by `scripts/build_prose.py`; redirects
and disambiguation pages skipped; references, tables, images and files, lists, templates (except
inline ones such as unit conversions and foreign-language terms, reduced to their text), category
and interlanguage links, reference and link sections (References, Notes, See also, External links,
Further reading, Bibliography ...), formulas and sections left without prose removed; a paragraph
is kept when it has at least 8 words and ends a sentence.

## Articles (title: the revision used)

{rows}
"""


if __name__ == "__main__":
    main()
