"""Serialisations of specs: the one-line block text form and YAML for whole networks."""
from nasscale.grammar.text import FORMS, format_block, format_stage, parse_block, parse_stage
from nasscale.grammar.yaml_io import (
    block_from_data,
    block_to_data,
    dump_network,
    load_network_file,
    network_from_data,
    network_to_data,
)

__all__ = [
    "FORMS", "block_from_data", "block_to_data", "dump_network", "format_block",
    "format_stage", "load_network_file", "network_from_data", "network_to_data",
    "parse_block", "parse_stage",
]
