# flowguide: RAFT/OpenCV flow -> flow-prompted SAM or motion-layer candidates -> diver masks
# -> SlowFast training per method and T -> evaluation, explanations -> report.
# Run:  snakemake --cores all                 (one machine)
#       snakemake --cores all --profile slurm (SLURM cluster)


configfile: "config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/execution.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/flow.smk"
include: "workflow/rules/segment.smk"
include: "workflow/rules/select.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/explain.smk"
include: "workflow/rules/report.smk"


rule all:
    default_target: True
    input:
        all_targets,
