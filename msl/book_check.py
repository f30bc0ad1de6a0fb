"""Checks of the published book: the committed results of each study, and the built HTML.

``check_results(study_dir)`` compares a study's committed records and executed notebooks with its
grid: every cell has a complete ``records/<cell_id>.json`` with status ok, no record is left over
from an older grid, and ``data.ipynb`` and ``analysis.ipynb`` are valid notebooks without error
outputs. ``check_html(html_dir)`` reads every page that ``jupyter-book build`` wrote and reports
error output or tracebacks rendered into a page, unresolved cross-references, local images, links
and ``#anchors`` that do not resolve, and anything fetched from the network (MathJax must be the
copy in ``_static/mathjax``, so that formulas render offline). Both return a list of problems,
one line each, empty when all is well::

    python -m msl.book_check book/_build/html      # the built pages
    python -m msl.book_check book/*/grid.yaml      # every study's results (or name its folder)
"""

from __future__ import annotations

import json
import math
import re
import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

NOTEBOOKS = ("data.ipynb", "analysis.ipynb")
# what msl.analysis, msl.plot and the notebooks read from a record
RECORD_KEYS = ("cell_id", "status", "model", "size", "n_train", "seed", "epochs", "n_params",
               "steps", "flops", "metrics", "history", "config", "versions", "git_commit")
RECORD_METRICS = ("val/loss", "test/loss")
LOCAL_MATHJAX = "_static/mathjax/tex-chtml.js"
# text that only appears in a page when something failed: in any text of the page ...
PAGE_ERRORS = re.compile(r"Traceback \(most recent call last\)|ModuleNotFoundError|"
                         r"[Cc]ould not import")
# ... and inside a notebook cell's output
OUTPUT_ERRORS = re.compile(r"\b[A-Z]\w*(?:Error|Exception): ")
ERROR_CLASSES = {"traceback": "a traceback output", "stderr": "a stderr output",
                 "system-message": "a Sphinx/docutils error message",
                 "problematic": "a markup error"}


# --- committed results --------------------------------------------------------------------------

def check_results(study_dir: str | Path) -> list[str]:
    """Problems of a study's committed results against its grid (empty list: complete)."""
    from msl.grid import load

    study_dir = Path(study_dir)
    grid = load(study_dir)
    cells = {cfg.cell_id for cfg, _ in grid.cells()}
    records = {p.stem: p for p in sorted(grid.record_dir.glob("*.json"))}
    if not records:
        return ([f"{study_dir}: no records for its {len(cells)} cells "
                 f"(run `msl study {study_dir}`)"]
                + [p for name in NOTEBOOKS for p in check_notebook(study_dir / name)])
    problems = [f"{study_dir}: cell {cell} has no record {grid.record_dir / (cell + '.json')}"
                for cell in cells if cell not in records]
    problems += [f"{path}: stale record, no cell of {study_dir / 'grid.yaml'} has this id"
                 for cell, path in records.items() if cell not in cells]
    for cell, path in records.items():
        problems += _check_record(path)
    for name in NOTEBOOKS:
        problems += check_notebook(study_dir / name)
    return problems


def _check_record(path: Path) -> list[str]:
    try:
        rec = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        return [f"{path}: not valid JSON ({err})"]
    if not isinstance(rec, dict):
        return [f"{path}: not a record (a JSON {type(rec).__name__}, not an object)"]
    missing = [k for k in RECORD_KEYS if k not in rec]
    if missing:
        return [f"{path}: lacks {', '.join(missing)}"]
    problems = []
    if rec["cell_id"] != path.stem:
        problems.append(f"{path}: cell_id {rec['cell_id']!r} does not match the file name")
    if rec["status"] != "ok":
        problems.append(f"{path}: status {rec['status']!r}, not 'ok'"
                        + (f" ({rec.get('error')})" if rec.get("error") else ""))
    metrics = rec["metrics"] if isinstance(rec["metrics"], dict) else {}
    for key in RECORD_METRICS:
        value = metrics.get(key)
        if not isinstance(value, (int, float)) or not math.isfinite(value):
            problems.append(f"{path}: metrics[{key!r}] is {value!r}, not a finite number")
    history = rec["history"]
    if (not isinstance(history, list) or not history
            or not all(isinstance(h, dict) and "step" in h and "val/loss" in h for h in history)):
        problems.append(f"{path}: history is not a list of validations with step and val/loss")
    if not isinstance(rec["config"], dict) or rec["config"].get("cell_id") != rec["cell_id"]:
        problems.append(f"{path}: config is missing or belongs to another cell")
    if not isinstance(rec["versions"], dict) or not rec["versions"].get("msl"):
        problems.append(f"{path}: versions does not name the msl version")
    return problems


