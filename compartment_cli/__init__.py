"""compartment-cli: `compartment promote` and the local Compartment control plane."""

__version__ = "0.1.0"
