"""Dataset health: duplicates, likely wrong labels and outliers (issue 19). Imports no torch."""
