"""A tiny to-do list service."""
