"""Authentication: connection and subscription JWTs."""
