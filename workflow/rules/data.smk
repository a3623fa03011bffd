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


# The no_cue control's training split (SynthDive only): the same dives as synth's train split
# (same seed, same render RNG streams), with the cue independent of the label (the balanced
# design of the test split). Only train is rendered; the control is evaluated on synth's test.
rule synth_no_cue:
    output:
        train=f"{RESULTS}/synthdive_no_cue/{config['dataset']['train_json']}",
        test=f"{RESULTS}/synthdive_no_cue/{config['dataset']['test_json']}",
        vocab=f"{RESULTS}/synthdive_no_cue/{config['dataset']['vocab_json']}",
        masks=f"{RESULTS}/synthdive_no_cue/true_masks.h5",
        clips=f"{RESULTS}/synthdive_no_cue/clips.csv",
    log:
        f"{LOGS}/synth_no_cue.log",
    benchmark:
        f"{LOGS}/benchmarks/synth_no_cue.tsv"
    conda:
        "../../envs/data.yaml"
    resources:
        mem_mb=res("synth", "mem_mb"),
        runtime=res("synth", "runtime"),
        cpus_per_task=res("synth", "cpus_per_task"),
    params:
        options=no_cue_synth_options(),
        out=lambda wildcards, output: os.path.dirname(output.train),
    shell:
        "python -m flowguide synth --out {params.out:q} --options {params.options:q} > {log:q} 2>&1"


rule manifest_no_cue:
    input:
        rules.synth_no_cue.output.train,
        rules.synth_no_cue.output.test,
        rules.synth_no_cue.output.vocab,
    output:
        manifest=f"{RESULTS}/no_cue/manifest.csv",
        shards=directory(f"{RESULTS}/no_cue/shards"),
        failures=f"{RESULTS}/failures/manifest_no_cue.csv",
    log:
        f"{LOGS}/manifest_no_cue.log",
    benchmark:
        f"{LOGS}/benchmarks/manifest_no_cue.tsv"
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
