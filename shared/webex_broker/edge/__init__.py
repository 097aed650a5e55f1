"""The HTTP edge: API Gateway events in, responses and pages out. Handlers call it and the flows."""
