"""Latency-table sources, every form: the latency layer's (``around:NAME``, a network name or
YAML path) and the search spaces (``space:NAME[:N]``, a search-space YAML), which only the
search package can read."""
from __future__ import annotations

from pathlib import Path

from nasscale.errors import NasscaleError
from nasscale.grammar.yaml_io import read_yaml
from nasscale.latency.build import parse_source as parse_network_source
from nasscale.search.space import SampledSpace
from nasscale.search.space_io import is_space_file, load_space

#: The most networks ``space:NAME:N`` samples (their blocks are measured into the table)
MAX_SPACE_SAMPLES = 100_000


def sample_count(text: str) -> int:
    """The ``N`` of ``space:NAME[:N]`` (default 200): an integer from 1 to
    ``MAX_SPACE_SAMPLES``, else a one-line error."""
    n = text[len("space:"):].partition(":")[2]
    if not n:
        return 200
    if not (n.isascii() and n.isdigit() and len(n) <= 9 and 1 <= int(n) <= MAX_SPACE_SAMPLES):
        raise NasscaleError(f"{text}: the sample count after the space must be an integer "
                            f">= 1 and <= {MAX_SPACE_SAMPLES:,} (space:NAME:N)")
    return int(n)


def parse_source(text: str) -> object:
    """``around:NAME`` (the neighbourhood space of a network), ``space:NAME[:N]`` (a search
    space of ``spaces/search``, or the path of a search-space YAML, covered by the blocks of N
    sampled networks: ``sample_count``) or a network name / YAML path (a YAML file holding a search
    space rather than a network is taken as ``space:PATH``)."""
    if text.startswith("space:"):
        name, n = text[len("space:"):].partition(":")[0], sample_count(text)
        return SampledSpace(load_space(name), n=n)
    if text.endswith((".yaml", ".yml")) and Path(text).is_file():
        if is_space_file(read_yaml(text)[0]):
            return parse_source(f"space:{text}")
    return parse_network_source(text)
