"""Clip loading shared by training, evaluation and explanation: temporal sampling (dynamic
stride), joint video+mask transforms, and the one clip dataset."""
