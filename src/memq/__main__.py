"""``python -m memq`` runs the command line."""

from memq.cli import app

app()
