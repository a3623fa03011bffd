# The report: results/report/ (index.html, report.md, figures/, tables/*.csv) from whatever
# results exist. `snakemake --report report.zip` embeds the same page and figures.


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
        failures=f"{RESULTS}/failures.csv",
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
    params:
        options=options("report"),
        results=lambda wildcards, output: os.path.dirname(os.path.dirname(output.html)),
        out=lambda wildcards, output: os.path.dirname(output.html),
    shell:
        "python -m flowguide report --results {params.results:q} --out {params.out:q}"
        " --options {params.options:q} > {log:q} 2>&1"
