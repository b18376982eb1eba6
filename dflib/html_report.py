"""A run's self-contained HTML report: ``report/index.html`` and the rendered notebooks.

``index.html`` opens with what a reader came for: the data (videos per split and class,
the weights the networks started from), the results in the paper's layout with their
intervals and the method chosen on validation (with the published figures where the
profile runs the paper's setting), the forest plot and the paired comparisons; then every
other figure (copied into ``report/figures/``) and table, links to the executed notebooks
rendered by nbconvert into ``report/notebooks/``, and last, folded, the profile and the
environment. The index uses no scripts and
no remote resources; the rendered notebooks embed their images and styles, so the folder
reads offline and can be moved as a whole.
"""

from __future__ import annotations

import html
import json
import shutil
from pathlib import Path

import pandas as pd

from . import config, datasets, evaluation, io, result_tables, summaries
from .paths import RunPaths
from .vocabulary import IDENTITY_CONTROL, control_method

IDENTITY_METHOD = control_method(IDENTITY_CONTROL)

FIGURE_SUFFIXES = (".png", ".jpg", ".jpeg", ".svg")
LEAD_FIGURES = ("fig_forest_auc.png",)  # shown with the comparisons, before the others
LEAD_TABLES = ("comparisons.csv",)

_STYLE = """
body { font-family: sans-serif; margin: 2em auto; max-width: 80em; color: #222; }
table { border-collapse: collapse; font-size: 0.85em; margin-bottom: 1.5em; }
th, td { padding: 0.2em 0.6em; border-bottom: 1px solid #ddd; text-align: right; }
th { background: #f3f3f3; }
pre { background: #f7f7f7; padding: 0.8em; font-size: 0.85em; overflow-x: auto; }
figure { display: inline-block; margin: 0 1em 1.5em 0; vertical-align: top; }
details { margin-bottom: 1em; }
summary { cursor: pointer; font-weight: bold; }
figure img { max-width: 38em; }
figcaption { font-size: 0.85em; color: #555; }
"""


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
    pages = _render_notebooks(run, run.report_notebooks)
    figures = _copy_figures(run, run.report_figures)
    first = [f for f in figures if f.name in LEAD_FIGURES]
    sections = [_header(run), _data_section(run), _results_section(run),
                _evidence_section(run, first),
                _figures_section([f for f in figures if f not in first]), _tables_section(run),
                _notebooks_section(pages), _provenance_section(run)]
    name = html.escape(run.root.name)
    page = (f"<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<title>Run {name}</title>\n<style>{_STYLE}</style>\n</head>\n<body>\n"
            + "\n".join(sections) + "\n</body>\n</html>\n")
    return io.write_text(page, run.report_page)


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
    return (f"<h1>Run <code>{html.escape(run.root.name)}</code></h1>\n"
            f"<p>Folder: <code>{html.escape(str(run.root))}</code></p>")


def _data_section(run: RunPaths) -> str:
    """Videos per split and class, and the weights every network started from."""
    parts = ["<h2>Data</h2>"]
    if run.videos_csv.is_file():
        videos = pd.read_csv(run.videos_csv, keep_default_na=False, dtype={"video_id": str})
        counts = (videos.assign(**{"class": videos["label"].map({0: "real", 1: "fake"})})
                  .pivot_table(index="split", columns="class", values="video_id",
                               aggfunc="count", fill_value=0)
                  .reindex(index=[s for s in summaries.SPLIT_ORDER if s in set(videos["split"])],
                           columns=["real", "fake"], fill_value=0))
        counts.columns.name = None
        counts["videos"] = counts.sum(axis=1)
        parts.append(counts.reset_index().to_html(index=False, border=0))
    else:
        parts.append("<p>No <code>index/videos.csv</code> yet.</p>")
    weights = _weights_used(run)
    if weights:
        parts.append("<p>Weights used: " + "; ".join(
            f"{html.escape(k)}: <code>{html.escape(v)}</code>" for k, v in weights.items())
            + ".</p>")
    return "\n".join(parts)


def _weights_used(run: RunPaths) -> dict[str, str]:
    """What each network started from, from the stage manifests (``weights_used`` of each
    frame-CNN training, ``used`` of the FaceNet embeddings)."""
    out = {}
    for path in run.cnn_manifests():
        manifest = json.loads(path.read_text(encoding="utf-8"))
        out[f"frame CNN {manifest.get('arch', path.parent.name)}"] = \
            str(manifest.get("weights_used", "unknown"))
    facenet = run.embeddings_manifest
    if facenet.is_file():
        manifest = json.loads(facenet.read_text(encoding="utf-8"))
        out["FaceNet"] = f"{manifest.get('used', 'unknown')} (requested " \
            f"{manifest.get('requested', 'unknown')})"
    return out


