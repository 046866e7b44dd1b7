"""Bundled examples that run offline, with scripted agents."""
