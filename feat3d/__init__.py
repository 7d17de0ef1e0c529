"""feat3d: spatio-temporal features and action labels from videos with 3D residual networks."""

__version__ = "0.1.0"
