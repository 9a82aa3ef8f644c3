"""Data: annotation parsers, video readers, samplers, transforms and datasets."""
