"""Executes every notebook in notebooks/ with nbclient (the project venv's kernel), so
they never rot, and checks that each chart was drawn: every cell that calls `show(fig)`
must have produced an image/png output (and `show` itself refuses a figure with no data).
Settings (INGEST_LAKE, DATABASE_URL) come from the environment. Executed copies and their
HTML (nbconvert) go to the directory given as the first argument (default: a temp dir),
never over the committed, output-free notebooks. Exit status 1 names the failing notebook
and cell."""

import sys
import tempfile
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError
from nbconvert import HTMLExporter

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"


def missing_charts(nb) -> list[str]:
    """Cells that call show(fig) but carry no image output."""
    missing = []
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code" or "show(fig)" not in cell.source:
            continue
        images = sum(
            1
            for output in cell.get("outputs", [])
            if output.get("output_type") in ("display_data", "execute_result")
            and ("image/png" in output.get("data", {}) or "image/svg+xml" in output.get("data", {}))
        )
        if images == 0:
            missing.append(f"cell {index}")
    return missing


def main() -> int:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp(prefix="fib-notebooks-"))
    out.mkdir(parents=True, exist_ok=True)
    failed = []
    html = HTMLExporter()
    for path in sorted(NOTEBOOKS.glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        client = NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS)}})
        try:
            client.execute()
            missing = missing_charts(nb)
            if missing:
                failed.append(path.name)
                print(f"FAILED  {path.name}: no chart in {', '.join(missing)}", file=sys.stderr)
            else:
                print(f"ok      {path.name}")
        except CellExecutionError as e:
            failed.append(path.name)
            print(f"FAILED  {path.name}\n{e}", file=sys.stderr)
        nbformat.write(nb, out / path.name)
        body, _ = html.from_notebook_node(nb)
        (out / path.with_suffix(".html").name).write_text(body, encoding="utf-8")
    print(f"executed notebooks and their HTML in {out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
