"""Inference engine (KV cache, prefill, decode, batching) and the Ray actors that host it."""
