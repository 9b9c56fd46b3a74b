"""names.txt: where it comes from, what counts as bad, and the lecture's split."""

import hashlib
import sys
from pathlib import Path

import pytest
import torch

from makemore_wavenet.shared import data
from makemore_wavenet.shared.data import (CACHE_ENV, CHARS, NAMES_ENV, DataError, build_dataset, load_words, names_path,
                                          parse_words, split_words)


def test_vocabulary_is_dot_then_a_to_z():
    assert CHARS[0] == "." and CHARS[1:] == "abcdefghijklmnopqrstuvwxyz"
    assert data.STOI["."] == 0 and data.ITOS[26] == "z" and data.VOCAB_SIZE == 27


def test_course_copy_has_the_expected_checksum():
    path = names_path()
    assert hashlib.sha256(path.read_bytes()).hexdigest() == data.NAMES_SHA256


def test_lecture_split_sizes(splits_by_block):
    words = split_words(load_words())
    assert len(load_words()) == 32_033
    assert [len(words[s]) for s in data.SPLITS] == [25_626, 3_203, 3_204]
    for block_size in (3, 8):
        splits = splits_by_block(block_size)
        assert [splits[s][0].shape[0] for s in data.SPLITS] == [182_625, 22_655, 22_866]
        assert splits["train"][0].shape[1] == block_size


def test_split_is_the_lectures_seeded_shuffle():
    import random

    words = load_words()
    expected = list(words)
    random.seed(42)
    random.shuffle(expected)  # exactly what the lecture's notebook does
    assert split_words(words)["train"] == expected[:int(0.8 * len(words))]
    assert split_words(words, seed=1)["train"] != split_words(words)["train"]


def test_context_windows():
    X, Y = build_dataset(["emma", "bo"], block_size=3)
    assert X.tolist()[:5] == [[0, 0, 0], [0, 0, 5], [0, 5, 13], [5, 13, 13], [13, 13, 1]]
    assert "".join(data.ITOS[i] for i in Y.tolist()) == "emma.bo."
    assert X.dtype == Y.dtype == torch.long
    assert build_dataset(["ab"], block_size=1)[0].tolist() == [[0], [1], [2]]
    with pytest.raises(ValueError, match="block_size"):
        build_dataset(["ab"], block_size=0)


@pytest.mark.parametrize("text, match", [
    ("", "empty"),
    ("\n\n", "empty"),
    ("anna\nZoe\n", r"line 2: 'Zoe' has characters outside a\.\.z: \['Z'\]"),
    ("anna\nmary-jo\n", "outside a..z"),
])
def test_bad_names_are_clear_errors(text, match):
    with pytest.raises(DataError, match=match):
        parse_words(text)


def test_non_utf8_file_is_a_clear_error(tmp_path):
    bad = tmp_path / "names.txt"
    bad.write_bytes(b"anna\n\xff\xfe\n")
    with pytest.raises(DataError, match="not UTF-8"):
        load_words(bad)


def test_env_var_names_the_file(tmp_path, monkeypatch):
    mine = tmp_path / "private.txt"
    mine.write_text("anna\nbob\n")
    monkeypatch.setenv(NAMES_ENV, str(mine))
    assert load_words() == ["anna", "bob"]
    monkeypatch.setenv(NAMES_ENV, str(tmp_path / "nope.txt"))
    with pytest.raises(DataError, match="not a file"):
        names_path()


def test_fetch_verifies_checksum_then_caches(tmp_path, monkeypatch):
    source = names_path()  # the course copy, served through a file:// URL
    monkeypatch.delenv(NAMES_ENV)
    path = names_path(data_dir=tmp_path / "data", url=source.as_uri())
    assert path == tmp_path / "data" / "names.txt" and path.read_bytes() == source.read_bytes()
    assert names_path(data_dir=tmp_path / "data", url="file:///nowhere") == path  # cached: no second fetch


def test_fetch_rejects_a_wrong_checksum_and_saves_nothing(tmp_path, monkeypatch):
    monkeypatch.delenv(NAMES_ENV, raising=False)
    fake = tmp_path / "fake.txt"
    fake.write_text("anna\n")
    with pytest.raises(DataError, match="sha256"):
        names_path(data_dir=tmp_path / "data", url=fake.as_uri())
    assert not (tmp_path / "data" / "names.txt").exists()


def test_corrupt_cached_copy_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.delenv(NAMES_ENV, raising=False)
    (tmp_path / "names.txt").write_text("anna\nbob\n")
    with pytest.raises(DataError, match="corrupt.*Delete it"):
        names_path(data_dir=tmp_path)


def test_offline_without_the_file_says_both_ways(tmp_path, monkeypatch):
    monkeypatch.delenv(NAMES_ENV, raising=False)
    with pytest.raises(DataError) as err:
        names_path(data_dir=tmp_path, url="http://127.0.0.1:9/names.txt")  # nothing listens on port 9
    message = str(err.value)
    assert "could not be fetched" in message and f"export {NAMES_ENV}=" in message


def test_fetched_copy_goes_to_makemore_cache(tmp_path, monkeypatch):
    source = names_path()  # the course copy, served through a file:// URL
    monkeypatch.delenv(NAMES_ENV)
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))  # read at each call, not at import
    assert data.cache_dir() == tmp_path / "cache"
    assert names_path(url=source.as_uri()) == tmp_path / "cache" / "names.txt"
    assert (tmp_path / "cache" / "names.txt").read_bytes() == source.read_bytes()


def test_default_cache_is_the_users_outside_the_package(tmp_path, monkeypatch):
    monkeypatch.delenv(CACHE_ENV, raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    package = Path(data.__file__).resolve().parents[1]  # the installed package, or the checkout when editable
    default = data.cache_dir().resolve()
    assert "makemore-wavenet" in default.parts and not default.is_relative_to(package)
    if sys.platform.startswith("linux"):  # the XDG rule: the folder follows $XDG_CACHE_HOME
        monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
        assert data.cache_dir() == tmp_path / "xdg" / "makemore-wavenet"


def test_unwritable_cache_is_a_clear_error(tmp_path, monkeypatch):
    source = names_path()
    monkeypatch.delenv(NAMES_ENV)
    (tmp_path / "a_file").write_text("")
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "a_file"))  # a file where the folder should be
    with pytest.raises(DataError, match=f"cannot be saved in the cache folder .*Set {CACHE_ENV}"):
        names_path(url=source.as_uri())
