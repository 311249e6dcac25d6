"""Stable cell ids in an executed notebook, so the same results give the same bytes.

papermill inserts its `injected-parameters` cell with a new random id on every run (nbformat
4.5 cell ids), and the HTML export carries it; two runs of the same notebook on the same inputs
then differ in that one id. The render rules run this between papermill and nbconvert:

    python -m prefopt.notebook_ids results/notebooks/<artifact>.ipynb
"""

from __future__ import annotations

import sys
from pathlib import Path

#: The id papermill's injected cell gets (the tag papermill gives it).
INJECTED_TAG = "injected-parameters"


def stabilise(path: str | Path) -> bool:
    """Give the injected-parameters cell a fixed id; True if the notebook changed."""
    import nbformat

    nb = nbformat.read(str(path), as_version=nbformat.NO_CONVERT)
    changed = False
    for cell in nb.cells:
        if INJECTED_TAG in cell.get("metadata", {}).get("tags", []) and cell.get("id"):
            changed |= cell["id"] != INJECTED_TAG
            cell["id"] = INJECTED_TAG
    if changed:
        nbformat.write(nb, str(path))
    return changed


if __name__ == "__main__":
    for arg in sys.argv[1:]:
        stabilise(arg)
