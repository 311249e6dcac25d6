"""Stable cell ids and outputs in an executed notebook, so the same results give the same bytes.

papermill inserts its `injected-parameters` cell with a new random id on every run (nbformat
4.5 cell ids), and the kernel splits a cell's printed text into as many stream outputs as it
happened to flush (two prints can arrive as one output or as two); the HTML export carries
both. Two runs of the same notebook on the same inputs then differ. The render rules run this
between papermill and nbconvert:

    python -m prefopt.reporting.notebook_ids results/notebooks/<artifact>.ipynb
"""

from __future__ import annotations

import sys
from pathlib import Path

#: The id papermill's injected cell gets (the tag papermill gives it).
INJECTED_TAG = "injected-parameters"


def coalesce_streams(outputs: list[dict]) -> list[dict]:
    """Adjacent stream outputs of the same stream (stdout, stderr) merged into one, text kept."""
    merged: list[dict] = []
    for out in outputs:
        last = merged[-1] if merged else None
        if (
            last is not None
            and out.get("output_type") == "stream" == last.get("output_type")
            and out.get("name") == last.get("name")
        ):
            text = lambda o: "".join(o["text"]) if isinstance(o["text"], list) else o["text"]  # noqa: E731
            last["text"] = text(last) + text(out)
        else:
            merged.append(out)
    return merged


def stabilise(path: str | Path) -> bool:
    """Give the injected-parameters cell a fixed id and merge split stream outputs; True if the
    notebook changed."""
    import nbformat

    nb = nbformat.read(str(path), as_version=nbformat.NO_CONVERT)
    changed = False
    for cell in nb.cells:
        if INJECTED_TAG in cell.get("metadata", {}).get("tags", []) and cell.get("id"):
            changed |= cell["id"] != INJECTED_TAG
            cell["id"] = INJECTED_TAG
        if cell.get("outputs"):
            merged = coalesce_streams(cell["outputs"])
            changed |= len(merged) != len(cell["outputs"])
            cell["outputs"] = merged
    if changed:
        nbformat.write(nb, str(path))
    return changed


if __name__ == "__main__":
    for arg in sys.argv[1:]:
        stabilise(arg)
