"""Provider wire formats, transports and the registry."""
