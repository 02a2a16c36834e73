"""Diagnostics: weight statistics (entropy, dead weights, flip ratio, quantization error),
their tracking during training, the model summary and plots."""

from bnnlab.diagnostics import stats, summary, tracking
from bnnlab.diagnostics.summary import Summary
from bnnlab.diagnostics.summary import summary as model_summary

__all__ = ["Summary", "model_summary", "stats", "summary", "tracking"]
