"""The AWS edge: Lambda handlers (Mangum + Powertools), the authorizer, and the composition
of DynamoDB, E2B and PostgreSQL adapters. Only imported inside Lambda (and its tests)."""
