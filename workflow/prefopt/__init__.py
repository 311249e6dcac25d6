"""prefopt: margin-based preference optimisation of small LLMs, as a reproducible workflow.

One subpackage per stage of the DAG, in the order the data flows:

- ``prefopt.data``: download and verify the sources; prepare pairs, prompts and questions.
- ``prefopt.training``: the loss registry, the TRL trainer, the reference cache, diagnostics,
  resume, DDP, and the seed methods.
- ``prefopt.generation``: answers from the HF decoding loop or vLLM.
- ``prefopt.judging``: API and local judges, MT-Bench grading, AlpacaEval win rates.
- ``prefopt.evaluation``: held-out preference measures.
- ``prefopt.reporting``: aggregation, artifacts, the paper audit, provenance, per-rule cost.

``config`` (validation), ``runtime`` (I/O, logging, devices, software stacks), ``modeling``
(model folders, precision), ``plan`` (a run's jobs, GPU time, API cost and disk, before its
first job) and ``resources`` (what each job asks of a scheduler) serve every stage. Snakemake
scripts under ``workflow/scripts`` only wire rule inputs and outputs to this package. Tools a
person runs by hand live apart, in ``prefopt_tools``.
"""

__version__ = "0.1.0"
