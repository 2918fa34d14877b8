"""msgspec Structs for the wire formats the gateway reads."""
