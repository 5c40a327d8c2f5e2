"""The soak: the production topology under faults (``make soak``)."""
