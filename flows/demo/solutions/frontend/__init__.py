"""Frontend cluster: the client-side session and forms."""
