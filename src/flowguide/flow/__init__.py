"""Optical-flow stage: RAFT (torchvision) or DIS/Farneback (OpenCV) flow of a shard of videos."""
