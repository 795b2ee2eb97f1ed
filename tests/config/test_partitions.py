"""``[imap]`` partitions (chapter 12.5.9): ``partition-NAME = PATH`` options and
``defaultpartition``, with errors that name the file and line."""

from __future__ import annotations

from pathlib import Path

import pytest

from posthouse.app import mail_store_for
from posthouse.config.load import ConfigError, load_settings
from posthouse.imap_layout import prepare_store_directories
from posthouse.store.fs.backend import FsBackend


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "posthouse.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_partition_options_name_partitions_of_the_store(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '[server]\ndata_dir = "data"\n\n[imap]\npartition-default = "/srv/a"\n'
        'partition-fast = "ssd"\npartition-archive_2 = "/srv/archive"\n'
        'defaultpartition = "fast"\n',
    )
    settings = load_settings(path)
    assert settings.config.imap.partitions == (("fast", "ssd"), ("archive_2", "/srv/archive"))
    backend = mail_store_for(settings).backend
    assert isinstance(backend, FsBackend)
    data = settings.paths.data_dir
    assert dict(backend.layout.partitions) == {
        "default": Path("/srv/a"),
        "fast": data / "ssd",
        "archive_2": Path("/srv/archive"),
    }
    assert backend.layout.default_partition == "fast"


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ('[imap]\npartition-fast = "/x"\ndefaultpartition = "slow"\n', 3, "'slow' is no partition"),
        ('[imap]\n\npartition-fast = ""\n', 3, "partition-fast needs a path"),
        ("[imap]\npartition-fast = 7\n", 2, "must be a string"),
        ('[imap]\n"partition-a/b" = "/x"\n', None, "letters, digits"),
        ('[imap]\npartitions = "/x"\n', 2, "unknown option"),
    ],
)
def test_partition_errors_name_file_line_and_problem(
    tmp_path: Path, text: str, line: int | None, words: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as failure:
        load_settings(path)
    where = f"{path}:{line}: " if line else f"{path}"
    assert str(failure.value).startswith(where), str(failure.value)
    assert words in str(failure.value)


def test_start_up_makes_the_store_directories_outside_the_data_directory(tmp_path: Path) -> None:
    outside, inside = tmp_path / "disk" / "archive", "fast"
    path = write(
        tmp_path,
        f'[server]\ndata_dir = "data"\n\n[imap]\nconfigdirectory = "{tmp_path / "conf"}"\n'
        f'partition-fast = "{inside}"\npartition-archive = "{outside}"\n',
    )
    settings = load_settings(path)
    made = prepare_store_directories(settings)
    assert made == {tmp_path / "conf": "imap.configdirectory", outside: "imap.partition-archive"}
    assert outside.is_dir() and (tmp_path / "conf").is_dir()
    assert not (settings.paths.data_dir / inside).exists()  # the store makes its own


def test_a_store_directory_that_cannot_be_made_is_a_located_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x\n")
    path = write(
        tmp_path, f'[server]\ndata_dir = "data"\n\n[imap]\npartition-a = "{tmp_path}/file/a"\n'
    )
    with pytest.raises(ConfigError) as caught:
        prepare_store_directories(load_settings(path))
    assert caught.value.line == 5 and caught.value.path == str(path)
    assert f"{tmp_path}/file/a" in caught.value.message
