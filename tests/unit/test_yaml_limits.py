"""YAML is read with limits everywhere (apply -f files, conda files, --set values): expansion bombs,
circular aliases, deep nesting, huge or non-UTF-8 files and non-JSON tags give a SpecError naming the
file and the limit, never a hang, a MemoryError or a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from appliance.specs import SpecError, load_file, read_yaml, set_field, yamlsafe

# Nine levels of nine aliases: 455 bytes that expand to 9**9 (387 million) strings.
LAUGHS = "".join(
    f"{name}: &{name} [{', '.join([f'*{prev}'] * 9 if prev else ['lol'] * 9)}]\n"
    for prev, name in zip([None, *"abcdefgh"], "abcdefghi", strict=True))


def write(folder: Path, name: str, content: str | bytes) -> Path:
    path = folder / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    return path


def refused(path: Path) -> SpecError:
    """The error from reading `path` both ways the CLI does (raw documents, then validated)."""
    with pytest.raises(SpecError) as raw:
        read_yaml(path)
    with pytest.raises(SpecError) as validated:
        load_file(path)
    assert str(raw.value) == str(validated.value)
    assert raw.value.source == str(path)
    assert "\n" not in str(raw.value)  # one line on the CLI
    return raw.value


def test_billion_laughs_file_is_refused_by_the_node_budget(tmp_path: Path) -> None:
    assert len(LAUGHS) < 500
    error = refused(write(tmp_path, "bomb.yml", LAUGHS))
    assert "expands to more than 100000 nodes" in error.message
    assert str(error).startswith(f"{tmp_path / 'bomb.yml'}: ")


def test_billion_laughs_as_a_conda_file_is_refused_naming_it(tmp_path: Path) -> None:
    conda = write(tmp_path, "conda.yml", LAUGHS)
    env = write(tmp_path, "env.yml", "name: bomb\nimage: python:3.11\nconda_file: conda.yml\n")
    with pytest.raises(SpecError) as info:
        load_file(env)
    assert info.value.source == str(env)
    assert info.value.field == "conda_file"
    assert str(conda) in info.value.message
    assert "expands to more than 100000 nodes" in info.value.message


def test_conda_file_of_an_inline_environment_is_read_with_limits(tmp_path: Path) -> None:
    write(tmp_path, "conda.yml", "deps: &a [*a]\n")
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "score.py").write_text("")
    dep = write(tmp_path, "blue.yml", "name: blue\nendpoint_name: my-ep\ncode_configuration:\n  code: src\n"
                "  scoring_script: score.py\nenvironment:\n  image: python:3.11\n  conda_file: conda.yml\n")
    with pytest.raises(SpecError) as info:
        load_file(dep)
    assert info.value.field == "environment.conda_file"
    assert "circular alias" in info.value.message


def test_plain_conda_file_still_loads(tmp_path: Path) -> None:
    write(tmp_path, "conda.yml", "\ufeffname: env\ndependencies:\n  - python=3.11\n  - pip:\n    - numpy\n")
    env = write(tmp_path, "env.yml", "name: ok\nimage: python:3.11\nconda_file: conda.yml\n")
    assert load_file(env)[0].spec.conda_file == {"name": "env", "dependencies": ["python=3.11", {"pip": ["numpy"]}]}


@pytest.mark.parametrize("text", ["&a [*a]\n", "a: &a {b: *a}\n", "x: &x [1, [2, *x]]\n",
                                  "x: &x\n  - 1\n  - *x\n"])
def test_circular_alias_is_refused(tmp_path: Path, text: str) -> None:
    assert "circular alias" in refused(write(tmp_path, "loop.yml", text)).message


def test_too_many_aliases_are_refused(tmp_path: Path) -> None:
    text = "a: &x 1\nb: [" + ", ".join(["*x"] * 101) + "]\n"
    assert "more than 100 aliases" in refused(write(tmp_path, "aliases.yml", text)).message
    text = "a: &x 1\nb: [" + ", ".join(["*x"] * 100) + "]\n"
    assert read_yaml(write(tmp_path, "fine.yml", text)) == [{"a": 1, "b": [1] * 100}]


@pytest.mark.parametrize("depth", [101, 100_000])
def test_deep_flow_nesting_is_refused(tmp_path: Path, depth: int) -> None:
    error = refused(write(tmp_path, "deep.yml", "[" * depth + "]" * depth))
    assert "nesting depth" in error.message  # ours, or libyaml's (its scanner looks ahead)
    if depth == 101:
        assert error.message == ("collections nested more than 100 levels deep (the nesting depth limit) "
                                 "(line 1, column 101)")


def test_deep_block_nesting_is_refused(tmp_path: Path) -> None:
    text = "".join(f"{' ' * i}k{i}:\n" for i in range(150)) + " " * 150 + "leaf: 1\n"
    assert "nested more than 100 levels deep" in refused(write(tmp_path, "deep.yml", text)).message


def test_nesting_at_the_limit_is_accepted(tmp_path: Path) -> None:
    value = read_yaml(write(tmp_path, "deep.yml", "[" * 100 + "]" * 100))[0]
    for _ in range(99):
        value = value[0]
    assert value == []


def test_non_utf8_file_is_refused_naming_the_byte_offset(tmp_path: Path) -> None:
    error = refused(write(tmp_path, "latin1.yml", "name: caf\xe9\n".encode("latin-1")))
    assert error.message == "not UTF-8 text: byte 0xe9 at offset 9"


def test_utf16_file_is_refused_as_not_utf8(tmp_path: Path) -> None:
    error = refused(write(tmp_path, "utf16.yml", "name: x\n".encode("utf-16")))
    assert error.message.startswith("not UTF-8 text: byte 0xff at offset 0")


def test_utf8_bom_is_accepted(tmp_path: Path) -> None:
    path = write(tmp_path, "bom.yml", "\ufeffname: my-ep\nauth_mode: key\n".encode())
    assert read_yaml(path) == [{"name": "my-ep", "auth_mode": "key"}]


def test_document_over_a_mebibyte_is_refused(tmp_path: Path) -> None:
    error = refused(write(tmp_path, "big.yml", "description: " + "x" * 2_000_000 + "\n"))
    assert error.message == "the file is larger than 1048576 bytes (1 MiB); YAML specs are small"


def test_wide_document_is_refused_by_the_node_budget(tmp_path: Path) -> None:
    error = refused(write(tmp_path, "wide.yml", "[" + "1," * 200_000 + "]"))
    assert "expands to more than 100000 nodes" in error.message


@pytest.mark.parametrize(("text", "tag"), [
    ("x: !!python/object/apply:os.system ['echo hi']\n", "!!python/object/apply:os.system"),
    ("x: !!binary aGVsbG8=\n", "!!binary"),
    ("x: !foo bar\n", "!foo"),
    ("x: !!set {a, b}\n", "!!set"),
    ("x: !!timestamp 2024-01-01\n", "!!timestamp"),
    ("x: !<tag:example.com,2024:thing> {}\n", "!<tag:example.com,2024:thing>"),
])
def test_non_json_tags_in_a_file_are_refused_naming_the_tag(tmp_path: Path, text: str, tag: str) -> None:
    error = refused(write(tmp_path, "tags.yml", text))
    assert f"tag {tag} is not allowed" in error.message
    assert "allowed: !!str, !!int, !!float, !!bool, !!null, !!map, !!seq" in error.message


def test_standard_tags_merge_keys_and_dates_give_json_like_values(tmp_path: Path) -> None:
    text = ("base: &base {instance_count: 1, tag: !!str 7}\n"
            "blue:\n  <<: *base\n  count: !!int '3'\n  ratio: !!float 1\n  flag: !!bool yes\n"
            "  none: !!null ''\n  list: !!seq [a]\n  map: !!map {k: v}\n  day: 2024-01-01\n")
    assert read_yaml(write(tmp_path, "ok.yml", text)) == [{
        "base": {"instance_count": 1, "tag": "7"},
        "blue": {"instance_count": 1, "tag": "7", "count": 3, "ratio": 1.0, "flag": True, "none": None,
                 "list": ["a"], "map": {"k": "v"}, "day": "2024-01-01"}}]


def test_invalid_yaml_is_one_line_naming_the_place(tmp_path: Path) -> None:
    error = refused(write(tmp_path, "bad.yml", "a: [1, 2\nb: 3\n"))
    assert error.message.startswith("not valid YAML (line ")


def test_undefined_alias_and_unhashable_key_are_spec_errors(tmp_path: Path) -> None:
    assert "undefined alias" in refused(write(tmp_path, "undef.yml", "a: *nope\n")).message
    assert "not valid YAML" in refused(write(tmp_path, "key.yml", "? [a, b]\n: 1\n")).message
    assert refused(write(tmp_path, "bool.yml", "- !!bool maybe\n")).message == (
        "not valid YAML: value 'maybe' does not fit its tag")
    assert "invalid literal for int()" in refused(write(tmp_path, "int.yml", "- !!int x\n")).message


@pytest.mark.parametrize(("text", "expected"), [
    (LAUGHS, "expands to more than 100000 nodes"),
    ("&a [*a]\n", "circular alias"),
    ("[" * 100_000 + "]" * 100_000, "nested more than 100 levels deep"),
    ("x: !!python/name:os.system\n", "tag !!python/name:os.system is not allowed"),
    ("a: [1, 2\n", "not valid YAML (line "),
])
def test_the_pure_python_parser_keeps_the_same_limits(monkeypatch: pytest.MonkeyPatch, text: str,
                                                      expected: str) -> None:
    monkeypatch.setattr(yamlsafe, "_Parser", yamlsafe._PyParser)
    with pytest.raises(SpecError) as info:
        yamlsafe.load_all(text, "t.yml")
    assert expected in info.value.message
    assert info.value.source == "t.yml"
    assert yamlsafe.load_all("a: &x {b: 1}\nc: {<<: *x, d: [1, 2.5, yes, null, 2024-01-01]}\n") == [
        {"a": {"b": 1}, "c": {"b": 1, "d": [1, 2.5, True, None, "2024-01-01"]}}]


# -- --set values ---------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "tag"), [
    ("!!python/object:os.system ''", "!!python/object:os.system"),
    ("!!python/name:os.system", "!!python/name:os.system"),
    ("!!binary aGVsbG8=", "!!binary"),
    ("!foo bar", "!foo"),
    ("[1, !!python/tuple [2]]", "!!python/tuple"),
])
def test_set_field_refuses_tags_and_changes_nothing(value: str, tag: str) -> None:
    body = {"instance_count": 1, "request_settings": {"max_concurrent_requests_per_instance": 1}}
    with pytest.raises(SpecError) as info:
        set_field(body, "request_settings.max_queue_wait_ms", value)
    assert info.value.field == "request_settings.max_queue_wait_ms"
    assert f"tag {tag} is not allowed" in info.value.message
    assert repr(value) in info.value.message
    assert body == {"instance_count": 1, "request_settings": {"max_concurrent_requests_per_instance": 1}}


@pytest.mark.parametrize("value", ["&a [*a]", "[" * 500, "a\n---\nb", "9" * 5000, "x" * 2_000_000,
                                   "[" + ", ".join(["&a [1]"] + ["*a"] * 101) + "]"])
def test_set_field_refuses_bombs_and_malformed_values(value: str) -> None:
    body: dict[str, object] = {}
    with pytest.raises(SpecError) as info:
        set_field(body, "environment_variables.X", value)
    assert info.value.field == "environment_variables.X"
    assert body == {}


@pytest.mark.parametrize(("value", "parsed"), [
    ("100", 100), ("1.5", 1.5), ("true", True), ("null", None), ("", None), ("[1, 2]", [1, 2]),
    ("{a: 1}", {"a": 1}), ("blue", "blue"), ("2024-01-01", "2024-01-01"), ("!!str 5", "5"),
])
def test_set_field_still_types_plain_values(value: str, parsed: object) -> None:
    body: dict[str, object] = {}
    set_field(body, "a.b", value)
    assert body == {"a": {"b": parsed}}
