# prefopt: reproduce arXiv 2508.08466 (margin-based DPO variants on a small LLM) end to end.
# Run from the repository root:  snakemake --cores all [--configfile workflow/configs/embedded.yaml]
from snakemake.utils import min_version

min_version("9.0")


configfile: "config.yaml"


# `snakemake --report report.zip` opens on this page (workflow/docs/results-layout.md, "The report")
report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/model.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/seed_methods.smk"
include: "workflow/rules/heldout.smk"
include: "workflow/rules/generate.smk"
include: "workflow/rules/judge.smk"
include: "workflow/rules/aggregate.smk"
include: "workflow/rules/artifacts.smk"
include: "workflow/rules/calibration.smk"
include: "workflow/rules/authors_outputs.smk"


rule all:
    default_target: True
    input:
        checkpoints_of_run(),
        score_files(),
        ARTIFACT_OUTPUTS,
        AUDIT_TABLE,
        CALIBRATION_OUTPUTS,
        RUNTIME_OUTPUTS.values(),
        PROVENANCE,
