"""The one model builder (SlowFast) and what explains it (GradCAM)."""
