"""keepalived.conf line syntax: comments, quotes, braces, includes, @id lines and $VARs."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest

from vrrpkit.config import ConfigFileError, load, loads
from vrrpkit.config.lexer import decomment, lex_file, lex_string, split_quoted


def words(text: str, **kwargs: object) -> list[list[str]]:
    result = lex_string(textwrap.dedent(text), "keepalived.conf", **kwargs)  # type: ignore[arg-type]
    assert result.errors == ()
    return [[t.value for t in line.tokens] for line in result.lines]


def test_hash_and_bang_start_comments_anywhere_on_a_line() -> None:
    assert words(
        """
        ! Configuration File for keepalived
        # a comment
        router_id LVS_A   # trailing comment
        router_id B! bang comment
        """
    ) == [["router_id", "LVS_A"], ["router_id", "B"]]


def test_comment_characters_inside_double_quotes_are_text() -> None:
    assert words('script "/usr/bin/check --tag #1 !x"') == [
        ["script", "/usr/bin/check --tag #1 !x"]
    ]


def test_escaped_comment_characters_outside_quotes_are_literal() -> None:
    assert words(r"auth_pass se\#cr\!t") == [["auth_pass", "se#cr!t"]]


def test_decomment_reports_an_unterminated_quote_and_a_continuation() -> None:
    assert decomment('  a "b # c') == ('a "b # c', False, True)
    # keepalived trims the blanks before a continuing backslash.
    assert decomment("$X=a \\") == ("$X=a\\", True, False)


def test_a_double_quoted_string_is_one_word_without_its_quotes() -> None:
    tokens = lex_string('notify_master "/etc/keepalived/notify.sh MASTER"').lines[0].tokens
    assert [t.value for t in tokens] == ["notify_master", "/etc/keepalived/notify.sh MASTER"]
    assert [t.quoted for t in tokens] == [False, True]


def test_braces_stand_alone_even_without_blanks_around_them() -> None:
    assert words("vrrp_instance VI_1{ state MASTER }\nvirtual_ipaddress {192.0.2.1}") == [
        ["vrrp_instance", "VI_1"],
        ["{"],
        ["state", "MASTER"],
        ["}"],
        ["virtual_ipaddress"],
        ["{"],
        ["192.0.2.1"],
        ["}"],
    ]


def test_a_brace_inside_quotes_is_a_word_not_a_block() -> None:
    line = lex_string('script "/bin/echo {}"').lines[0]
    assert [t.value for t in line.tokens] == ["script", "/bin/echo {}"]
    assert [t.kind for t in line.tokens] == ["word", "word"]


def test_a_conditional_line_after_a_brace_follows_the_config_id() -> None:
    text = "vrrp_instance VI_1 { @node1 priority 150\n}\n"
    assert words(text, config_id="node1") == [
        ["vrrp_instance", "VI_1"],
        ["{"],
        ["priority", "150"],
        ["}"],
    ]
    assert words(text, config_id="node2") == [["vrrp_instance", "VI_1"], ["{"], ["}"]]


def test_a_negated_conditional_line_after_a_brace_is_kept_without_a_config_id() -> None:
    assert words("} @^node1 vrrp_version 3") == [["}"], ["vrrp_version", "3"]]


def test_a_definition_after_a_brace_defines_the_parameter() -> None:
    assert words("global_defs { $ID=r1\nrouter_id $ID\n}") == [
        ["global_defs"],
        ["{"],
        ["router_id", "r1"],
        ["}"],
    ]


def test_an_include_after_a_brace_is_read(tmp_path: Path) -> None:
    (tmp_path / "body.conf").write_text("interface eth0\n")
    (tmp_path / "main.conf").write_text("vrrp_instance VI_1 { include body.conf\n}\n")
    result = lex_file(tmp_path / "main.conf")
    assert [[t.value for t in line.tokens] for line in result.lines] == [
        ["vrrp_instance", "VI_1"],
        ["{"],
        ["interface", "eth0"],
        ["}"],
    ]


def test_every_token_keeps_its_file_and_line() -> None:
    result = lex_string("global_defs {\n\n  router_id r1\n}\n", "/etc/keepalived/keepalived.conf")
    token = result.lines[2].tokens[1]
    assert (token.value, token.filename, token.line) == (
        "r1",
        "/etc/keepalived/keepalived.conf",
        3,
    )


def test_crlf_line_endings_are_accepted() -> None:
    assert words("router_id a\r\nvrrp_version 3\r\n") == [["router_id", "a"], ["vrrp_version", "3"]]


def test_a_line_with_a_nul_character_is_an_error() -> None:
    result = lex_string("router_id a\0b\n")
    assert [e.line for e in result.errors] == [1]


def test_an_unterminated_quote_is_an_error_naming_the_line() -> None:
    result = lex_string('\nnotify_master "/bin/x\n', "k.conf")
    assert [(e.filename, e.line) for e in result.errors] == [("k.conf", 2)]


# -- script command splitting ------------------------------------------------------------


def test_commands_split_on_blanks_with_single_and_double_quotes() -> None:
    assert split_quoted("/bin/notify.sh 'a b' \"c d\" e", escapes=True) == [
        "/bin/notify.sh",
        "a b",
        "c d",
        "e",
    ]


def test_quotes_join_the_parts_of_one_word_like_a_shell() -> None:
    assert split_quoted('abcd" efg h jkl "mnop', escapes=True) == ["abcd efg h jkl mnop"]


def test_command_escapes_are_decoded_as_keepalived_does() -> None:
    assert split_quoted(r"a\x41 \101 \tb \cA \q \\", escapes=True) == [
        "aA",
        "A",
        "\tb",
        "\x01",
        "q",
        "\\",
    ]


def test_without_escapes_a_backslash_pair_is_kept() -> None:
    assert split_quoted(r"x '\x41 b'", escapes=False) == ["x", r"\x41 b"]


def test_an_unterminated_quote_in_a_command_is_rejected() -> None:
    with pytest.raises(ValueError, match="terminating"):
        split_quoted("/bin/x 'a", escapes=True)


# -- conditional lines ---------------------------------------------------------------------


CONDITIONAL = """
@main   router_id main_router
@backup router_id backup_router
@^main  vrrp_version 3
"""


def test_conditional_lines_match_the_config_id() -> None:
    assert words(CONDITIONAL, config_id="main") == [["router_id", "main_router"]]
    assert words(CONDITIONAL, config_id="backup") == [
        ["router_id", "backup_router"],
        ["vrrp_version", "3"],
    ]


def test_without_a_config_id_only_negated_conditional_lines_are_kept() -> None:
    assert words(CONDITIONAL) == [["vrrp_version", "3"]]


# -- parameter definitions -----------------------------------------------------------------


def test_parameters_are_substituted_with_or_without_braces() -> None:
    assert words(
        """
        $IF=eth0
        $NET=192.0.2
        interface $IF
        virtual_ipaddress ${NET}.10/24
        """
    ) == [["interface", "eth0"], ["virtual_ipaddress", "192.0.2.10/24"]]


def test_substitution_is_recursive_and_happens_at_use() -> None:
    assert words(
        """
        $ADDRESS_BASE=192.0.${ADDRESS_BASE_SUB}
        $ADDRESS_BASE_SUB=2
        ${ADDRESS_BASE}.100/32
        """
    ) == [["192.0.2.100/32"]]


def test_unknown_parameters_and_dollar_signs_in_scripts_stay_as_written() -> None:
    assert words("script \"/bin/sh -c 'echo $HOME ${UNSET}'\"") == [
        ["script", "/bin/sh -c 'echo $HOME ${UNSET}'"]
    ]


def test_a_conditional_definition_selects_a_value_per_node() -> None:
    text = "@main $PRIO=200\n@backup $PRIO=100\npriority $PRIO\n"
    assert words(text, config_id="main") == [["priority", "200"]]
    assert words(text, config_id="backup") == [["priority", "100"]]


def test_multiline_definitions_expand_to_several_lines() -> None:
    text = textwrap.dedent(
        """
        $VIP= \\
            virtual_ipaddress { \\
                192.0.2.${N}/24 \\
            }
        $N=7
        $VIP
        """
    )
    assert words(text) == [["virtual_ipaddress"], ["{"], ["192.0.2.7/24"], ["}"]]


def test_predefined_hash_parameter_gives_a_literal_hash() -> None:
    assert words("auth_pass a${_HASH}b") == [["auth_pass", "a#b"]]


def test_a_self_referencing_parameter_is_an_error_not_a_hang() -> None:
    result = lex_string("$A=x $A\nrouter_id $A\n")
    assert [e.line for e in result.errors] == [2]


def test_seq_and_lst_blocks_are_reported_as_unsupported() -> None:
    result = lex_string("~SEQ(I, 1, 3) router_id r$I\n")
    assert "not supported" in result.errors[0].message


# -- includes --------------------------------------------------------------------------------


def test_include_reads_every_file_matching_a_glob_in_name_order(tmp_path: Path) -> None:
    conf_d = tmp_path / "conf.d"
    conf_d.mkdir()
    (conf_d / "20-b.conf").write_text("router_id second\n")
    (conf_d / "10-a.conf").write_text("router_id first\n")
    (conf_d / "notes.txt").write_text("not included\n")
    main = tmp_path / "keepalived.conf"
    main.write_text("include conf.d/*.conf\nvrrp_version 3\n")
    result = lex_file(main)
    assert [[t.value for t in line.tokens] for line in result.lines] == [
        ["router_id", "first"],
        ["router_id", "second"],
        ["vrrp_version", "3"],
    ]
    assert result.lines[0].filename == str(conf_d / "10-a.conf")
    assert result.files == (str(main), str(conf_d / "10-a.conf"), str(conf_d / "20-b.conf"))


def test_an_include_is_relative_to_the_including_file_directory(tmp_path: Path) -> None:
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "inner.conf").write_text("include b/leaf.conf\n")
    (tmp_path / "a" / "b" / "leaf.conf").write_text("router_id leaf\n")
    (tmp_path / "main.conf").write_text("include a/inner.conf\n")
    lines = lex_file(tmp_path / "main.conf").lines
    assert [t.value for t in lines[0].tokens] == ["router_id", "leaf"]


def test_include_brace_alternatives_are_expanded(tmp_path: Path) -> None:
    (tmp_path / "x.conf").write_text("router_id x\n")
    (tmp_path / "y.conf").write_text("router_id y\n")
    (tmp_path / "main.conf").write_text("include {y,x}.conf\n")
    lines = lex_file(tmp_path / "main.conf").lines
    assert [line.tokens[1].value for line in lines] == ["y", "x"]


def test_an_include_matching_nothing_is_a_warning(tmp_path: Path) -> None:
    (tmp_path / "main.conf").write_text("include missing/*.conf\n")
    result = lex_file(tmp_path / "main.conf")
    assert result.errors == ()
    assert "no file matches" in result.warnings[0].message


@pytest.mark.parametrize("keyword", ["includew", "includea"])
def test_includew_and_includea_matching_nothing_are_errors_as_in_keepalived(
    tmp_path: Path, keyword: str
) -> None:
    (tmp_path / "main.conf").write_text(f"{keyword} missing/*.conf\n")
    result = lex_file(tmp_path / "main.conf")
    assert len(result.errors) == 1 and "no file matches" in str(result.errors[0])


@pytest.mark.parametrize("keyword", ["includer", "includem", "includeb"])
def test_the_other_include_variants_matching_nothing_are_warnings(
    tmp_path: Path, keyword: str
) -> None:
    (tmp_path / "main.conf").write_text(f"{keyword} missing/*.conf\n")
    result = lex_file(tmp_path / "main.conf")
    assert result.errors == () and "no file matches" in result.warnings[0].message


def test_a_file_that_includes_itself_is_refused_naming_the_file(tmp_path: Path) -> None:
    main = tmp_path / "main.conf"
    main.write_text("include main.conf\n")
    result = lex_file(main)
    assert result.files == (str(main),)
    [error] = result.errors
    assert (error.filename, error.line) == (str(main), 1)
    assert f"include loop: {main} is already being read" in error.message


def test_include_that_reaches_a_file_already_being_read_is_refused(tmp_path: Path) -> None:
    (tmp_path / "a.conf").write_text("include b.conf\nrouter_id a\n")
    (tmp_path / "b.conf").write_text("include a.conf\nrouter_id b\n")
    result = lex_file(tmp_path / "a.conf")
    assert result.files == (str(tmp_path / "a.conf"), str(tmp_path / "b.conf"))
    assert [(e.filename, e.line) for e in result.errors] == [(str(tmp_path / "b.conf"), 1)]
    assert [[t.value for t in line.tokens] for line in result.lines] == [
        ["router_id", "b"],
        ["router_id", "a"],
    ]


def test_a_file_reached_again_through_a_link_is_still_an_include_loop(tmp_path: Path) -> None:
    (tmp_path / "main.conf").write_text("include alias.conf\n")
    (tmp_path / "alias.conf").symlink_to(tmp_path / "main.conf")
    result = lex_file(tmp_path / "main.conf")
    assert "include loop" in result.errors[0].message


def test_files_including_each_other_by_glob_are_each_read_once_per_chain(tmp_path: Path) -> None:
    # keepalived itself never finishes reading this (each file re-reads both, forever).
    (tmp_path / "a.conf").write_text("include *.conf\n")
    (tmp_path / "b.conf").write_text("include *.conf\n")
    result = lex_file(tmp_path / "a.conf")
    assert result.files == (str(tmp_path / "a.conf"), str(tmp_path / "b.conf"))
    assert all("include loop" in e.message for e in result.errors)


def test_the_same_file_may_be_included_in_several_places(tmp_path: Path) -> None:
    (tmp_path / "vip.conf").write_text("192.0.2.10/24\n")
    (tmp_path / "main.conf").write_text("include vip.conf\ninclude vip.conf\n")
    result = lex_file(tmp_path / "main.conf")
    assert result.errors == ()
    assert len(result.lines) == 2


def test_includes_nested_more_than_32_deep_are_an_error(tmp_path: Path) -> None:
    for level in range(40):
        (tmp_path / f"{level}.conf").write_text(f"include {level + 1}.conf\n")
    result = lex_file(tmp_path / "0.conf")
    assert len(result.files) == 33
    assert "nested more than 32 deep" in result.errors[0].message


def test_reading_more_than_1000_files_in_one_load_is_an_error(tmp_path: Path) -> None:
    # No loop, but each level includes the next one twice: 2**11 - 1 reads.
    for level in range(10):
        (tmp_path / f"{level}.conf").write_text(f"include {{{level + 1},{level + 1}}}.conf\n")
    (tmp_path / "10.conf").write_text("router_id leaf\n")
    result = lex_file(tmp_path / "0.conf")
    assert len(result.files) == 1000
    [error] = result.errors
    assert "more than 1000 files read" in error.message


def test_an_include_glob_skips_a_directory_with_a_warning(tmp_path: Path) -> None:
    (tmp_path / "conf.d" / "old.conf").mkdir(parents=True)
    (tmp_path / "conf.d" / "vi.conf").write_text("router_id r1\n")
    (tmp_path / "main.conf").write_text("include conf.d/*\n")
    result = lex_file(tmp_path / "main.conf")
    assert result.errors == ()
    assert result.files[1:] == (str(tmp_path / "conf.d" / "vi.conf"),)
    [warning] = result.warnings
    assert f"{tmp_path / 'conf.d' / 'old.conf'} is a directory; skipped" in warning.message


def test_an_include_glob_skips_an_executable_file_with_a_warning(tmp_path: Path) -> None:
    (tmp_path / "conf.d").mkdir()
    (tmp_path / "conf.d" / "hook.sh").write_text("router_id not_read\n")
    (tmp_path / "conf.d" / "hook.sh").chmod(0o755)
    (tmp_path / "main.conf").write_text("include conf.d/*\n")
    result = lex_file(tmp_path / "main.conf")
    assert (result.lines, result.errors) == ((), ())
    assert "is executable" in result.warnings[0].message


def test_an_include_glob_skips_a_file_that_is_not_regular_with_a_warning(tmp_path: Path) -> None:
    (tmp_path / "conf.d").mkdir()
    os.mkfifo(tmp_path / "conf.d" / "pipe.conf")
    (tmp_path / "main.conf").write_text("include conf.d/*.conf\n")
    result = lex_file(tmp_path / "main.conf")
    assert result.errors == ()
    assert "is not a regular file; skipped" in result.warnings[0].message


def test_an_include_naming_a_directory_is_skipped_with_a_warning(tmp_path: Path) -> None:
    # keepalived -t accepts `include conf.d` (it logs "is a directory - skipping").
    (tmp_path / "conf.d").mkdir()
    (tmp_path / "main.conf").write_text("include conf.d\n")
    result = lex_file(tmp_path / "main.conf")
    assert result.errors == ()
    assert "is a directory; skipped" in result.warnings[0].message


def test_includer_makes_a_file_it_cannot_use_an_error(tmp_path: Path) -> None:
    (tmp_path / "conf.d").mkdir()
    (tmp_path / "main.conf").write_text("includer conf.d\n")
    result = lex_file(tmp_path / "main.conf")
    [error] = result.errors
    assert (error.line, error.message) == (1, f"includer: {tmp_path / 'conf.d'} is a directory")


def test_a_block_may_span_an_include(tmp_path: Path) -> None:
    (tmp_path / "vips.conf").write_text("192.0.2.10/24\n192.0.2.11/24\n")
    (tmp_path / "keepalived.conf").write_text(
        textwrap.dedent(
            """
            vrrp_instance VI_1 {
                interface eth0
                virtual_router_id 51
                virtual_ipaddress {
                    include vips.conf
                }
            }
            """
        )
    )
    cfg = load(tmp_path / "keepalived.conf")
    assert [str(v.address) for v in cfg.instance("VI_1").vips] == [
        "192.0.2.10/24",
        "192.0.2.11/24",
    ]


def test_a_missing_main_file_is_a_config_file_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigFileError) as info:
        load(tmp_path / "nope.conf")
    assert info.value.filename == str(tmp_path / "nope.conf")
    assert info.value.line is None


def test_loads_resolves_includes_against_the_pseudo_filename_directory(tmp_path: Path) -> None:
    (tmp_path / "ids.conf").write_text("router_id from_include\n")
    cfg = loads("global_defs {\ninclude ids.conf\n}\n", str(tmp_path / "virtual.conf"))
    assert cfg.global_defs.router_id == "from_include"
