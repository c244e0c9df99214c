"""BEGAN: Boundary Equilibrium Generative Adversarial Networks (Berthelot, Schumm, Metz, 2017)."""
