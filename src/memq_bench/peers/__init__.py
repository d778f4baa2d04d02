"""Peer systems run side by side with memq (the ``bench-peers`` extra)."""
