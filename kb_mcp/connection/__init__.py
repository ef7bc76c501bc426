"""Redis: the URL read into a target (`url`), one client per mode (`topology`), every call bounded and mapped
(`manager`), the circuit breaker (`breaker`) and what a failure was (`refusals`)."""
