"""genofed: genomic data federation over GA4GH standards."""

__version__ = "0.1.0"
