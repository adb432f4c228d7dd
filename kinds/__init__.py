"""Job kinds: each kind is one module with plan / process_chunk / merge."""
