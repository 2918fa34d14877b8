"""Real servers the tests start on 127.0.0.1 (free ports, temporary directories, stopped by
pid); `scripts/services` installs them."""
