"""Training stage: SlowFast on the manifest's clips, one job per (method, T).

Where to find what:

- ``loop``: the entry point ``train(...)`` (data, model, resume, the epochs, outputs);
- ``epoch``: one epoch over a loader (optimiser groups) and the accuracy of a model;
- ``step``: one loader batch (weighted CE + the method's terms, its share of the gradient);
- ``schedule``: the learning-rate schedule, accumulation groups, epoch order and its split;
- ``checkpoint``: RNG states, atomic checkpoints, the resume fingerprint;
- ``distributed``: torchrun processes, gradient and BatchNorm-statistics synchronisation;
- ``options``: the config's ``train`` section -> model and transform specs, per-(method, T)
  loader batch sizes;
- ``clipset``: which clips a run trains on (train.clip_set), repeated-slot counts;
- ``loader``: the DataLoader kept across epochs; ``outputs``: metrics.csv, timing.json;
- ``precision``: autocast bf16/fp16 and the gradient scaler; ``memory``: activation
  checkpointing, channels_last_3d, cudnn.benchmark;
- ``methods`` (the registry), ``losses`` (the guided terms), ``worst`` (RRR + GradCAM's
  worst-sample bookkeeping); the data side is ``flowguide.clips``.
"""
