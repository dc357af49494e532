"""GA4GH Beacon v2: the model, parsing requests, answering from datasets, merging answers."""
