"""Peak GPU memory and seconds per step of each training method, per T and precision (issue 16).

For every method (vanilla, ogl_transform, ogl_dice, rrr_ogl, rrr_gradcam with every sample
penalised, abn), T in --T (default 16 32 64) and precision in --precision (fp32 bf16 fp16): a
SlowFast-R50 at --size px (224), one loader batch of --batch clips, the training loop's own step
(flowguide.train.step.accumulate_batch: forward, the method's terms, backward) plus an SGD step.
Peak memory is torch.cuda.max_memory_allocated during the step minus what was allocated before it
(the model, its gradients and the optimiser state stay resident), max over --reps steps after
--warmup; seconds are the median over the timed steps (CUDA synchronised). A configuration that
runs out of memory is reported as OOM. Ends with ``ratio`` lines against vanilla at the same T
and precision, and of each precision against fp32.

Without CUDA it prints why and exits 0: GPU memory cannot be measured on a CPU.

    python benchmarks/memory.py                                    # skips on a CPU
    python benchmarks/memory.py --T 16 32 64 --batch 8 --precision fp32 bf16 fp16
    python benchmarks/memory.py --activation-checkpointing --channels-last
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch

METHODS = ("vanilla", "ogl_transform", "ogl_dice", "rrr_ogl", "rrr_gradcam", "abn")


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--methods", nargs="+", default=list(METHODS))
    p.add_argument("--T", nargs="+", type=int, default=[16, 32, 64])
    p.add_argument("--precision", nargs="+", default=["fp32", "bf16", "fp16"])
    p.add_argument("--depth", type=int, default=50)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--classes", type=int, default=48)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--activation-checkpointing", action="store_true")
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--cudnn-benchmark", action="store_true")
    return p.parse_args()


def measure(args, name: str, t: int, precision_name: str, dev: torch.device) -> tuple[float, float]:
    """(peak MiB, median seconds) of one configuration; raises torch.cuda.OutOfMemoryError."""
    from flowguide.modeling.slowfast import SlowFastSpec, build_slowfast
    from flowguide.train.memory import enable_activation_checkpointing, to_channels_last
    from flowguide.train.methods import TrainContext, create_method
    from flowguide.train.precision import Precision
    from flowguide.train.step import accumulate_batch

    torch.manual_seed(0)
    spec = SlowFastSpec(args.classes, depth=args.depth)
    # every sample penalised, so rrr_gradcam's cost is its worst case (benchmarks/step.py
    # also times the percentile selection)
    method = create_method(name, {"rrr_gradcam": {"percentile": 100.0}})
    method.prepare(spec, args.batch)
    model = method.wrap_model(build_slowfast(spec)).to(dev).train()
    if args.channels_last:
        to_channels_last(model)
    if args.activation_checkpointing:
        enable_activation_checkpointing(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    precision = Precision(precision_name, dev)
    ctx = TrainContext(alpha=spec.alpha, num_classes=args.classes,
                       class_weights=torch.ones(args.classes, device=dev), device=dev)  # fmt: skip
    batch = {
        "clip": torch.randn(args.batch, 3, t, args.size, args.size),
        "label": torch.randint(0, args.classes, (args.batch,)),
        "index": torch.arange(args.batch),
        "mask": torch.rand(args.batch, t, args.size, args.size) > 0.5,
    }
    if name == "rrr_gradcam":
        method.tracker.update(batch["index"], torch.ones(args.batch))
    if name == "ogl_transform":  # its cost is in the transform (CPU); the step is vanilla's
        batch.pop("mask")
    peaks, seconds = [], []
    for rep in range(args.warmup + args.reps):
        optimizer.zero_grad(set_to_none=True)
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        accumulate_batch(model, method, batch, ctx, args.batch, precision, args.channels_last)
        precision.step(optimizer)
        torch.cuda.synchronize()
        if rep >= args.warmup:
            seconds.append(time.perf_counter() - start)
            peaks.append((torch.cuda.max_memory_allocated() - base) / 2**20)
    del model, optimizer
    torch.cuda.empty_cache()
    return max(peaks), statistics.median(seconds)


def main() -> int:
    args = parse_args()
    if not torch.cuda.is_available():
        print("skip: no CUDA device; peak GPU memory and GPU step time cannot be measured on a CPU")
        return 0
    torch.backends.cudnn.benchmark = args.cudnn_benchmark
    cuda = torch.device("cuda")
    print(f"device {torch.cuda.get_device_name(0)}; SlowFast-R{args.depth}, {args.size} px, "
          f"loader batch {args.batch}, activation checkpointing {args.activation_checkpointing},"
          f" channels_last {args.channels_last}")  # fmt: skip
    results: dict[tuple[str, int, str], tuple[float, float] | None] = {}
    print("method\tT\tprecision\tpeak_MiB\tseconds_per_step")
    for t in args.T:
        for precision in args.precision:
            for name in args.methods:
                try:
                    results[(name, t, precision)] = measure(args, name, t, precision, cuda)
                except torch.cuda.OutOfMemoryError:
                    results[(name, t, precision)] = None
                    torch.cuda.empty_cache()
                got = results[(name, t, precision)]
                cells = "OOM\tOOM" if got is None else f"{got[0]:.0f}\t{got[1]:.3f}"
                print(f"{name}\tT{t}\t{precision}\t{cells}", flush=True)
    for (name, t, precision), got in results.items():
        base = results.get(("vanilla", t, precision))
        if got is not None and base is not None and name != "vanilla":
            print(f"ratio memory_{name}_over_vanilla_T{t}_{precision} {got[0] / base[0]:.2f}")
            print(f"ratio time_{name}_over_vanilla_T{t}_{precision} {got[1] / base[1]:.2f}")
        full = results.get((name, t, "fp32"))
        if got is not None and full is not None and precision != "fp32":
            print(f"ratio memory_{precision}_over_fp32_{name}_T{t} {got[0] / full[0]:.2f}")
            print(f"ratio time_{precision}_over_fp32_{name}_T{t} {got[1] / full[1]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
