"""The outside world, each behind one module: AWS (tables, secrets, events) and the Webex API.
Imports only core."""
