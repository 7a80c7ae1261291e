"""cerl layer."""
