"""Torch modules of every block kind and the network builder."""
from nasscale.modules.network import BUILDERS, Network, build_block, build_network

__all__ = ["BUILDERS", "Network", "build_block", "build_network"]
