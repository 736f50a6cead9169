import json
import shutil
from pathlib import Path

import nbformat
import pytest
from conftest import PROJECT_ROOT
from nbclient import NotebookClient
from typer.testing import CliRunner

from {{ cookiecutter.package_name }} import bundle
from {{ cookiecutter.package_name }}.cli import app


@pytest.mark.slow
def test_the_pipeline_runs_end_to_end_on_the_sample_data(project):
    result = CliRunner().invoke(app, ["pipeline", "--root", str(project.root)])
    assert result.exit_code == 0, result.output

    metrics = json.loads((project.reports / "metrics.json").read_text())
    assert metrics["gate"]["passed"], metrics["gate"]["reason"]
    assert bundle.read_pointer(project.models, "current") == metrics["version"]
    assert (project.reports / "eda" / "README.md").exists()
    assert (project.reports / "evaluation.md").exists()
    rows = json.loads((project.raw / "manifest.json").read_text())["rows"]
    assert rows > 0
    eda_report = (project.reports / "eda" / "README.md").read_text()
    if (project.processed / "cleaning.json").exists():  # every raw row is accounted for
        assert f"- {rows} rows in the raw snapshot;" in eda_report
        cleaning = json.loads((project.processed / "cleaning.json").read_text())
        kept = cleaning["train_rows"] + cleaning["test_rows"]
        assert kept == cleaning["cleaning"]["rows_out"]
        assert f"{cleaning['train_rows']} for training" in eda_report


@pytest.mark.slow
def test_the_eda_notebook_runs_top_to_bottom(tmp_path: Path, project):
    notebooks = project.root / "notebooks"
    shutil.copytree(PROJECT_ROOT / "notebooks", notebooks)
    notebook = nbformat.read(notebooks / "1-eda.ipynb", as_version=4)
    assert all(not cell.get("outputs") for cell in notebook.cells if cell.cell_type == "code")

    NotebookClient(
        notebook, timeout=300, resources={"metadata": {"path": str(notebooks)}}
    ).execute()

    errors = [o for c in notebook.cells for o in c.get("outputs", []) if o.output_type == "error"]
    assert errors == []
