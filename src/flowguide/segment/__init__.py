"""Segment stage: per-frame candidate masks as ranked label maps (SAM on flow, or motion)."""
