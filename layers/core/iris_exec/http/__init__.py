"""HTTP edge (FastAPI): used by the local server and by every Lambda function."""
