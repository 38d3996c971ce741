"""Manifests: the one CSV format every command accepts in place of a folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from raddino.io.manifest import (
    Manifest,
    ManifestError,
    default_id,
    discover_images,
    load_inputs,
    manifest_from_folder,
    read_manifest,
    write_manifest,
)


def _touch(root: Path, *names: str) -> None:
    for name in names:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"x")


def test_read_manifest_resolves_relative_paths_and_derives_ids(tmp_path: Path) -> None:
    folder = tmp_path / "dataset"
    folder.mkdir()
    (folder / "m.csv").write_text(
        "path,subject_id,split,cardiomegaly\n"
        "a/one.dcm,s1,train,1\n"
        f"{tmp_path / 'elsewhere' / 'two.png'},s2,test,0\n",
        encoding="utf-8",
    )
    manifest = read_manifest(folder / "m.csv")
    assert len(manifest) == 2
    assert manifest.columns == ["path", "id", "subject_id", "split", "cardiomegaly"]
    assert manifest.ids() == ["a/one", "two"]  # relative path without extension; outside: the file name
    assert manifest.paths() == [folder.resolve() / "a" / "one.dcm", tmp_path / "elsewhere" / "two.png"]
    assert manifest.column("cardiomegaly") == ["1", "0"]
    with pytest.raises(ManifestError, match="no column 'age'"):
        manifest.column("age")


def test_read_manifest_keeps_given_ids_and_handles_a_bom(tmp_path: Path) -> None:
    (tmp_path / "m.csv").write_bytes("\ufeffpath,id\nx.png,patient-7\n".encode())
    assert read_manifest(tmp_path / "m.csv").rows == [{"path": "x.png", "id": "patient-7"}]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("file,label\na.png,1\n", "needs a 'path' column"),
        ("path,id\na.png,x\nb.png,x\n", "id 'x' appears on lines 2 and 3"),
        ("path\na.png\n \n", "line 3 has an empty 'path'"),
        ("path,id\na.png,x,surplus\n", "line 2 has more values than the header"),
    ],
)
def test_read_manifest_rejects_bad_files_naming_the_file(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "m.csv").write_text(text, encoding="utf-8")
    with pytest.raises(ManifestError, match=message) as caught:
        read_manifest(tmp_path / "m.csv")
    assert str(tmp_path / "m.csv") in str(caught.value)


def test_an_unknown_split_is_refused_with_its_lines_and_the_allowed_values(tmp_path: Path) -> None:
    # A typo used to drop its rows from every split without a word.
    rows = ["a.png,train", "b.png,tset", "c.png,val", *[f"x{index}.png,trian" for index in range(6)]]
    (tmp_path / "m.csv").write_text("path,split\n" + "\n".join(rows) + "\n", encoding="utf-8")
    with pytest.raises(ManifestError) as caught:
        read_manifest(tmp_path / "m.csv")
    message = str(caught.value)
    assert message.startswith(f"{tmp_path / 'm.csv'}: column 'split' has 7 row(s) with an unknown value: ")
    assert (
        "line 3 'tset', line 5 'trian', line 6 'trian', line 7 'trian', line 8 'trian' and 2 more" in message
    )
    assert "allowed: train, val, test (also training, valid, validation, dev, testing; any case)" in message
    assert "\n" not in message


def test_split_spellings_and_empty_splits_are_kept_as_written(tmp_path: Path) -> None:
    text = (
        'path,split,report\na.png,Train,\nb.png, validation ,"two\nlines"\nc.png,,\nd.png,TEST,\n'
        "e.png,oops,\n"
    )
    (tmp_path / "m.csv").write_text(text, encoding="utf-8")
    with pytest.raises(ManifestError, match=r"1 row\(s\) with an unknown value: line 7 'oops';"):
        read_manifest(tmp_path / "m.csv")  # the quoted two-line report moves the row to line 7
    (tmp_path / "m.csv").write_text(text.replace("oops", "dev"), encoding="utf-8")
    manifest = read_manifest(tmp_path / "m.csv")
    assert manifest.column("split") == ["Train", " validation ", "", "TEST", "dev"]


def test_unreadable_manifest(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="cannot read manifest"):
        read_manifest(tmp_path / "absent.csv")
    (tmp_path / "latin.csv").write_bytes(b"path\n\xe9t\xe9.png\n")
    with pytest.raises(ManifestError, match="not a valid CSV"):
        read_manifest(tmp_path / "latin.csv")


def test_discover_images_is_recursive_sorted_and_skips_hidden_and_other_files(tmp_path: Path) -> None:
    _touch(tmp_path, "b.PNG", "a/c.dcm", "a/notes.txt", ".cache/d.png", "a/.e.png", "f.jpeg", "g.tiff")
    found = [path.relative_to(tmp_path).as_posix() for path in discover_images(tmp_path)]
    assert found == ["a/c.dcm", "b.PNG", "f.jpeg", "g.tiff"]


def test_extensionless_and_uid_named_files_count_as_dicom(tmp_path: Path) -> None:
    # Archives often name DICOMs by their SOP instance UID: "1.2.840.113619.2.55.3.2831" has no extension.
    _touch(tmp_path, "IM0001", "1.2.840.113619.2.55.3.2831", "1.2.840.113619.2.55.3.2832", "x.txt")
    found = sorted(path.name for path in discover_images(tmp_path))
    assert found == ["1.2.840.113619.2.55.3.2831", "1.2.840.113619.2.55.3.2832", "IM0001"]
    assert discover_images(tmp_path, extensions=(".png",)) == []
    ids = manifest_from_folder(tmp_path).ids()
    assert ids == ["1.2.840.113619.2.55.3.2831", "1.2.840.113619.2.55.3.2832", "IM0001"]  # UIDs kept whole


def test_default_id_strips_only_image_extensions(tmp_path: Path) -> None:
    assert default_id(tmp_path / "p1" / "img.dcm", tmp_path) == "p1/img"
    assert default_id(tmp_path / "1.2.840.99", tmp_path) == "1.2.840.99"
    assert default_id(Path("/other/x.png"), tmp_path) == "x"


def test_manifest_from_folder_disambiguates_same_stem(tmp_path: Path) -> None:
    _touch(tmp_path, "a.png", "a.dcm", "sub/b.jpg")
    manifest = manifest_from_folder(tmp_path)
    assert [row["path"] for row in manifest.rows] == ["a.dcm", "a.png", "sub/b.jpg"]
    assert manifest.ids() == ["a.dcm", "a.png", "sub/b"]
    assert manifest.root == tmp_path.resolve()


def test_load_inputs_accepts_a_folder_or_a_csv_and_nothing_else(tmp_path: Path) -> None:
    _touch(tmp_path, "img/a.png")
    (tmp_path / "m.csv").write_text("path\nimg/a.png\n", encoding="utf-8")
    assert load_inputs(tmp_path / "img").ids() == ["a"]
    assert load_inputs(tmp_path / "m.csv").ids() == ["img/a"]
    with pytest.raises(ManifestError, match="no such file or folder"):
        load_inputs(tmp_path / "missing")
    with pytest.raises(ManifestError, match=r"expected a folder of images or a manifest \.csv"):
        load_inputs(tmp_path / "img" / "a.png")
    with pytest.raises(ManifestError, match="not a folder"):
        manifest_from_folder(tmp_path / "m.csv")


def test_write_then_read_round_trip(tmp_path: Path) -> None:
    rows = [{"path": "a.png", "id": "a", "age": 61}, {"path": "b.png", "id": "b", "age": None, "sex": "F"}]
    target = write_manifest(rows, tmp_path / "out" / "m.csv")
    manifest = read_manifest(target)
    assert manifest.columns == ["path", "id", "age", "sex"]  # union in first-seen order
    assert manifest.rows == [
        {"path": "a.png", "id": "a", "age": "61", "sex": ""},
        {"path": "b.png", "id": "b", "age": "", "sex": "F"},
    ]
    with pytest.raises(ManifestError, match="without a 'path' column"):
        write_manifest([{"id": "a"}], tmp_path / "bad.csv")
    assert not (tmp_path / "bad.csv").exists()


def test_manifest_object_resolves_against_its_root(tmp_path: Path) -> None:
    manifest = Manifest(rows=[{"path": "x/y.png", "id": "y"}], columns=["path", "id"], root=tmp_path)
    assert manifest.resolve(manifest.rows[0]) == tmp_path / "x" / "y.png"
