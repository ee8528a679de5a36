"""How the process spends its threads: plain Python that the core and the adapters share (the lowest layer)."""
