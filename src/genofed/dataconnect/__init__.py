"""GA4GH Data Connect without HTTP: the SQL guard, the locked engine, result pages and JSON."""
