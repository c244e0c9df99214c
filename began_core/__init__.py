"""BEGAN: Boundary Equilibrium Generative Adversarial Networks (Berthelot, Schumm, Metz, 2017).

from began_core.checkpoints.hub import load
model = load("pretrained/fluent-faces-64-gamma0.5")
images = model.generate(model.sample_z(16))     # (16, 3, 32, 32) in [-1, 1]
"""

__version__ = "0.1.0"
