"""What Webex's answers look like, and when the simulator's own tests start its clock."""

import re

TRACKING_ID = re.compile(r"ROUTER_[0-9A-F]{8}-[0-9A-F]{4}-4[0-9A-F]{3}-[89AB][0-9A-F]{3}-[0-9A-F]{12}")
SIMULATED_NOW = 1_750_000_000.0  # a fixed start: the simulator's tests read exact expiries
