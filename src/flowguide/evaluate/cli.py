"""``flowguide evaluate``: results/eval/{run}/T{T}/ from a trained run.

The handler rebuilds the model and the test loader from the training run's checkpoint through
``flowguide.evaluate.wiring.load_for_evaluation`` (the thin layer on the training code's
checkpoint and dataset) and hands them to ``flowguide.evaluate.stage.evaluate_run``.
"""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    from flowguide.cli import json_options

    p = subparsers.add_parser("evaluate", help="test accuracy, GradCAM vs masks, GFLOPs, cost")
    p.add_argument("--train-dir", required=True, help="results/train/{run}/T{T} (checkpoint.pt)")
    p.add_argument("--manifest", required=True, help="results/manifest.csv")
    p.add_argument("--masks-dir", help="results/masks (GradCAM vs mask); omit to skip")
    p.add_argument("--synth-clips", help="SynthDive clips.csv (cue reliance); omit on Diving48")
    p.add_argument("--run", required=True, help="run name, e.g. ogl_dice-ce_weight0.25")
    p.add_argument("--T", type=int, required=True, help="temporal resolution of the run")
    p.add_argument("--options", type=json_options, default={}, help="config 'evaluate' section")
    p.add_argument("--device", default="auto")
    p.add_argument("--out", required=True, help="output folder results/eval/{run}/T{T}")
    p.set_defaults(func=_evaluate)


def _evaluate(args: argparse.Namespace) -> int:
    from flowguide.utils.failures import FlowguideError
    from flowguide.utils.runs import parse_run_name

    try:
        from flowguide.evaluate.wiring import load_for_evaluation
    except ImportError as exc:
        raise FlowguideError(
            "evaluate: the checkpoint wiring (flowguide.evaluate.wiring) is not installed"
        ) from exc
    from flowguide.evaluate.stage import evaluate_run

    base, params = parse_run_name(args.run)
    run = {"method": args.run, "base_method": base, "T": args.T, "params": params}
    loaded = load_for_evaluation(args.train_dir, args.manifest, args.masks_dir, args.device)
    doc = evaluate_run(
        args.out, run, loaded.model_fn, loaded.batches, loaded.num_classes,
        cam_fn=loaded.cam_fn, extra_maps_fn=loaded.extra_maps_fn, flops_model=loaded.flops_model,
        alpha=loaded.alpha, train_dir=args.train_dir, synth_clips=args.synth_clips,
        options=args.options, total=loaded.total,
    )  # fmt: skip
    print(f"evaluate: {args.run} T={args.T}: top-1 {doc['top1']:.4f} on {doc['n_clips']} clips")
    return 0
