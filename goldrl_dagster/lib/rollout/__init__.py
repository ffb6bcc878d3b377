"""Staged rollout of a challenger: shadow → canary → full, judged on live evidence."""
