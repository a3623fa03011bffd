# Execution settings: how a job runs, never what it computes. They are kept out of params: (a
# changed param reruns the job and everything downstream), so changing any of them reruns
# nothing:
#   device                      torch device of the model stages (auto, cpu, cuda, cuda:N)
#   fail_fast                   stop at the first per-video failure instead of recording it
#   train.num_workers           data-loader processes of a training job
#   train.tensorboard           TensorBoard event files next to metrics.csv
#   train.prefetch_factor       batches each loader worker prepares ahead
#   train.cudnn_benchmark       cuDNN picks its convolution algorithms by timing them (the
#                               same arithmetic up to float rounding, like any GPU rerun)
#   cluster.rules.train.gpus    processes of a training job (one per GPU; the optimiser batch
#                               train.batch_size is the same for any number)
# The shell commands read them from FLOWGUIDE_* environment variables, set here whenever
# Snakemake loads the workflow: the main process (local jobs inherit its environment) and,
# under a cluster executor, each job's own Snakemake, which loads the same config.
# Not here, because they change the numbers: train.precision and train.channels_last (other
# kernels and rounding), train.loader_batch_size(_overrides) (BatchNorm's batch statistics) and
# train.activation_checkpointing (its recomputed forward updates BatchNorm's running statistics
# a second time). They stay in the train rule's params.
# `snakemake -n -p` therefore prints "$FLOWGUIDE_DEVICE" where a value would be; bash's strict
# mode in Snakemake's shell stops a command whose variable is not set.

os.environ.update(
    {
        "FLOWGUIDE_DEVICE": config["device"],
        "FLOWGUIDE_FAIL_FAST": "--fail-fast" if config["fail_fast"] else "",
        "FLOWGUIDE_NUM_WORKERS": str(config["train"]["num_workers"]),
        "FLOWGUIDE_TENSORBOARD": "true" if config["train"]["tensorboard"] else "false",
        "FLOWGUIDE_PREFETCH_FACTOR": str(config["train"]["prefetch_factor"]),
        "FLOWGUIDE_CUDNN_BENCHMARK": (
            "true" if config["train"]["cudnn_benchmark"] else "false"
        ),
        "FLOWGUIDE_TRAIN_GPUS": str(rule_gpus("train")),
    }
)
