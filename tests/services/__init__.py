"""Services of the Celery tests: each is a module that ``celery -A`` serves."""
