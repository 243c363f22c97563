"""Services: the use cases. They receive ports; they never build adapters or import SDKs."""
