"""Embedded tasks with exact ground truth."""
