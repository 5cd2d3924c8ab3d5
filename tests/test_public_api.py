import subprocess
import sys

import pytest

import pinclip


@pytest.mark.parametrize("name", [n for n in pinclip.__all__ if n != "__version__"])
def test_every_public_name_resolves(name):
    assert getattr(pinclip, name) is not None


def test_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        pinclip.nope  # noqa: B018


def test_import_is_light():
    code = "import sys, pinclip; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
