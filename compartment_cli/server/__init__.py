"""The local Compartment control plane."""
