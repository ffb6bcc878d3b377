"""Walk-forward evaluation: folds, metrics and the Nautilus runs over every fold."""
