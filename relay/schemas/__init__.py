"""Wire schemas of the requests the relay accepts, and the reading of request bodies."""
