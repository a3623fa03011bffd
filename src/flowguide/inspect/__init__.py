"""Inspection: list a shard's videos, render one video as the thesis' Figure 4.2."""
