"""Dagster wiring of goldrl, by domain. Loaded with ``dg.load_from_defs_folder``."""
