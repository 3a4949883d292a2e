import pytest


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """One torch thread, as the other training tests use: on a busy 2-core machine two threads per
    process spin against each other and a step takes many times longer."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
