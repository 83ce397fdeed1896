import os

import pytest
import torch

# Tests run on 2-core CI machines: one intra-op thread per process keeps them predictable.
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(scope="session")
def zoo_names():
    import nasscale

    return nasscale.names()
