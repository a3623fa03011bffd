"""Training stage: SlowFast on the manifest's clips, one job per (method, T).

Where to find what:

- ``loop``: the entry point ``train(...)`` (data, model, resume, the epochs, outputs);
- ``epoch``: one epoch over a loader (optimiser groups) and the accuracy of a model;
- ``step``: one loader batch (weighted CE + the method's terms, its share of the gradient);
- ``schedule``: the learning-rate schedule, accumulation groups, epoch order and its split;
- ``checkpoint``: RNG states, atomic checkpoints, the resume fingerprint;
- ``distributed``: torchrun processes, gradient and BatchNorm-statistics synchronisation;
- ``options``: the config's ``train`` section -> model and transform specs;
- ``methods`` (the registry), ``losses`` (the guided terms), ``worst`` (RRR + GradCAM's
  worst-sample bookkeeping); the data side is ``flowguide.clips``.
"""
