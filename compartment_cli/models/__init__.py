"""Wire models shared by the CLI and the control plane: the contract in one place.

Nothing here imports any other part of ``compartment_cli``.
"""
