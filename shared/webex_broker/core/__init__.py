"""The bottom floor: the broker's vocabulary and rules with no I/O of their own (the connection
model, grants, errors, the clock, settings, the refresh schedule, logging). Imports nothing above it."""
