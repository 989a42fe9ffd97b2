"""fileio.load_weights_only: the one safe torch.load, with one clear line for any unreadable file."""

from __future__ import annotations

import pytest
import torch

from dcgan.errors import UserError
from dcgan.fileio import load_weights_only


def test_a_tensor_file_round_trips(tmp_path):
    torch.save({"x": torch.arange(3)}, tmp_path / "a.pt")
    assert torch.equal(load_weights_only(tmp_path / "a.pt", "test file")["x"], torch.arange(3))


@pytest.mark.parametrize("content", [b"", b"not a torch file", b"PK\x03\x04broken zip"])
def test_an_unreadable_file_is_one_line_naming_what_it_should_be(tmp_path, content):
    path = tmp_path / "bad.pt"
    path.write_bytes(content)
    with pytest.raises(UserError) as e:
        load_weights_only(path, "evaluator file")
    assert str(e.value).startswith(f"{path} is not a readable evaluator file: ") and "\n" not in str(e.value)


def test_code_in_a_pickle_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("ran",))

    torch.save(Evil(), tmp_path / "evil.pt")
    with pytest.raises(UserError, match="is not a readable checkpoint"):
        load_weights_only(tmp_path / "evil.pt", "checkpoint")
