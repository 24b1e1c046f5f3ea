"""Services for tests/test_crash_recovery.py: one flow split across two services."""
