"""Datasets made locally, with ground truth, for offline training and evaluation."""
