"""What the broker does: login, refresh, on-demand refresh, access rules, adoption, and the Broker
that wires the adapters once per container. Imports adapters and core, never the HTTP edge."""
