"""Backend cluster: the token API."""
