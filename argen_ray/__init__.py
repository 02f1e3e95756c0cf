"""argen-ray: ARGen on a Ray cluster."""
__version__ = "0.1.0"
