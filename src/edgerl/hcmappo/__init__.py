"""hcmappo layer."""
