"""`snakemake --report` on a finished tiny run: the report opens on the answer.

The landing page (workflow/report/workflow.rst, the Snakefile's `report:` directive) opens on the
comparison with the paper, then the judge and its calibration, the audit of the paper and the
claims the run can test, stated from the run's config and linking the report's items. The report
holds each table once, each figure once, every executed notebook as HTML and the provenance
record, each in its category with a caption naming the rule that made it.
"""

from __future__ import annotations

import csv
import json
import os
import re
import zipfile
from pathlib import Path

import pytest
from helpers import clone_workflow, run_snakemake, snakemake_env

pytestmark = pytest.mark.e2e

#: The report's categories (workflow/rules/artifacts.smk ART_REPORT, aggregate.smk,
#: calibration.smk), in the order the landing page walks through them.
CATEGORIES = [
    "1. Comparison with the paper",
    "2. Judge calibration",
    "3. Audit of the paper",
    "4. Claims",
    "5. Executed notebooks",
    "6. Provenance and cost",
]
#: Figures that only redraw a table the report already holds: left out of it.
REDRAWN = {"runtime_by_rule", "judge_calibration"}


def snakemake(workdir: Path, *args: str):
    """The tiny config with the samples the repository ships, as tests/integration/test_e2e_tiny.py
    runs it (no mirror, the venv not on PATH)."""
    env = snakemake_env(PREFOPT_MIRROR="", PATH=os.defpath)
    return run_snakemake(
        workdir, "--cores", "2", "--configfile", "tests/config.tiny.yaml", *args, env=env
    )


def page_variables(html: str) -> dict:
    """The JSON values Snakemake's HTML report assigns to its page's variables: the landing page
    (`workflow_desc`, HTML), `categories` {category: {subcategory: [path]}} and `results`
    {path: {caption, labels, mime_type, job_properties, ...}}."""
    decoder = json.JSONDecoder()
    found = {}
    for name, script in (("workflow_desc", "workflow-desc"), ("categories",) * 2, ("results",) * 2):
        marker = f'<script id="{script}">\n    var {name} = '
        assert html.count(marker) == 1, name
        found[name] = decoder.raw_decode(html, html.index(marker) + len(marker))[0]
    return found


@pytest.fixture(scope="module")
def finished(module_tmp_path):
    """The tiny DAG run to the end in a clone of the workflow (its own git repository)."""
    workdir = clone_workflow(module_tmp_path / "repo")
    run = snakemake(workdir)
    assert run.returncode == 0, run.stderr[-5000:]
    return workdir


def test_report_opens_on_the_answer(finished, module_tmp_path):
    res = finished / "results"
    archive = module_tmp_path / "report.zip"
    made = snakemake(finished, "--report", str(archive))
    assert made.returncode == 0, made.stderr[-5000:]
    with zipfile.ZipFile(archive) as bundle:
        page = page_variables(bundle.read("report/report.html").decode())
        bundled = [Path(name).name for name in bundle.namelist()]
    landing, items = page["workflow_desc"], page["results"]

    # The landing page: the question, then the four answers in order, from this run's config.
    text = re.sub(r"<[^>]+>", "", landing)
    sections = [
        "1. The comparison with the paper",
        "2. The judge and its calibration",
        "3. The audit of the paper",
        "4. The paper's claims",
    ]
    where = [text.find(section) for section in sections]
    assert 0 < text.find("does this run reproduce the paper's Table 1") < where[0], text[:2000]
    assert where == sorted(where), where
    for configured in ("smollm2-135m-instruct", "apo_hinge_zero", "judge local", "pipeline check"):
        assert configured in text, configured
    # base and one trained variant, one seed: the hinge-vs-sigmoid pairs cannot be tested
    assert "With one seed" in text and "not testable in this run: apo_zero" in text
    assert "not in this run)" not in text  # every item and category it names is in the report
    linked = set(re.findall(r"app\.showResultInfo\('([^']+)'\)", landing))
    assert (
        {
            "results/tables/paper_vs_reproduction_alpaca_eval.md",
            "results/tables/table1_alpaca_eval.md",
            "results/tables/judge_calibration.md",
            "results/tables/audit_paper_numbers.md",
            "results/tables/paired_comparisons.md",
            "results/tables/paper_claims.md",
            "results/provenance.json",
        }
        <= linked
        <= set(items)
    )
    assert set(re.findall(r"app\.showCategory\('([^']+)'\)", landing)) >= {
        category.replace(" ", "%20") for category in CATEGORIES
    }

    # The items: each table once (its Markdown, never the CSV or LaTeX beside it), each figure
    # once (PNG, never the PDF), every executed notebook as HTML, the provenance record.
    assert sorted(page["categories"]) == CATEGORIES  # the report lists them sorted by name
    category_of = {
        path: category
        for category, subcategories in page["categories"].items()
        for paths in subcategories.values()
        for path in paths
    }
    assert sorted(category_of) == sorted(items)
    relative = lambda paths: sorted(str(p.relative_to(finished)) for p in paths)  # noqa: E731
    tables = sorted(p for p in items if p.startswith("results/tables/"))
    assert tables == relative(res.glob("tables/*.md"))
    figures = sorted(p for p in items if p.startswith("results/figures/"))
    assert figures == relative(p for p in res.glob("figures/*.png") if p.stem not in REDRAWN)
    notebooks = sorted(p for p in items if p.startswith("results/notebooks/"))
    assert notebooks == [
        f"results/notebooks/{nb.stem}.html" for nb in sorted(finished.glob("notebooks/*.ipynb"))
    ]
    assert set(items) == {*tables, *figures, *notebooks, "results/provenance.json"}
    assert {category_of[p] for p in notebooks} == {"5. Executed notebooks"}
    assert category_of["results/tables/table1_alpaca_eval.md"] == CATEGORIES[0]
    assert category_of["results/tables/judge_calibration.md"] == CATEGORIES[1]
    assert category_of["results/tables/audit_paper_numbers.md"] == CATEGORIES[2]
    assert category_of["results/tables/paper_claims.md"] == CATEGORIES[3]
    assert category_of["results/provenance.json"] == CATEGORIES[5]
    # one seed decides no claim: every verdict is "not resolved" or "not testable"
    with open(res / "tables" / "paper_claims.csv", newline="") as f:
        verdicts = {row["claim"]: row["verdict"] for row in csv.DictReader(f)}
    assert verdicts["2a"] == "not testable" and verdicts["4"] == "not resolved", verdicts
    assert set(verdicts.values()) <= {"not resolved", "not testable"}, verdicts

    # Every item: bundled, labelled, captioned with the rule that made it and this run's stamp.
    stamp = json.loads((res / "provenance.json").read_text())["stamp"]
    for path, item in items.items():
        assert Path(path).name in bundled, path
        assert item["labels"]["item"], path
        caption = item["caption"]
        assert caption and "system-message" not in caption, (path, caption)
        assert f">{item['job_properties']['rule']}<" in caption, (path, caption)
        assert path == "results/provenance.json" or stamp in caption, (path, caption)
    assert "system-message" not in landing  # no reStructuredText error or warning
    notebook = items["results/notebooks/table1_alpaca_eval.html"]
    assert notebook["mime_type"] == "text/html"
    assert "notebooks/table1_alpaca_eval.ipynb" in notebook["caption"]
