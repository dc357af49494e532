"""GA4GH Data Connect routes and service of a node."""
