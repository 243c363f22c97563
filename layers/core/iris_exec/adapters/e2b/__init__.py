"""E2B sandboxes (production), through the real SDK."""
