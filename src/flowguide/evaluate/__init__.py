"""The evaluation stage: accuracy, map-vs-mask overlap, GFLOPs, training cost, cue reliance."""
