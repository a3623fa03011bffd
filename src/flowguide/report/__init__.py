"""The report stage: Chapter 5's tables and figures from whatever results exist."""
