"""HTTP client side of the CLI: the connection, the API calls and the event stream."""
