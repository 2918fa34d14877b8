"""Mock upstream servers that speak the providers' real wire formats, for tests."""
