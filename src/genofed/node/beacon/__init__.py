"""GA4GH Beacon v2 served by a node."""
