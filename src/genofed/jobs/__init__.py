"""One runtime for work that outlives a request: Data Connect queries now, federated
analyses and workflow runs next. See ``jobs.runtime``."""
