"""Training stage: SlowFast on the manifest's clips, one job per (method, T).

``sampling`` (dynamic temporal stride), ``transforms`` (thesis 4.6.2, masks following the
geometry), ``dataset`` (clip + masks), ``methods`` (the registry), ``loop`` (the entry point).
"""
