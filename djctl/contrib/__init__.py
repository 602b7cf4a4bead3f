"""Framework integrations: each optional, each behind its own extra (``pip install djctl[django]``)."""
