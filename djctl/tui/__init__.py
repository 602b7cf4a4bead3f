"""The console wing: ``djctl top``, a Textual application over the core and the supervisor."""
