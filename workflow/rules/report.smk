# The report: results/report/ (index.html, report.md, figures/, tables/*.csv) from whatever
# results exist. `snakemake --report report.zip` embeds the same page and figures.


def report_inputs(wildcards):
    inputs = [f"{RESULTS}/eval/{run}/T{t}/metrics.json" for run, t in eval_runs()]
    inputs += [f"{RESULTS}/explain/{run}/T{t}/summary.csv" for run, t in explain_runs()]
    inputs += [f"{RESULTS}/manifest.csv"]
    inputs += expand(f"{RESULTS}/masks/{{shard}}.h5", shard=shards())
    if config["dataset"]["kind"] == "synthdive":
        inputs.append(f"{RESULTS}/masks/quality.csv")
    return inputs


rule report:
    input:
        report_inputs,
    output:
        html=report(
            f"{RESULTS}/report/index.html",
            category="Report",
            labels={"page": "flowguide report (HTML)"},
        ),
        markdown=f"{RESULTS}/report/report.md",
        tables=report(
            directory(f"{RESULTS}/report/tables"),
            patterns=["{name}.csv"],
            category="Tables",
            labels={"table": "{name}"},
        ),
        figures=report(
            directory(f"{RESULTS}/report/figures"),
            patterns=["{name}.png"],
            category="Figures",
            labels={"figure": "{name}"},
        ),
    params:
        options=options("report"),
        results=RESULTS,
        out=lambda wildcards, output: os.path.dirname(output.html),
    log:
        f"{LOGS}/report.log",
    benchmark:
        f"{LOGS}/benchmarks/report.tsv"
    conda:
        "../../envs/evaluate.yaml"
    resources:
        mem_mb=res("report", "mem_mb"),
        runtime=res("report", "runtime"),
        cpus_per_task=res("report", "cpus_per_task"),
    shell:
        "python -m flowguide report --results {params.results:q} --out {params.out:q}"
        " --options {params.options:q} > {log:q} 2>&1"
