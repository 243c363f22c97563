"""Domain models, errors and ports. Imports no vendor SDK."""
