# Kaleido Diffusion reproducibility harness: latents -> training -> sharded sampling -> features -> metrics -> report.
# `snakemake --cores 2 reports/table1.csv` runs the embedded default (config/config.yaml); see README.md.
from snakemake.utils import min_version

min_version("9.0")


# A config given with `--configfile` (e.g. config/imagenet256.yaml) replaces the embedded default instead of being
# merged into it (Snakemake's default would run both); `--config key=value` still edits the default.
if not workflow.overwrite_configfiles:

    configfile: "config/config.yaml"



report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/weights.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/latents.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/sample.smk"
include: "workflow/rules/features.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/edit.smk"
include: "workflow/rules/report.smk"


rule all:
    input:
        report_outputs(),
    default_target: True
