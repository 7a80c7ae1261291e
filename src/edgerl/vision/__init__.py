"""Vision substrate: boxes, synthetic scenes, loaders, detectors, metrics, profiles."""
