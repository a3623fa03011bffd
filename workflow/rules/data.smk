rule synth:
    output:
        train=f"{RESULTS}/synthdive/{config['dataset']['train_json']}",
        test=f"{RESULTS}/synthdive/{config['dataset']['test_json']}",
        vocab=f"{RESULTS}/synthdive/{config['dataset']['vocab_json']}",
        masks=f"{RESULTS}/synthdive/true_masks.h5",
        clips=f"{RESULTS}/synthdive/clips.csv",
    params:
        options=options("synth"),
        out=f"{RESULTS}/synthdive",
    log:
        f"{LOGS}/synth.log",
    benchmark:
        f"{LOGS}/benchmarks/synth.tsv"
    shell:
        "flowguide synth --out {params.out:q} --options {params.options:q} > {log:q} 2>&1"


checkpoint manifest:
    input:
        dataset_inputs(),
    output:
        manifest=f"{RESULTS}/manifest.csv",
        shards=directory(f"{RESULTS}/shards"),
        failures=f"{RESULTS}/failures/manifest.csv",
    params:
        options=options("dataset"),
        root=dataset_root(),
        fail_fast=fail_fast_flag(),
    log:
        f"{LOGS}/manifest.log",
    benchmark:
        f"{LOGS}/benchmarks/manifest.tsv"
    shell:
        "flowguide manifest --root {params.root:q} --options {params.options:q}"
        " --manifest {output.manifest:q} --shards-dir {output.shards:q}"
        " --failures {output.failures:q} {params.fail_fast} > {log:q} 2>&1"
