"""Operator controls: commands written as rows, applied and acknowledged by the live engine."""
