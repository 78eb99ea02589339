import pytest

# Its per-kind checks assert; show their values when one fails, as in a test module.
pytest.register_assert_rewrite("tests.providers.http_kinds")
