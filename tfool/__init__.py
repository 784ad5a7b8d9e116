"""tfool: fool image classifiers (backworking, gradient attacks, attributions) and learn from it."""

__version__ = "0.1.0"
