"""The HTTP services of one node."""
