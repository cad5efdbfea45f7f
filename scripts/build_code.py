"""Build circuitcut's shipped non-Python code: CPython's C headers and permissively licensed JavaScript.

The ``code`` corpus is Python from the user's own standard library plus this file, so that it
holds several languages on any machine, including one whose Python lacks its C headers or has no
Node.js. Sources, each file recorded with its language, package and licence:

* C: the headers of the running CPython (``sysconfig.get_paths()["include"]``), PSF licence;
* JavaScript: the modules that npm bundles (``<npm>/node_modules``) whose package licence is MIT,
  ISC or BSD, without tests, examples, minified or UMD bundles and duplicate builds (a package
  shipping both an ESM and a CommonJS build keeps only the ESM one, so that no two files share
  their code across the statistics and evaluation splits); at most ``MAX_PACKAGE_BYTES`` per
  package, so that a few large packages do not make up most of it.

Output: ``circuitcut/data/files/code.jsonl.xz`` (one JSON object per file: ``path``, ``language``,
``package``, ``licence``, ``text``) and ``code.NOTICE.md`` (provenance and every licence text).

Usage (a build-time step, not run by users)::

    python scripts/build_code.py [--npm /usr/lib/node_modules/npm]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import lzma
import platform
import sys
import sysconfig
from pathlib import Path

OUT_DIR = Path(__file__).resolve().parent.parent / "circuitcut" / "data" / "files"
JS_LICENCES = {"MIT", "ISC", "BSD-2-Clause", "BSD-3-Clause"}
JS_SUFFIXES = {".js", ".cjs", ".mjs"}
SKIP_DIRS = {"node_modules", "test", "tests", "__tests__", "example", "examples", "bench", "benchmark"}
MAX_FILE_BYTES = 200_000  # larger JavaScript files here are generated bundles
MAX_MEAN_LINE = 150  # minified code has very long lines
MAX_PACKAGE_BYTES = 60_000
ESM_DIRS, CJS_DIRS = {"esm", "mjs", "libesm"}, {"commonjs", "cjs", "libcjs"}
LICENCE_NAMES = ("LICENSE", "LICENSE.md", "LICENSE.txt", "LICENCE", "license", "license.md", "LICENSE-MIT")


def c_headers() -> tuple[list[dict], str]:
    """Every CPython header, and the PSF licence that covers them."""
    include = Path(sysconfig.get_paths()["include"])
    version = platform.python_version()
    records = [
        {
            "path": f"cpython-{version}/Include/{path.relative_to(include).as_posix()}",
            "language": "c",
            "package": f"CPython {version}",
            "licence": "PSF-2.0",
            "text": path.read_text(encoding="utf-8"),
        }
        for path in sorted(include.rglob("*.h"))
    ]
    licence = Path(sysconfig.get_paths()["stdlib"]) / "LICENSE.txt"
    return records, f"## CPython {version} (C headers): PSF License\n\n```\n{licence.read_text()}\n```\n"


def _packages(node_modules: Path) -> list[Path]:
    return sorted(p.parent for p in [*node_modules.glob("*/package.json"), *node_modules.glob("@*/*/package.json")])


def _is_handwritten(path: Path, rel: Path, text: str) -> bool:
    if SKIP_DIRS & set(rel.parts[:-1]) or path.name.endswith(".min.js") or "__generated__" in rel.parts:
        return False
    if len(text.encode()) > MAX_FILE_BYTES or not text.strip() or "define.amd" in text:
        return False  # too large, empty, or a UMD bundle of code found elsewhere
    lines = text.splitlines()
    return len(text) / max(len(lines), 1) <= MAX_MEAN_LINE


def javascript(npm: Path) -> tuple[list[dict], str]:
    """npm's bundled modules under MIT, ISC or BSD licences, with each package's licence text."""
    records, notices, seen = [], [], set()
    for package in _packages(npm / "node_modules"):
        meta = json.loads((package / "package.json").read_text())
        licence = meta.get("license")
        licence_file = next((package / n for n in LICENCE_NAMES if (package / n).is_file()), None)
        if licence not in JS_LICENCES or licence_file is None:
            continue
        name = f"{meta['name']}@{meta['version']}"
        files = sorted(p for p in package.rglob("*") if p.suffix in JS_SUFFIXES and p.is_file())
        if any(ESM_DIRS & set(p.relative_to(package).parts) for p in files):
            files = [p for p in files if not CJS_DIRS & set(p.relative_to(package).parts)]
        kept, kept_bytes = 0, 0
        for path in files:
            rel = path.relative_to(package)
            text = path.read_text(encoding="utf-8")
            digest = hashlib.sha256(text.encode()).digest()
            size = len(text.encode())
            if digest in seen or kept_bytes + size > MAX_PACKAGE_BYTES or not _is_handwritten(path, rel, text):
                continue
            seen.add(digest)
            kept_bytes += size
            records.append({"path": f"{meta['name']}/{rel.as_posix()}", "language": "javascript",
                            "package": name, "licence": licence, "text": text})
            kept += 1
        if kept:
            notices.append(f"## {name} ({licence}, {kept} files)\n\n```\n{licence_file.read_text().strip()}\n```\n")
    return records, "\n".join(notices)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--npm", default="/usr/lib/node_modules/npm", help="npm's install folder")
    args = parser.parse_args()
    npm = Path(args.npm)
    npm_version = json.loads((npm / "package.json").read_text())["version"]
    c_records, c_notice = c_headers()
    js_records, js_notice = javascript(npm)
    records = c_records + js_records
    payload = "".join(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in records).encode()
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    (OUT_DIR / "code.jsonl.xz").write_bytes(lzma.compress(payload, preset=9 | lzma.PRESET_EXTREME))
    languages = ("c", "javascript")
    sizes = {lang: sum(len(r["text"].encode()) for r in records if r["language"] == lang) for lang in languages}
    counts = {lang: sum(r["language"] == lang for r in records) for lang in sizes}
    header = f"""# code.jsonl.xz: provenance and licences

Source code in two languages, one JSON object per file with the keys `path`, `language`,
`package`, `licence` and `text`, built by `scripts/build_code.py` (Python {sys.version.split()[0]}):

- C: {counts['c']} files, {sizes['c']:,} bytes: the headers of CPython {platform.python_version()}
  (`sysconfig.get_paths()["include"]`), under the PSF License.
- JavaScript: {counts['javascript']} files, {sizes['javascript']:,} bytes: modules bundled with npm {npm_version}
  (`{npm}/node_modules`), only packages under MIT, ISC or BSD licences, without tests, examples,
  minified or UMD bundles and duplicate CommonJS builds, at most {MAX_PACKAGE_BYTES:,} bytes per package.

The files are unmodified. Each is distributed under its own licence, reproduced below with its
copyright notice; none of them applies to the rest of circuitcut. The Python part of the `code`
corpus is read at run time from the user's own standard library and is not shipped.

"""
    (OUT_DIR / "code.NOTICE.md").write_text(header + c_notice + "\n" + js_notice)
    print(f"{counts} files, {sizes} bytes, {(OUT_DIR / 'code.jsonl.xz').stat().st_size / 1e6:.2f} MB compressed")


if __name__ == "__main__":
    main()
