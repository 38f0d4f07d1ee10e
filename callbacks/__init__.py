"""Lightning callbacks of the framework (mutual-information learning rates, probes, plots)."""
