"""Transformer with pluggable attention, weight loading, tokenizer and model registry."""
