"""Engines: where publications, history and presence live (memory for one node, Redis for many)."""
