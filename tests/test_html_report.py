"""The run's HTML report: index with profile, environment, tables, figures, notebooks."""

from __future__ import annotations

import json

import matplotlib.pyplot as plt
import nbformat
import pandas as pd
import yaml
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from dflib import html_report
from dflib.paths import RunPaths


def fake_run(tmp_path) -> RunPaths:
    """A run folder as the runner leaves it, without running anything."""
    run = RunPaths(tmp_path / "celebdf").ensure()
    (run.root / "profile.yaml").write_text(yaml.safe_dump(
        {"run_name": "celebdf", "dataset": "celebdf", "index": {"val_fraction": 0.15}}))
    (run.root / "environment.json").write_text(json.dumps({"tensorflow": "2.21.0"}))
    pd.DataFrame({"method": ["cnn/xception", "cnn/xception"], "level": ["video", "frame"],
                  "n": [518, 9000], "n_pos": [340, 6000], "n_neg": [178, 3000],
                  "n_no_face": [2, None], "acc": [0.912345, 0.8], "precision": 0.9,
                  "recall": 0.9, "f1": 0.9, "auc": [0.954321, 0.9], "eer": 0.1, "ap": 0.9,
                  "logloss": 0.3}).to_csv(run.results_csv, index=False)
    pd.DataFrame({"split": ["test"], "videos": [518]}).to_csv(
        run.tables / "table_index_counts.csv", index=False)
    fig, ax = plt.subplots()
    ax.plot([0, 1])
    fig.savefig(run.figures / "fig_roc_cnn.png")
    plt.close(fig)
    nb = new_notebook(cells=[new_markdown_cell("# Evaluate the CNN"),
                             new_code_cell("print(6 * 7)", execution_count=1, outputs=[
                                 new_output("stream", name="stdout", text="42\n")])])
    nbformat.write(nb, run.notebooks / "03_evaluate_cnn.ipynb")
    return run


def test_build_report_is_self_contained(tmp_path):
    run = fake_run(tmp_path)
    index = html_report.build_report(run)
    assert index == run.root / "report" / "index.html"
    page = index.read_text()
    assert "<h1>Run <code>celebdf</code></h1>" in page
    assert "val_fraction: 0.15" in page and "2.21.0" in page  # profile, environment
    assert "0.912" in page and "0.954" in page and "table_index_counts.csv" in page
    # published figures stand beside ours for the paper's Celeb-DF setting
    assert "published (Kumar et al. 2020)" in page and "0.980" in page
    assert page.index(">video<") < page.index(">frame<")
    assert '<img src="figures/fig_roc_cnn.png"' in page
    assert (index.parent / "figures" / "fig_roc_cnn.png").read_bytes() == \
        (run.figures / "fig_roc_cnn.png").read_bytes()
    assert '<a href="notebooks/03_evaluate_cnn.html">' in page
    rendered = (index.parent / "notebooks" / "03_evaluate_cnn.html").read_text()
    assert "Evaluate the CNN" in rendered and "42" in rendered
    assert "http" not in page  # nothing remote in the index
    # what a reader came for first; the profile and environment last, folded
    order = [page.index(h) for h in ("<h2>Data</h2>", "<h2>Results</h2>",
                                     "<h2>Forest plot and paired comparisons</h2>",
                                     "<h2>Figures</h2>", "<h2>Notebooks</h2>",
                                     "<h2>Profile and environment</h2>")]
    assert order == sorted(order)
    assert page.index("<details>") > order[-1] and "val_fraction: 0.15" in page[order[-1]:]


def test_rebuild_drops_what_left_the_run(tmp_path):
    run = fake_run(tmp_path)
    html_report.build_report(run)
    (run.figures / "fig_roc_cnn.png").unlink()
    (run.notebooks / "03_evaluate_cnn.ipynb").unlink()
    run.results_csv.unlink()
    page = html_report.build_report(run).read_text()
    assert "fig_roc_cnn" not in page and "03_evaluate_cnn" not in page
    assert not any((run.root / "report" / "figures").iterdir())
    assert not any((run.root / "report" / "notebooks").iterdir())
    assert "No <code>tables/results.csv</code> yet" in page
