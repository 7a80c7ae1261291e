"""Tests of the edge core: units, channel, model zoo, layer profiler."""
