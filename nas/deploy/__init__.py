"""What a finished student costs and how it is served: costs, latency, export, prediction."""
