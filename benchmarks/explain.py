"""Post-hoc explainers side by side on one clip: seconds and model passes per explainer.

    python benchmarks/explain.py                         # tiny SlowFast, 8 x 64 x 64, CPU
    python benchmarks/explain.py --device cuda --depth 50 --frames 32 --size 224

Random weights (speed does not depend on them); the papers' sample budgets by default (LIME,
Kernel SHAP, RISE: 1000; occlusion: 7 x 13 x 13 windows; SLIC: 200 regions, SWAG-V: 120).
The segment-based explainers share one SLIC of the clip (its time is printed on its own). Also
times RISE's mask generation at 16 masks of 32 x 256 x 256: the previous recipe (upsample the
whole (g + 1)-cell volume on the CPU, crop, copy to the device) against the current one
(separable, on the device). Ends with ``ratio <what> <value>`` lines.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import torch
import torch.nn.functional as F

from flowguide.explain import explain_and_score, register_explainer
from flowguide.explain.core import ModuleFn
from flowguide.explain.explainers import EXPLAINERS
from flowguide.explain.rise import rise_geometry, rise_masks
from flowguide.explain.stage import slowfast_gradcam
from flowguide.modeling.slowfast import SlowFastSpec, build_slowfast, forward_clip
from flowguide.modeling.trained import TrainedModel

ORDER = ["gradcam", "swag_v", "rise", "lime", "kernel_shap", "loco", "univariate", "occlusion"]


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def previous_rise_masks(n, shape, grid, p, generator, device) -> torch.Tensor:
    """The recipe before: the full (g + 1)-cell volume interpolated on the CPU, cropped per
    mask, then copied to the device."""
    cells, cell, up = rise_geometry(shape, grid)
    binary = (torch.rand((n, 1, *cells), generator=generator) < p).float()
    smooth = F.interpolate(binary, size=up, mode="trilinear", align_corners=False)[:, 0]
    shifts = [torch.randint(0, c, (n,), generator=generator) for c in cell]
    out = torch.empty((n, *shape))
    for i in range(n):
        st, sh, sw = (int(s[i]) for s in shifts)
        out[i] = smooth[i, st : st + shape[0], sh : sh + shape[1], sw : sw + shape[2]]
    return out.to(device)


def time_masks(fn, device: str, reps: int) -> float:
    times = []
    for rep in range(reps):
        gen = torch.Generator(device=device if fn is rise_masks else "cpu").manual_seed(rep)
        sync(device)
        start = time.perf_counter()
        fn(16, (32, 256, 256), (4, 7, 7), 0.5, gen, device)
        sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def synthetic_clip(frames: int, size: int) -> torch.Tensor:
    """A normalised clip with texture SLIC can segment: smooth colour noise and a bright box
    moving across it (pure noise would leave SLIC with a couple of regions)."""
    gen = torch.Generator().manual_seed(0)
    coarse = torch.rand((1, 3, max(2, frames // 2), 8, 8), generator=gen)
    pixels = F.interpolate(coarse, size=(frames, size, size), mode="trilinear")[0]
    side = size // 4
    for t in range(frames):
        x = t * (size - side) // max(1, frames - 1)
        pixels[:, t, side : 2 * side, x : x + side] = torch.tensor([0.9, 0.8, 0.2])[:, None, None]
    return (pixels - 0.45) / 0.225


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--depth", type=int, default=18, choices=[18, 50])
    p.add_argument("--width", type=int, default=16, help="stem width (64 = SlowFast-R50)")
    p.add_argument("--samples", type=int, default=1000, help="LIME/SHAP/RISE samples")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--explainers", nargs="*", default=ORDER)
    p.add_argument("--mask-reps", type=int, default=3)
    args = p.parse_args()
    torch.manual_seed(0)

    cpu_before = time_masks(previous_rise_masks, args.device, args.mask_reps)
    after = time_masks(rise_masks, args.device, args.mask_reps)
    print(f"RISE masks, 16 x 32x256x256 on {args.device}:")
    print(f"  before (CPU upsample, crop, copy) {cpu_before:.3f} s, after {after:.3f} s")

    spec = SlowFastSpec(num_classes=8, depth=args.depth, stem_width=args.width, dropout=0.0)
    model = build_slowfast(spec).eval().to(args.device)
    alpha = 4
    trained = TrainedModel(
        model=model,
        model_fn=lambda x: forward_clip(model, x, alpha),
        alpha=alpha,
        T=args.frames,
        num_classes=8,
        transform={"mean": [0.45] * 3, "std": [0.225] * 3},
        method="vanilla",
        abn=False,
        meta={},
    )
    register_explainer("gradcam", slowfast_gradcam(trained))
    model_fn = ModuleFn(model, lambda m, x: forward_clip(m, x, alpha))
    clip = synthetic_clip(args.frames, args.size).to(args.device)
    n = args.samples
    options = {
        "batch_size": args.batch_size,
        "lime": {"n_samples": n},
        "kernel_shap": {"n_samples": n},
        "rise": {"n_samples": n},
        "selective": {"enabled": False},
        "metrics": {"faithfulness": False},
    }
    names = [e for e in args.explainers if e in EXPLAINERS]
    sync(args.device)
    rows, _ = explain_and_score(model_fn, clip, 0, names, options)
    sync(args.device)
    print(
        f"one clip 3 x {args.frames} x {args.size} x {args.size}, SlowFast depth {args.depth} "
        f"width {args.width}, {args.device}"
    )
    print(f"{'explainer':12s} {'seconds':>9s} {'forward':>8s} {'backward':>8s}")
    by_name = {r["explainer"]: r for r in rows}
    for r in rows:
        print(
            f"{r['explainer']:12s} {r['seconds']:9.3f} {r['forward_passes']:8d} "
            f"{r['backward_passes']:8d}"
        )
    seg = {r.get("segmentation_seconds") for r in rows} - {None}
    if seg:
        print(f"shared SLIC (once per clip): {seg.pop():.3f} s")
    print(f"ratio rise_mask_speedup_{args.device} {cpu_before / after:.2f}")
    if "gradcam" in by_name:
        ref = by_name["gradcam"]
        for r in rows:
            if r["explainer"] == "gradcam":
                continue
            print(f"ratio seconds_{r['explainer']}_vs_gradcam {r['seconds'] / ref['seconds']:.1f}")
            passes = r["forward_passes"] / max(1, ref["forward_passes"])
            print(f"ratio forward_passes_{r['explainer']}_vs_gradcam {passes:.0f}")
    if math.isnan(after):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
