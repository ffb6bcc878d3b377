"""Pure domain code for goldrl: never imports dagster (enforced by import-linter)."""