def _results_section(run: RunPaths) -> str:
    if not run.results_csv.is_file():
        return "<h2>Results</h2>\n<p>No <code>tables/results.csv</code> yet.</p>"
    published = result_tables.published_results(config.run_settings(run))
    table = result_tables.paper_table(evaluation.results_table(run), published)
    note = ("<p>Video level first, then frame level; fake is the positive class. AUC, EER, AP "
            "and balanced accuracy carry their 95 % stratified bootstrap interval in brackets "
            "(reals and fakes resampled separately, whole videos at a time). "
            "<code>acc</code> and <code>balanced_acc</code> call a video fake above 0.5, "
            "<code>balanced_acc_val</code> above <code>threshold_val</code>, the threshold "
            "chosen on each method's validation predictions. The method in bold with "
            f"{result_tables.CHOSEN_MARK} is the one with the highest AUC on the <b>validation</b> "
            "split (<code>val_split_auc</code>), the default of <code>dflib predict</code>; "
            "the test split chooses nothing. Methods whose intervals overlap are not ranked "
            "by these numbers.</p>")
    guide = identity_guide(evaluation.results_table(run), config.run_settings(run)["dataset"])
    return (f"<h2>Results</h2>\n{note}\n{guide}\n"
            f"{result_tables.format_paper_table(table, 'html')}")


def identity_guide(results: pd.DataFrame, dataset: str) -> str:
    """The reading guide's paragraph on the identity control (empty without its row): what
    it sees, its test AUC, and for Celeb-DF that the test identities appear in training."""
    row = results[(results["method"] == IDENTITY_METHOD) & (results["level"] == "video")]
    if row.empty:
        return ""
    auc = row.iloc[0]
    text = (f"<p><b>Identity alone.</b> <code>{IDENTITY_METHOD}</code> sees only who is shown: "
            "each video's nearest training identity in the face-embedding space, scored by that "
            "identity's share of fakes in training. Its test video AUC, "
            f"{auc['auc']:.3f} [{auc['auc_low']:.3f}, {auc['auc_high']:.3f}], is how far "
            "recognising people ranks the test videos; a detector's AUC above it (with the "
            "DeLong difference in <code>tables/identity.csv</code>) is what it sees beyond "
            "identity. ")
    if datasets.layout_of(dataset) == "celebdf":
        text += ("On Celeb-DF v2 the official test list holds out videos, not people: the "
                 "test identities appear in training (the demo's split does the same), so "
                 "identity can inflate every detector's AUC there.")
    return text + "</p>"


def _evidence_section(run: RunPaths, figures: list[Path]) -> str:
    parts = ["<h2>Forest plot and paired comparisons</h2>"]
    parts += [f"<figure><img src=\"figures/{html.escape(f.name)}\" alt=\"{html.escape(f.name)}\">"
              f"<figcaption>{html.escape(f.name)}</figcaption></figure>" for f in figures]
    path = run.table("comparisons")
    if path.is_file():
        parts.append("<p>DeLong's paired test on the same test videos: <code>delta_auc</code> "
                     "= AUC(method) − AUC(reference), its 95 % interval and two-sided p-value; "
                     "an interval containing 0 means no detectable difference.</p>")
        parts.append(pd.read_csv(path).round(3).to_html(index=False, na_rep="–", border=0))
    elif not figures:
        parts.append("<p>Not made yet (stage <code>report</code>).</p>")
    return "\n".join(parts)


def _tables_section(run: RunPaths) -> str:
    paths = (sorted(p for p in run.tables.glob("*.csv")
                    if p != run.results_csv and p.name not in LEAD_TABLES)
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


def _provenance_section(run: RunPaths) -> str:
    """The profile and the environment, folded: there for reproducing, not for reading."""
    profile_path = run.profile_yaml
    profile = (f"<pre>{html.escape(profile_path.read_text(encoding='utf-8'))}</pre>"
               if profile_path.is_file() else "<p>No <code>profile.yaml</code> in the run.</p>")
    env_path = run.environment_json
    if env_path.is_file():
        env = json.loads(env_path.read_text(encoding="utf-8"))
        environment = pd.DataFrame({"package": list(env), "version": list(env.values())}) \
            .to_html(index=False, border=0)
    else:
        environment = "<p>No <code>environment.json</code> in the run.</p>"
    return (f"<h2>Profile and environment</h2>\n<details><summary>Profile "
            f"(<code>profile.yaml</code>)</summary>\n{profile}\n</details>\n"
            f"<details><summary>Environment (<code>environment.json</code>)</summary>\n"
            f"{environment}\n</details>")
