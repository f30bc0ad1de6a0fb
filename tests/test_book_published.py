"""The published book: each study's committed results (records, data and analysis notebooks)
are complete for its grid, and the book built from them (``make book``, no training) has no
error output, no broken link or image and reads its formulas with the bundled MathJax.

Until a study's results are committed its checks skip with the reason; the checkers themselves
are tested on a tiny study and on handmade pages, and always run."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
import yaml

from msl.book_check import check_html, check_notebook, check_results, main

ROOT = Path(__file__).resolve().parents[1]
STUDIES = sorted(p.parent for p in (ROOT / "book").glob("*/grid.yaml"))
FIXTURE = ROOT / "tests" / "fixtures" / "study"


def _tracked(folder: Path) -> list[str] | None:
    """Files under ``folder`` that git tracks (relative to it); None outside a git checkout."""
    try:
        out = subprocess.run(["git", "ls-files", "--", str(folder.relative_to(ROOT))], cwd=ROOT,
                             capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        return None
    return [str(Path(line).relative_to(folder.relative_to(ROOT))) for line in out.stdout.splitlines()]


def _committed(study: Path) -> tuple[list[str], str]:
    """(committed files of the study, reason to skip when it has no committed records)."""
    tracked = _tracked(study)
    if tracked is None:  # an exported tree, not a clone: what is there is what was published
        tracked = [str(p.relative_to(study)) for p in study.rglob("*") if p.is_file()]
    if not any(f.startswith("records/") and f.endswith(".json") for f in tracked):
        on_disk = len(list((study / "records").glob("*.json")))
        return tracked, (f"{study.relative_to(ROOT)}: results not committed yet"
                         + (f" ({on_disk} records on disk, untracked)" if on_disk else ""))
    return tracked, ""


@pytest.mark.parametrize("study", STUDIES, ids=lambda p: p.name)
def test_committed_results_cover_the_grid(study):
    tracked, reason = _committed(study)
    if reason:
        pytest.skip(reason)
    problems = check_results(study)
    on_disk = [str(p.relative_to(study)) for p in (study / "records").glob("*.json")]
    on_disk += [name for name in ("data.ipynb", "analysis.ipynb") if (study / name).exists()]
    problems += [f"{study.relative_to(ROOT)}/{f} is not committed" for f in sorted(set(on_disk) - set(tracked))]
    assert not problems, "\n".join(problems)


@pytest.mark.slow
def test_book_built_from_committed_results_has_no_problems(tmp_path):
    missing = [reason for reason in (_committed(s)[1] for s in STUDIES) if reason]
    if missing:
        pytest.skip("; ".join(missing))
    exe = Path(sys.executable).with_name("jupyter-book")
    cmd = [str(exe) if exe.exists() else "jupyter-book", "build", str(ROOT), "--path-output",
           str(tmp_path)]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=1200)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    html = tmp_path / "_build" / "html"
    problems = check_html(html)
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    pages = [toc["root"]] + [ch["file"] for part in toc.get("parts", []) for ch in part["chapters"]]
    problems += [f"{page}: in _toc.yml but not built" for page in pages
                 if not (html / f"{page}.html").is_file()]
    problems += [line for line in (out.stdout + out.stderr).splitlines() if "WARNING" in line]
    assert not problems, "\n".join(problems)
    assert (html / "_static" / "mathjax" / "tex-chtml.js").is_file()


# --- the results checker, on a tiny study made from the CI fixture -------------------------------

def _notebook(path: Path, error: bool = False) -> None:
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("1 + 1", execution_count=1)
    cell.outputs = [nbformat.v4.new_output("execute_result", {"text/plain": "2"}, execution_count=1)]
    if error:
        cell.outputs = [nbformat.v4.new_output("error", ename="ValueError", evalue="bad D",
                                               traceback=["ValueError: bad D"])]
    nb.cells = [nbformat.v4.new_markdown_cell("# A study"), cell]
    nbformat.write(nb, path)


@pytest.fixture
def study(tmp_path):
    folder = tmp_path / "ci"
    folder.mkdir()
    shutil.copy(FIXTURE / "grid.yaml", folder / "grid.yaml")
    shutil.copytree(FIXTURE / "records", folder / "records")
    for name in ("data.ipynb", "analysis.ipynb"):
        _notebook(folder / name)
    return folder


def test_complete_study_passes(study):
    assert check_results(study) == []
    assert main([str(study / "grid.yaml")]) == 0


def test_study_without_records_is_one_line(study):
    shutil.rmtree(study / "records")
    assert check_results(study) == [f"{study}: no records for its 4 cells (run `msl study {study}`)"]


def test_missing_record_names_the_cell(study):
    record = sorted((study / "records").glob("*.json"))[1]
    record.unlink()
    problems = check_results(study)
    assert len(problems) == 1 and record.stem in problems[0] and "has no record" in problems[0]
    assert main([str(study)]) == 1


def test_corrupt_record_names_the_file(study):
    record = sorted((study / "records").glob("*.json"))[0]
    record.write_text('{"cell_id": "' + record.stem + '", "status": "ok", ')
    problems = check_results(study)
    assert len(problems) == 1 and str(record) in problems[0] and "not valid JSON" in problems[0]


def test_incomplete_failed_and_stale_records_are_named(study):
    first, second = sorted((study / "records").glob("*.json"))[:2]
    rec = json.loads(first.read_text())
    del rec["history"]
    first.write_text(json.dumps(rec))
    rec = json.loads(second.read_text())
    rec["status"], rec["metrics"] = "failed", {}
    second.write_text(json.dumps(rec))
    stale = study / "records" / "optimetal2b-s9-d16-seed0-00000000.json"
    shutil.copy(FIXTURE / "records" / f"{rec['cell_id']}.json", stale)
    problems = "\n".join(check_results(study))
    assert f"{first}: lacks history" in problems
    assert f"{second}: status 'failed'" in problems and "val/loss" in problems
    assert f"{stale}: stale record" in problems
    assert f"{stale}: cell_id" in problems   # its content belongs to another cell


def test_missing_or_failed_notebooks_are_named(study):
    (study / "data.ipynb").unlink()
    _notebook(study / "analysis.ipynb", error=True)
    problems = check_results(study)
    assert problems == [f"{study / 'data.ipynb'}: missing",
                        f"{study / 'analysis.ipynb'}: cell 1 has an error output (ValueError: bad D)"]
    (study / "data.ipynb").write_text("not a notebook")
    assert "not a valid notebook" in check_notebook(study / "data.ipynb")[0]


# --- the HTML checker, on handmade pages ---------------------------------------------------------

PAGE = """<!DOCTYPE html><html><head>
<link rel="stylesheet" href="_static/style.css?v=1">
<script defer="defer" src="_static/mathjax/tex-chtml.js"></script></head>
<body><main id="main-content"><section id="top"><h1>Title</h1>
<p><span class="math notranslate nohighlight">\\(L = (x_0/x)^\\alpha\\)</span></p>
<a class="reference internal" href="other.html#results"><span class="doc std std-doc">other</span></a>
<a href="#top">up</a> <a href="#">menu</a> <a href="https://example.org/x">paper</a>
<a href="sub/">folder</a>
<img src="_images/fig.png" srcset="_images/fig.png 1x, _images/fig@2x.png 2x" alt="">
<img src="data:image/png;base64,AAAA" alt="">
<div class="cell_output docutils container"><div class="output text_html">
<table><tr><td>val/loss</td><td>0.12</td></tr></table></div></div>
{extra}</section></main></body></html>"""


@pytest.fixture
def site(tmp_path):
    (tmp_path / "_static" / "mathjax").mkdir(parents=True)
    (tmp_path / "_static" / "mathjax" / "tex-chtml.js").write_text("")
    (tmp_path / "_static" / "style.css").write_text("")
    (tmp_path / "_images").mkdir()
    for name in ("fig.png", "fig@2x.png"):
        (tmp_path / "_images" / name).write_bytes(b"")
    (tmp_path / "other.html").write_text('<html><body><section id="results"><p>x</p>'
                                         '</section></body></html>')
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "index.html").write_text("<html><body></body></html>")

    def write(extra: str = "", page: str = PAGE) -> Path:
        (tmp_path / "page.html").write_text(page.replace("{extra}", extra))
        return tmp_path
    return write


def test_clean_pages_pass(site):
    assert check_html(site()) == []
    assert main([str(site())]) == 0


@pytest.mark.parametrize("extra, expected", [
    ('<a href="missing.html">x</a>', "page.html: link missing.html points to a missing file"),
    ('<a href="other.html#nowhere">x</a>', "page.html: link other.html#nowhere: no id 'nowhere' in other.html"),
    ('<a href="#nowhere">x</a>', "page.html: link #nowhere: no id 'nowhere' in page.html"),
    ('<img src="_images/gone.png">', "page.html: image _images/gone.png does not exist"),
    ('<img src="_images/fig.png" srcset="_images/gone.png 2x">', "page.html: image _images/gone.png does not exist"),
    ('<div class="cell_output docutils container"><div class="output traceback highlight-ipythontb">'
     '<pre>Traceback (most recent call last)</pre></div></div>', "page.html: a traceback output"),
    ('<div class="cell_output docutils container"><div class="output stream"><pre>'
     'FileNotFoundError: [Errno 2] records</pre></div></div>', "page.html: error text 'FileNotFoundError"),
    ('<p>ModuleNotFoundError: No module named \'msl\'</p>', 'page.html: error text "ModuleNotFoundError'),
    ('<div class="output stderr highlight-myst-ansi"><pre>warning</pre></div>', "page.html: a stderr output"),
    ('<div class="system-message"><p>WARNING: could not import</p></div>', "page.html: a Sphinx/docutils error message"),
    ('<span class="xref std std-doc">default/data</span>', "page.html: unresolved cross-reference 'default/data'"),
    ('<script src="https://cdnjs.cloudflare.com/ajax/libs/require.js/2.3.4/require.min.js"></script>',
     "page.html: script https://cdnjs.cloudflare.com/ajax/libs/require.js/2.3.4/require.min.js is fetched"),
])
def test_problems_are_reported(site, extra, expected):
    problems = check_html(site(extra))
    assert any(p.startswith(expected) for p in problems), problems


def test_formulas_need_the_local_mathjax(site):
    cdn = '<script src="https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-chtml.js"></script>'
    page = PAGE.replace('<script defer="defer" src="_static/mathjax/tex-chtml.js"></script>', cdn)
    problems = check_html(site(page=page))
    assert "page.html: has formulas but does not load the local _static/mathjax/tex-chtml.js" in problems
    assert any("tex-chtml.js is fetched from the network" in p for p in problems)


def test_missing_build_is_reported(tmp_path):
    assert check_html(tmp_path / "none") == [f"{tmp_path / 'none'}: no such folder (build the book first)"]
