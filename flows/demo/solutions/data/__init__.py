"""Data cluster: persistence of users and password hashes."""
