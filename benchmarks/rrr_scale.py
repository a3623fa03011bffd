"""How large the RRR penalty is next to the cross-entropy, under each reduction (issue 16).

The penalty is lambda * (1/B) * sum_b R_b with R_b the sum ("sum", Ross et al.) or the mean
("mean") over a clip's 3*T*H*W elements of the squared input gradient outside the diver mask.
This measures, for one SlowFast at one size, the per-element mean of that squared gradient, the
two penalties at lambda = 1 and the weighted CE, and prints what lambda makes the penalty equal
to the CE under each reduction, also scaled to the thesis' sizes (T 16/32/64, 224 px crop) by
the element count (the per-element mean is taken as size-independent: an assumption, stated).

Random initialisation (no Kinetics weights can be downloaded here): a trained network's input
gradients differ, so the figures give the order of magnitude, not the thesis' values.

    python benchmarks/rrr_scale.py                          # R50, T 8, 112 px, batch 2, CPU
    python benchmarks/rrr_scale.py --device cuda --T 16 --size 224 --batch 8
"""

from __future__ import annotations

import argparse

import torch

from flowguide.modeling.slowfast import SlowFastSpec, build_slowfast, forward_clip
from flowguide.train.losses import rrr_ogl_terms
from flowguide.train.step import weighted_ce


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--depth", type=int, default=50)
    p.add_argument("--T", type=int, default=8)
    p.add_argument("--size", type=int, default=112)
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--classes", type=int, default=48)
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    torch.manual_seed(args.seed)
    dev = torch.device(args.device)
    model = build_slowfast(SlowFastSpec(args.classes, depth=args.depth)).to(dev).train()
    clip = torch.randn(args.batch, 3, args.T, args.size, args.size, device=dev)
    clip.requires_grad_(True)
    labels = torch.randint(0, args.classes, (args.batch,), device=dev)
    mask = torch.zeros(args.batch, args.T, args.size, args.size, dtype=torch.bool, device=dev)
    third = args.size // 3
    mask[:, :, third : 2 * third, third : 2 * third] = True  # a central diver box
    logits = forward_clip(model, clip, 4)
    ce = weighted_ce(logits, labels, torch.ones(args.classes, device=dev)).item()
    total = rrr_ogl_terms(logits, clip, mask, 1.0, "sum")["rrr"].item()
    mean = rrr_ogl_terms(logits, clip, mask, 1.0, "mean")["rrr"].item()
    elements = 3 * args.T * args.size * args.size
    print(f"depth {args.depth}, T {args.T}, {args.size} px, batch {args.batch}, random init")
    print(f"weighted CE {ce:.4g}; per-element mean squared masked input gradient {mean:.4g}")
    print(f"penalty at lambda 1: sum {total:.4g}, mean {mean:.4g} (ratio {total / mean:.0f}"
          f" = 3*T*H*W = {elements})")  # fmt: skip
    print(f"ratio rrr_sum_over_ce_at_lambda1_T{args.T}_{args.size}px {total / ce:.4g}")
    print(f"ratio rrr_mean_over_ce_at_lambda1_T{args.T}_{args.size}px {mean / ce:.4g}")
    for t in (16, 32, 64):
        scaled = mean * 3 * t * 224 * 224
        print(f"ratio rrr_sum_over_ce_at_lambda1_T{t}_224px_extrapolated {scaled / ce:.4g}")
    print(f"lambda for penalty = CE: sum {ce / total:.3g}, mean {ce / mean:.3g}")


if __name__ == "__main__":
    main()
