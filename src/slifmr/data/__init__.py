"""Data layer: readers, filtering, splitting, noise, graphs' inputs and the DataModule."""
