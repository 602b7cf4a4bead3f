"""The supervisor wing: what should run (formation), running it, and its log."""