def check_notebook(path: str | Path) -> list[str]:
    """Problems of an executed notebook: missing, invalid, an error output or a failed cell."""
    import nbformat

    path = Path(path)
    if not path.exists():
        return [f"{path}: missing"]
    try:
        nb = nbformat.read(path, as_version=4)
        nbformat.validate(nb)
    except Exception as err:  # nbformat raises several kinds for unreadable or invalid files
        return [f"{path}: not a valid notebook ({type(err).__name__}: {err})"]
    problems = []
    for i, cell in enumerate(nb.cells):
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                problems.append(f"{path}: cell {i} has an error output "
                                f"({out.get('ename')}: {out.get('evalue')})")
        if cell.get("metadata", {}).get("papermill", {}).get("exception"):
            problems.append(f"{path}: cell {i} raised an exception when executed")
    return problems


# --- built HTML ---------------------------------------------------------------------------------

class _Page(HTMLParser):
    """Everything the checks need from one page, in one pass."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.ids: set[str] = set()
        self.links: list[str] = []        # <a href>, <link href>
        self.images: list[str] = []       # <img src>, every srcset candidate
        self.scripts: list[str] = []      # <script src>
        self.stylesheets: list[str] = []  # <link rel=stylesheet href>
        self.errors: list[str] = []
        self.has_math = False
        self._in_a = 0
        self._divs: list[bool] = []       # per open <div>: is it (inside) a cell output?
        self._skip = 0                    # inside <script> or <style>
        self._xref = False

    def handle_starttag(self, tag, attrs):
        a = {k: v or "" for k, v in attrs}
        for key in ("id", "name") if tag == "a" else ("id",):
            if a.get(key):
                self.ids.add(a[key])
        classes = set(a.get("class", "").split())
        if "math" in classes:
            self.has_math = True
        for cls, what in ERROR_CLASSES.items():
            if cls in classes and not (cls == "stderr" and "output" not in classes):
                self.errors.append(f"{what} (class {a['class']!r})")
        if tag == "span" and "xref" in classes and not self._in_a:
            self._xref = True   # Sphinx leaves a reference it could not resolve unlinked
        if tag == "a":
            self._in_a += 1
            if "href" in a:
                self.links.append(a["href"])
        elif tag == "link" and a.get("href"):
            (self.stylesheets if "stylesheet" in a.get("rel", "") else self.links).append(a["href"])
        elif tag in ("img", "source"):
            if a.get("src"):
                self.images.append(a["src"])
            for candidate in a.get("srcset", "").split(","):
                if candidate.strip():
                    self.images.append(candidate.split()[0])
        elif tag == "script":
            self._skip += 1
            if a.get("src"):
                self.scripts.append(a["src"])
        elif tag == "style":
            self._skip += 1
        if tag == "div":
            inside = bool(self._divs and self._divs[-1])
            self._divs.append(inside or bool({"cell_output", "output"} & classes))

    def handle_startendtag(self, tag, attrs):
        self.handle_starttag(tag, attrs)
        if tag in ("a", "script", "style", "div"):
            self.handle_endtag(tag)

    def handle_endtag(self, tag):
        if tag == "a":
            self._in_a = max(0, self._in_a - 1)
        elif tag in ("script", "style"):
            self._skip = max(0, self._skip - 1)
        elif tag == "div" and self._divs:
            self._divs.pop()

    def handle_data(self, data):
        if self._skip:
            return
        if self._xref:
            self.errors.append(f"unresolved cross-reference {data.strip()!r}")
            self._xref = False
        found = PAGE_ERRORS.search(data)
        if not found and self._divs and self._divs[-1]:
            found = OUTPUT_ERRORS.search(data)
        if found:
            self.errors.append(f"error text {data.strip()[:120]!r}")


def _parse(path: Path) -> _Page:
    page = _Page()
    page.feed(path.read_text(encoding="utf-8", errors="replace"))
    page.close()
    return page


def _external(url: str) -> bool:
    return bool(urlsplit(url).scheme) or url.startswith("//")


def _target(page: Path, url: str) -> tuple[Path, str] | None:
    """(file, fragment) that a local URL of ``page`` points at; None for a remote or data URL."""
    if _external(url):
        return None
    parts = urlsplit(url)
    target = (page.parent / unquote(parts.path)).resolve() if parts.path else page.resolve()
    if parts.path.endswith("/") or target.is_dir():
        target = target / "index.html"
    return target, unquote(parts.fragment)


def check_html(html_dir: str | Path) -> list[str]:
    """Problems of a built book (``<build>/_build/html``), one line each naming the page."""
    root = Path(html_dir).resolve()
    if not root.is_dir():
        return [f"{html_dir}: no such folder (build the book first)"]
    pages = sorted(p for p in root.rglob("*.html")
                   if not {"_static", "_sources", "_images"} & set(p.relative_to(root).parts))
    if not pages:
        return [f"{html_dir}: no HTML pages"]
    parsed = {p.resolve(): _parse(p) for p in pages}
    problems = []

    def ids(path: Path) -> set[str] | None:
        if path not in parsed:
            parsed[path] = _parse(path)
        return parsed[path].ids

    for path in pages:
        page, name = parsed[path.resolve()], path.relative_to(root).as_posix()
        problems += [f"{name}: {e}" for e in dict.fromkeys(page.errors)]
        for url in page.images:
            if url.startswith("data:"):
                continue
            t = _target(path, url)
            if t is None:
                problems.append(f"{name}: image {url} is fetched from the network")
            elif not t[0].is_file():
                problems.append(f"{name}: image {url} does not exist")
        for kind, urls in (("script", page.scripts), ("stylesheet", page.stylesheets)):
            for url in urls:
                t = _target(path, url)
                if t is None:
                    problems.append(f"{name}: {kind} {url} is fetched from the network")
                elif not t[0].is_file():
                    problems.append(f"{name}: {kind} {url} does not exist")
        for url in page.links:
            t = _target(path, url)
            if t is None or url.startswith("#") and not url[1:]:
                continue
            file, fragment = t
            if not file.exists():
                problems.append(f"{name}: link {url} points to a missing file")
            elif fragment and file.suffix == ".html" and fragment not in ids(file):
                where = file.relative_to(root).as_posix() if file.is_relative_to(root) else file
                problems.append(f"{name}: link {url}: no id {fragment!r} in {where}")
        mathjax = [u for u in page.scripts if "mathjax" in u.lower()]
        if page.has_math and not any(urlsplit(u).path.endswith(LOCAL_MATHJAX) and not _external(u)
                                     for u in mathjax):
            problems.append(f"{name}: has formulas but does not load the local {LOCAL_MATHJAX}")
    return problems


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args:
        print(__doc__.split("::")[-1].rstrip(), file=sys.stderr)
        return 2
    problems = []
    for arg in args:
        path = Path(arg)
        if path.name == "grid.yaml":
            path = path.parent
        problems += check_results(path) if (path / "grid.yaml").exists() else check_html(path)
    for line in problems:
        print(line)
    print(f"{len(problems)} problem(s) in {', '.join(args)}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
