"""``flowguide train``: one (method, T) training job, on one or several processes."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys


def register(subparsers: argparse._SubParsersAction) -> None:
    from flowguide.cli import json_options

    p = subparsers.add_parser("train", help="train SlowFast with one method at one T")
    p.add_argument("--manifest", required=True, help="results/manifest.csv")
    p.add_argument("--masks-dir", default=None, help="folder of diver-mask shards (mask methods)")
    p.add_argument("--method", required=True, help="registry name, e.g. vanilla, ogl_transform")
    p.add_argument("--T", dest="T", type=int, required=True, help="frames sampled per clip")
    p.add_argument("--out-dir", required=True, help="output folder (checkpoint.pt, metrics.csv)")
    p.add_argument("--options", type=json_options, default={}, help="config 'train' section")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument(
        "--gpus",
        type=int,
        default=0,
        help="GPUs given to the job; more than 1: one process per GPU (torchrun, NCCL)",
    )
    # Execution settings: passed outside --options so that the workflow can change them without
    # a rerun (workflow/rules/execution.smk); given here, they replace the options' values.
    p.add_argument(
        "--num-workers", type=int, default=None, help="data-loader processes (train.num_workers)"
    )
    p.add_argument(
        "--tensorboard",
        choices=("true", "false"),
        default=None,
        help="write TensorBoard event files (train.tensorboard)",
    )
    p.add_argument(
        "--prefetch-factor",
        type=int,
        default=None,
        help="batches each loader worker prepares ahead (train.prefetch_factor)",
    )
    p.add_argument(
        "--cudnn-benchmark",
        choices=("true", "false"),
        default=None,
        help="let cuDNN pick convolution algorithms by timing them (train.cudnn_benchmark)",
    )
    p.add_argument(
        "--nproc",
        type=int,
        default=0,
        help="processes on this node, overriding --gpus (e.g. 2 with --device cpu: gloo)",
    )
    p.set_defaults(func=_train)


def processes(args: argparse.Namespace) -> int:
    from flowguide.config import train_processes

    if args.nproc:
        return args.nproc
    return train_processes(args.gpus, args.device)


def execution_options(args: argparse.Namespace) -> dict:
    """The train options with the execution settings given on the command line applied."""
    options = dict(args.options)
    if args.num_workers is not None:
        options["num_workers"] = args.num_workers
    if args.tensorboard is not None:
        options["tensorboard"] = args.tensorboard == "true"
    if args.prefetch_factor is not None:
        options["prefetch_factor"] = args.prefetch_factor
    if args.cudnn_benchmark is not None:
        options["cudnn_benchmark"] = args.cudnn_benchmark == "true"
    return options


def _train(args: argparse.Namespace) -> int:
    args.options = execution_options(args)
    n = processes(args)
    if int(os.environ.get("RANK", "0")) == 0 and int(os.environ.get("WORLD_SIZE", "1")) == 1:
        print(  # the execution settings, which the job's parameters do not show
            f"train: device {args.device}, {n} process(es), "
            f"num_workers {args.options.get('num_workers', 'default')}, "
            f"tensorboard {args.options.get('tensorboard', 'default')}, "
            f"prefetch_factor {args.options.get('prefetch_factor', 'default')}, "
            f"cudnn_benchmark {args.options.get('cudnn_benchmark', 'default')}",
            flush=True,
        )
    if n > 1 and int(os.environ.get("WORLD_SIZE", "1")) == 1:
        return _relaunch(args, n)
    import torch.distributed as dist

    from flowguide.train.loop import train

    try:
        result = train(
            args.manifest, args.masks_dir, args.method, args.T, args.out_dir, args.options,
            args.device,
        )  # fmt: skip
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    if int(os.environ.get("RANK", "0")) != 0:
        return 0
    last = result.metrics[-1] if result.metrics else {}
    print(
        f"train {args.method} T={args.T}: {len(result.metrics)} epochs "
        f"({result.epochs_run} run now, resumed from {result.resumed_from}, "
        f"{result.world_size} process(es)); final loss {last.get('loss', float('nan')):.4f}, "
        f"accuracy {last.get('accuracy', 0):.3f}"
    )
    return 0


def _relaunch(args: argparse.Namespace, n: int) -> int:
    """This command again under torch.distributed.run, one process per GPU (or per --nproc)."""
    argv = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={n}",
        "-m", "flowguide", "train",
        "--manifest", str(args.manifest),
        "--method", args.method,
        "--T", str(args.T),
        "--out-dir", str(args.out_dir),
        "--options", json.dumps(args.options),
        "--device", args.device,
    ]  # fmt: skip
    if args.masks_dir is not None:
        argv += ["--masks-dir", str(args.masks_dir)]
    env = dict(os.environ)
    if args.device != "cpu" and not args.nproc:
        import torch

        if torch.cuda.is_available():
            from flowguide.utils.device import claim_gpus, visible_devices_env

            # One machine, several GPU jobs: this job's workers see only the GPUs it claimed.
            env["CUDA_VISIBLE_DEVICES"] = visible_devices_env(claim_gpus(n))
    # torchrun sets OMP_NUM_THREADS=1 per process unless the job set it.
    return subprocess.run(argv, check=False, env=env).returncode
