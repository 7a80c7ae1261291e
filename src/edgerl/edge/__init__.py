"""The physical world: units, wireless channel, DNN model zoo and layer profiles."""
