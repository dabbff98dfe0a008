"""`python -m nsa_assist.cli` runs the `nsa` command."""

from .app import main

main()
