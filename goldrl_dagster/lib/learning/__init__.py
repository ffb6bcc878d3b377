"""The continuous-learning loop: cycles of candidates trained on rolling windows, judged."""
