"""The Webex Token Broker's rules, shared by every function through a Lambda layer."""
