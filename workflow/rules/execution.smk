# Execution settings: how a job runs, never what it computes. They are kept out of params: (a
# changed param reruns the job and everything downstream), so changing any of them reruns
# nothing:
#   device                      torch device of the model stages (auto, cpu, cuda, cuda:N)
#   fail_fast                   stop at the first per-video failure instead of recording it
#   train.num_workers           data-loader processes of a training job
#   train.tensorboard           TensorBoard event files next to metrics.csv
#   cluster.rules.train.gpus    processes of a training job (one per GPU; the optimiser batch
#                               train.batch_size is the same for any number)
# The shell commands read them from FLOWGUIDE_* environment variables, set here whenever
# Snakemake loads the workflow: the main process (local jobs inherit its environment) and,
# under a cluster executor, each job's own Snakemake, which loads the same config.
# `snakemake -n -p` therefore prints "$FLOWGUIDE_DEVICE" where a value would be; bash's strict
# mode in Snakemake's shell stops a command whose variable is not set.

os.environ.update(
    {
        "FLOWGUIDE_DEVICE": config["device"],
        "FLOWGUIDE_FAIL_FAST": "--fail-fast" if config["fail_fast"] else "",
        "FLOWGUIDE_NUM_WORKERS": str(config["train"]["num_workers"]),
        "FLOWGUIDE_TENSORBOARD": "true" if config["train"]["tensorboard"] else "false",
        "FLOWGUIDE_TRAIN_GPUS": str(rule_gpus("train")),
    }
)
