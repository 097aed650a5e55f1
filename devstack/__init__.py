"""Local stand-ins for the services the broker talks to, for tests, benchmarks and `make run`."""
