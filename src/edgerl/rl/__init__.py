"""Shared learning pieces."""
