import sys

import pytest

from msl.quiet import import_quietly


def test_c_level_stderr_of_a_first_import_is_dropped(tmp_path, monkeypatch, capfd):
    (tmp_path / "noisy_module.py").write_text("import os\nos.write(2, b'CUDA noise')\nVALUE = 3\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    module = import_quietly("noisy_module")
    assert module.VALUE == 3
    assert "CUDA noise" not in capfd.readouterr().err
    print("still here", file=sys.stderr)  # fd 2 is restored afterwards
    assert "still here" in capfd.readouterr().err


def test_import_errors_still_raise():
    with pytest.raises(ModuleNotFoundError):
        import_quietly("no_such_module_anywhere")
