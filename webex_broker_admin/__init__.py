"""webex-broker: the admin command line of the Webex Token Broker."""
