"""What the tiers share: people, a clock, the broker harness and helpers. Plain modules, no tests,
no fixtures: a test module imports from here, never from another test module."""
