"""Model resolution, keys and targets."""
