"""prefopt: margin-based preference optimisation of small LLMs, as a reproducible workflow.

The package holds all logic (losses, trainer, generation, judging, metrics); Snakemake
scripts under ``workflow/scripts`` only wire rule inputs and outputs to it.
"""

__version__ = "0.1.0"
