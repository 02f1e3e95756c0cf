"""Generation metrics (DESIGN 2.4): FVD / sFVD / tFVD on a torch port of Kinetics-400 I3D,
and within-class diversity as a mean pairwise perceptual distance.

Modules are imported on use (`argen_ray.metrics.fvd`, `.i3d`, `.diversity`); torch loads only then.
"""
