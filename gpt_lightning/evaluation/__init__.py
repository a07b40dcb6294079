"""Evaluations beyond the validation loss: scores that compare a model with others (HellaSwag)."""
