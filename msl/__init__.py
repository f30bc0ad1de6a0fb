"""msl: neural scaling laws for materials models.

A small importable core (data, graphs, models, trainer, fits, sweep) driven by parameterised
notebooks that papermill executes once per grid cell. Conventions used everywhere:
N = trainable parameters, D = training structures, C = training compute in FLOPs, L = loss.
"""

__version__ = "0.1.0"
