"""A run's self-contained HTML report: ``report/index.html`` and the rendered notebooks.

``index.html`` shows the run's name, profile and environment, the results in the paper's
layout (with the published figures where the profile runs the paper's setting), every
other table, every figure (copied into ``report/figures/``) and links to the executed
notebooks rendered by nbconvert into ``report/notebooks/``. The index uses no scripts and
no remote resources; the rendered notebooks embed their images and styles, so the folder
reads offline and can be moved as a whole.
"""

from __future__ import annotations

import html
import json
import shutil
from pathlib import Path

import pandas as pd

from . import config, evaluation, io, reports
from .paths import RunPaths

FIGURE_SUFFIXES = (".png", ".jpg", ".jpeg", ".svg")

_STYLE = """
body { font-family: sans-serif; margin: 2em auto; max-width: 80em; color: #222; }
table { border-collapse: collapse; font-size: 0.85em; margin-bottom: 1.5em; }
th, td { padding: 0.2em 0.6em; border-bottom: 1px solid #ddd; text-align: right; }
th { background: #f3f3f3; }
pre { background: #f7f7f7; padding: 0.8em; font-size: 0.85em; overflow-x: auto; }
figure { display: inline-block; margin: 0 1em 1.5em 0; vertical-align: top; }
figure img { max-width: 38em; }
figcaption { font-size: 0.85em; color: #555; }
"""


def report_dir(run: RunPaths) -> Path:
    """``report/`` of the run."""
    return run.root / "report"


def render_notebook(source: Path, target: Path) -> Path:
    """Render one executed notebook to a standalone HTML file (nbconvert's default
    template; output images are embedded), atomically."""
    import nbformat
    from nbconvert import HTMLExporter

    try:
        notebook = nbformat.read(source, as_version=4)
    except Exception as exc:  # noqa: BLE001 - any unreadable notebook gets one clear line
        raise ValueError(f"{source}: not a readable notebook ({exc})") from None
    body, _ = HTMLExporter().from_notebook_node(notebook)
    return io.write_text(body, target)


def build_report(run: RunPaths) -> Path:
    """Write ``report/`` for ``run`` and return the path of ``report/index.html``.

    Notebooks are re-rendered only when the executed copy is newer than its HTML; figures
    and notebook pages that left the run are removed from the report, so it mirrors the
    run.
    """
    out = report_dir(run)
    pages = _render_notebooks(run, out / "notebooks")
    figures = _copy_figures(run, out / "figures")
    sections = [_header(run), _results_section(run), _tables_section(run),
                _figures_section(figures), _notebooks_section(pages)]
    name = html.escape(run.root.name)
    page = (f"<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<title>Run {name}</title>\n<style>{_STYLE}</style>\n</head>\n<body>\n"
            + "\n".join(sections) + "\n</body>\n</html>\n")
    return io.write_text(page, out / "index.html")


def _render_notebooks(run: RunPaths, target_dir: Path) -> list[Path]:
    sources = sorted(run.notebooks.glob("*.ipynb")) if run.notebooks.is_dir() else []
    pages = []
    for source in sources:
        target = target_dir / f"{source.stem}.html"
        if not target.is_file() or target.stat().st_mtime < source.stat().st_mtime:
            render_notebook(source, target)
        pages.append(target)
    _remove_others(target_dir, pages)
    return pages


def _copy_figures(run: RunPaths, target_dir: Path) -> list[Path]:
    sources = (sorted(p for p in run.figures.iterdir() if p.suffix.lower() in FIGURE_SUFFIXES)
               if run.figures.is_dir() else [])
    copies = [io.atomic_write(target_dir / s.name, lambda p, s=s: shutil.copyfile(s, p))
              for s in sources]
    _remove_others(target_dir, copies)
    return copies


def _remove_others(folder: Path, keep: list[Path]) -> None:
    """Delete files of ``folder`` not in ``keep`` (left by an earlier report)."""
    if folder.is_dir():
        for path in folder.iterdir():
            if path.is_file() and path not in keep:
                path.unlink()


def _header(run: RunPaths) -> str:
    profile_path = run.root / "profile.yaml"
    profile = (f"<pre>{html.escape(profile_path.read_text(encoding='utf-8'))}</pre>"
               if profile_path.is_file() else "<p>No <code>profile.yaml</code> in the run.</p>")
    env_path = run.root / "environment.json"
    if env_path.is_file():
        env = json.loads(env_path.read_text(encoding="utf-8"))
        environment = pd.DataFrame({"package": list(env), "version": list(env.values())}) \
            .to_html(index=False, border=0)
    else:
        environment = "<p>No <code>environment.json</code> in the run.</p>"
    return (f"<h1>Run <code>{html.escape(run.root.name)}</code></h1>\n"
            f"<p>Folder: <code>{html.escape(str(run.root))}</code></p>\n"
            f"<h2>Profile</h2>\n{profile}\n<h2>Environment</h2>\n{environment}")


def _results_section(run: RunPaths) -> str:
    if not run.results_csv.is_file():
        return "<h2>Results</h2>\n<p>No <code>tables/results.csv</code> yet.</p>"
    published = reports.published_results(config.run_settings(run))
    table = reports.paper_table(evaluation.results_table(run), published)
    note = ("<p>Video level first, then frame level; best value of each metric per level "
            "in bold (lowest for eer and logloss). Fake is the positive class.</p>")
    return f"<h2>Results</h2>\n{note}\n{reports.format_paper_table(table, 'html')}"


def _tables_section(run: RunPaths) -> str:
    paths = (sorted(p for p in run.tables.glob("*.csv") if p != run.results_csv)
             if run.tables.is_dir() else [])
    parts = ["<h2>Tables</h2>"]
    for path in paths:
        table = pd.read_csv(path)
        parts.append(f"<h3><code>tables/{html.escape(path.name)}</code></h3>\n"
                     + table.to_html(index=False, na_rep="–", border=0))
    if not paths:
        parts.append("<p>No other tables.</p>")
    return "\n".join(parts)


def _figures_section(figures: list[Path]) -> str:
    parts = ["<h2>Figures</h2>"]
    for path in figures:
        name = html.escape(path.name)
        parts.append(f"<figure><img src=\"figures/{name}\" alt=\"{name}\">"
                     f"<figcaption>{name}</figcaption></figure>")
    if not figures:
        parts.append("<p>No figures.</p>")
    return "\n".join(parts)


def _notebooks_section(pages: list[Path]) -> str:
    items = "\n".join(f"<li><a href=\"notebooks/{html.escape(p.name)}\">"
                      f"{html.escape(p.stem)}</a></li>" for p in pages)
    return f"<h2>Notebooks</h2>\n<ul>\n{items}\n</ul>" if pages else \
        "<h2>Notebooks</h2>\n<p>No executed notebooks.</p>"
