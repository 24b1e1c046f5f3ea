"""The ETL flow split across two services that Celery workers serve."""
