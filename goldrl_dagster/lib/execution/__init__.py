"""Execution: the order state machine, the ledger and reconciliation, paper and live alike."""
