"""Data sources: a synthetic EM generator with ground truth (and, later, the field's datasets)."""
