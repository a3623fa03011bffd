"""Datasets: Diving48's folder layout (real or SynthDive-generated) and the manifest stage."""
