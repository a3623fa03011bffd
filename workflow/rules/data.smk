rule synth:
    output:
        train=f"{RESULTS}/synthdive/{config['dataset']['train_json']}",
        test=f"{RESULTS}/synthdive/{config['dataset']['test_json']}",
        vocab=f"{RESULTS}/synthdive/{config['dataset']['vocab_json']}",
        masks=f"{RESULTS}/synthdive/true_masks.h5",
        clips=f"{RESULTS}/synthdive/clips.csv",
    log:
        f"{LOGS}/synth.log",
    benchmark:
        f"{LOGS}/benchmarks/synth.tsv"
    conda:
        "../../envs/data.yaml"
    resources:
        mem_mb=res("synth", "mem_mb"),
        runtime=res("synth", "runtime"),
        cpus_per_task=res("synth", "cpus_per_task"),
    params:
        options=options("synth"),
        out=lambda wildcards, output: os.path.dirname(output.train),
    shell:
        "python -m flowguide synth --out {params.out:q} --options {params.options:q} > {log:q} 2>&1"


checkpoint manifest:
    input:
        dataset_inputs(),
    output:
        manifest=f"{RESULTS}/manifest.csv",
        shards=directory(f"{RESULTS}/shards"),
        failures=f"{RESULTS}/failures/manifest.csv",
    log:
        f"{LOGS}/manifest.log",
    benchmark:
        f"{LOGS}/benchmarks/manifest.tsv"
    conda:
        "../../envs/data.yaml"
    resources:
        mem_mb=res("manifest", "mem_mb"),
        runtime=res("manifest", "runtime"),
        cpus_per_task=res("manifest", "cpus_per_task"),
    params:
        options=options("dataset"),
        root=lambda wildcards, input: os.path.dirname(input[0]),
    shell:
        "python -m flowguide manifest --root {params.root:q} --options {params.options:q}"
        " --manifest {output.manifest:q} --shards-dir {output.shards:q}"
        " --failures {output.failures:q} $FLOWGUIDE_FAIL_FAST > {log:q} 2>&1"
