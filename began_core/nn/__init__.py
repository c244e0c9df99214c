"""The networks of paper Figure 1 (G, D and their ELU) and G's moving average, G_ema."""
