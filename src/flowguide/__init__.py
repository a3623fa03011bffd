"""flowguide: athlete masks from optical flow and explanation-guided training of video models."""

__version__ = "0.1.0"
