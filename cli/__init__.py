"""The `nsa` command line."""
