"""Paths of the wrong kind, said as such: a folder where a file is read."""

from __future__ import annotations

import pytest

from gpt_lightning.errors import UserError
from gpt_lightning.evaluation import hellaswag


def test_a_folder_as_the_hellaswag_file_is_called_a_folder(tmp_path):
    with pytest.raises(UserError, match=r"HellaSwag file .* is a folder; pass the path of hellaswag_val.jsonl"):
        hellaswag.locate(tmp_path, option="--hellaswag_path")
