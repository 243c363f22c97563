"""The AWS edge: Lambda handlers (Mangum + Powertools) and the authorizer, over the
services `iris_exec.composition.aws` builds. Only imported inside Lambda (and its tests)."""
