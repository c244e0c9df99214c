"""What the explorer does with a generator: latent sampling, slerp, PCA directions, inversion."""
