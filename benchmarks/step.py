"""Seconds per optimiser step of each explanation-guided method, relative to vanilla CE.

One run, one model initialisation and one batch for every method; each step is forward, the
method's loss terms, backward and SGD step. Median of --reps timed steps after --warmup, the methods
timed in round robin so that a shared machine's load drift hits them alike. Seconds are wall
clock on CUDA and process CPU seconds (all threads) on CPU, where wall clock on a shared machine
mostly measures the other tenants.
rrr_gradcam is timed twice: ``rrr_gradcam_all`` penalises every sample, ``rrr_gradcam`` draws
each step's batch indices from a dataset whose worst --percentile percent are flagged (so some
steps have no selected sample and skip the input gradient), as in training.

Memory: on CUDA, a step's working memory: torch.cuda.max_memory_allocated during the step
minus what was allocated before it (all methods' models stay resident), max over steps, MiB.
On CPU it is skipped: tracemalloc does not see torch's allocator, and ru_maxrss is a
process-lifetime peak that cannot be split per method in one run.

    python benchmarks/step.py                        # tiny model, 2-core CPU, about a minute
    python benchmarks/step.py --device cuda --depth 50 --size 224 --T 16 --batch 8
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from flowguide.modeling.abn import ABNLossWeights, ABNSpec, ObjectABN, abn_loss_terms
from flowguide.modeling.gradcam import PathwayRecorder
from flowguide.modeling.slowfast import SlowFastSpec, build_slowfast, forward_clip
from flowguide.train.losses import (
    ogl_dice_terms,
    rrr_gradcam_terms,
    rrr_ogl_terms,
)
from flowguide.train.worst import WorstPerformerTracker

METHODS = ("vanilla", "ogl_dice", "rrr_ogl", "rrr_gradcam", "rrr_gradcam_all", "abn")


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--depth", type=int, default=18, choices=(18, 50))
    p.add_argument("--stem-width", type=int, default=None, help="default 16 (R18), 64 (R50)")
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--T", type=int, default=8)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--classes", type=int, default=48)
    p.add_argument("--alpha", type=int, default=4)
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--percentile", type=float, default=10.0)
    p.add_argument("--dataset-size", type=int, default=1000)
    p.add_argument("--methods", default=",".join(METHODS))
    return p.parse_args()


def make_step(method: str, base: torch.nn.Module, args, batch) -> Callable[[], None]:
    clip, labels, mask = batch
    model = copy.deepcopy(base)
    if method == "abn":
        width = 256 if args.depth == 50 else 32
        model = ObjectABN(model, ABNSpec(args.classes, args.alpha, mode="mask", width=width))
    model.to(args.device).train()
    opt = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)
    recorder = (
        PathwayRecorder(model) if method in ("ogl_dice", "rrr_gradcam_all", "rrr_gradcam") else None
    )
    tracker = None
    if method == "rrr_gradcam":
        tracker = WorstPerformerTracker(args.dataset_size, args.percentile)
        tracker.update(torch.arange(args.dataset_size), torch.rand(args.dataset_size))
    gen = torch.Generator().manual_seed(0)

    def step() -> None:
        x = clip.detach().requires_grad_(method.startswith("rrr"))
        if method == "abn":
            out = model(x)
            loss = F.cross_entropy(out.logits, labels)
            terms = abn_loss_terms(out, labels, mask, ABNLossWeights())
        else:
            logits = forward_clip(model, x, args.alpha)
            loss = F.cross_entropy(logits, labels)
            if method == "vanilla":
                terms = {}
            elif method == "ogl_dice":
                terms = ogl_dice_terms(logits, labels, recorder.take(), mask, args.alpha, 0.25)
            elif method == "rrr_ogl":
                terms = rrr_ogl_terms(logits, x, mask, 0.01)
            else:
                if tracker is None:
                    selected = torch.ones(len(labels), dtype=torch.bool)
                else:
                    idx = torch.randint(args.dataset_size, (len(labels),), generator=gen)
                    selected = tracker.select(idx)
                terms = rrr_gradcam_terms(logits, labels, x, recorder.take(), selected, 0.01)
        total = loss + sum(terms.values())
        opt.zero_grad(set_to_none=True)
        # Parameters only: the clip's own .grad is not needed.
        torch.autograd.backward(total, inputs=list(model.parameters()))
        opt.step()

    return step


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timed_step(step: Callable[[], None], device: str) -> tuple[float, float | None]:
    """Seconds of one step, and on CUDA the step's working memory (peak minus resident, MiB)."""
    cuda = device.startswith("cuda")
    sync(device)
    if cuda:
        resident = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
    # On CPU, process CPU time (all threads): wall clock on a shared 2-core box mostly measures
    # the other tenants. On CUDA, wall clock after synchronising.
    clock = time.perf_counter if cuda else time.process_time
    start = clock()
    step()
    sync(device)
    seconds = clock() - start
    peak = (torch.cuda.max_memory_allocated() - resident) / 2**20 if cuda else None
    return seconds, peak


def main() -> None:
    args = parse_args()
    stem = args.stem_width or (64 if args.depth == 50 else 16)
    torch.manual_seed(0)
    base = build_slowfast(SlowFastSpec(args.classes, depth=args.depth, stem_width=stem))
    gen = torch.Generator().manual_seed(1)
    shape = (args.batch, 3, args.T, args.size, args.size)
    clip = torch.randn(shape, generator=gen).to(args.device)
    labels = torch.randint(args.classes, (args.batch,), generator=gen).to(args.device)
    mask = torch.zeros(args.batch, args.T, args.size, args.size, dtype=torch.bool)
    c0, c1 = args.size // 4, 3 * args.size // 4
    mask[:, :, c0:c1, c0:c1] = True
    mask = mask.to(args.device)
    name = torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu"
    print(
        f"device {args.device} ({name}, "
        f"{torch.get_num_threads()} threads) depth {args.depth} stem {stem} batch {args.batch} "
        f"T {args.T} size {args.size} reps {args.reps}"
    )
    methods = args.methods.split(",")
    steps = {m: make_step(m, base, args, (clip, labels, mask)) for m in methods}
    for _ in range(args.warmup):
        for step in steps.values():
            step()
    # Round robin, so that drift in a shared machine's load hits every method alike.
    times: dict[str, list[float]] = {m: [] for m in methods}
    peaks: dict[str, float | None] = dict.fromkeys(methods)
    for _ in range(args.reps):
        for method, step in steps.items():
            seconds, peak = timed_step(step, args.device)
            times[method].append(seconds)
            if peak is not None:
                peaks[method] = max(peaks[method] or 0.0, peak)
    results = {m: statistics.median(t) for m, t in times.items()}
    for method, seconds in results.items():
        peak = peaks[method]
        mem = f"{peak:.0f} MiB" if peak is not None else "skipped (CPU)"
        mean = statistics.fmean(times[method])
        print(f"{method:16s} {seconds:8.3f} s/step (mean {mean:.3f})   step peak memory {mem}")
    for method, seconds in results.items():
        if method != "vanilla" and "vanilla" in results:
            print(f"ratio {method}_vs_vanilla {seconds / results['vanilla']:.2f}")
    if "rrr_gradcam" in results and "vanilla" in results:
        # Steps with no selected sample skip RRR, so the median can hide its cost: the mean.
        mean_ratio = statistics.fmean(times["rrr_gradcam"]) / statistics.fmean(times["vanilla"])
        print(f"ratio rrr_gradcam_mean_vs_vanilla {mean_ratio:.2f}")


if __name__ == "__main__":
    main()
