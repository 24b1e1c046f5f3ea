"""Services for tests/test_dramatiq.py, each served by ``dramatiq <module>``."""
