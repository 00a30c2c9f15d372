"""Where requests go: flags over environment over the config file, and the token kept secret."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from compartment_cli.client.connection import (
    DEFAULT_API_URL,
    Connection,
    Token,
    resolve_connection,
)
from compartment_cli.errors import ExitCode, UsageError

LOCAL_TOKEN = "tok-local-8c1f0e"
PROD_TOKEN = "tok-prod-77aa31"
ENV_TOKEN = "tok-env-52bd90"
ALL_TOKENS = (LOCAL_TOKEN, PROD_TOKEN, ENV_TOKEN)

CONFIG = {
    "currentRemote": "local",
    "remotes": {
        "local": {
            "apiUrl": "http://127.0.0.1:9000/",
            "sessionToken": LOCAL_TOKEN,
            "currentOrganization": {"id": "org_1", "name": "Acme", "slug": "acme"},
            "principalEmail": "dev@example.com",
        },
        "prod": {
            "apiUrl": "https://api.example.com",
            "sessionToken": PROD_TOKEN,
            "currentOrganization": {"id": "org_2", "name": "Acme Prod", "slug": "acme-prod"},
        },
        "bare": {"apiUrl": "https://bare.example.com"},
    },
}


def env_for(tmp_path: Path, config: object | None = CONFIG, **extra: str) -> dict[str, str]:
    if config is not None:
        text = config if isinstance(config, str) else json.dumps(config)
        (tmp_path / "config.json").write_text(text)
    return {"COMPARTMENT_CLI_CONFIG_DIR": str(tmp_path), **extra}


def error_of(**kwargs: object) -> UsageError:
    with pytest.raises(UsageError) as info:
        resolve_connection(**kwargs)  # type: ignore[arg-type]
    assert info.value.exit_code == ExitCode.USAGE
    return info.value


def assert_no_token_in(text: str) -> None:
    for token in ALL_TOKENS:
        assert token not in text


# --- precedence --------------------------------------------------------------


def test_nothing_configured_means_the_local_default(tmp_path: Path) -> None:
    connection = resolve_connection(environ=env_for(tmp_path, config=None))
    assert connection == Connection(DEFAULT_API_URL, None, None, None)
    assert connection.headers() == {"Accept": "application/json"}


def test_empty_config_file_means_the_local_default(tmp_path: Path) -> None:
    connection = resolve_connection(environ=env_for(tmp_path, config={}))
    assert connection == Connection(DEFAULT_API_URL, None, None, None)


def test_current_remote_of_the_config_file(tmp_path: Path) -> None:
    connection = resolve_connection(environ=env_for(tmp_path))
    assert connection.api_url == "http://127.0.0.1:9000"  # trailing "/" dropped
    assert connection.token == Token(LOCAL_TOKEN)
    assert connection.organization == "acme"
    assert connection.remote == "local"
    assert connection.headers() == {
        "Accept": "application/json",
        "Authorization": f"Bearer {LOCAL_TOKEN}",
        "x-compartment-organization": "acme",
    }


def test_remote_flag_picks_another_remote(tmp_path: Path) -> None:
    connection = resolve_connection(remote="prod", environ=env_for(tmp_path))
    assert connection == Connection(
        "https://api.example.com", Token(PROD_TOKEN), "acme-prod", "prod"
    )


def test_environment_overrides_the_file(tmp_path: Path) -> None:
    environ = env_for(
        tmp_path,
        COMPARTMENT_API_URL="https://ci.example.com/",
        COMPARTMENT_TOKEN=ENV_TOKEN,
        COMPARTMENT_ORG="ci-org",
    )
    assert resolve_connection(environ=environ) == Connection(
        "https://ci.example.com", Token(ENV_TOKEN), "ci-org", None
    )


def test_environment_token_and_org_override_the_current_remote(tmp_path: Path) -> None:
    environ = env_for(tmp_path, COMPARTMENT_TOKEN=ENV_TOKEN, COMPARTMENT_ORG="other")
    assert resolve_connection(environ=environ) == Connection(
        "http://127.0.0.1:9000", Token(ENV_TOKEN), "other", "local"
    )


def test_environment_url_of_the_same_server_keeps_the_file_login(tmp_path: Path) -> None:
    environ = env_for(tmp_path, COMPARTMENT_API_URL="http://127.0.0.1:9000")
    connection = resolve_connection(environ=environ)
    assert (connection.token, connection.organization) == (Token(LOCAL_TOKEN), "acme")


def test_file_login_is_not_sent_to_another_server(tmp_path: Path) -> None:
    environ = env_for(tmp_path, COMPARTMENT_API_URL="https://elsewhere.example.com")
    assert resolve_connection(environ=environ) == Connection(
        "https://elsewhere.example.com", None, None, None
    )
    assert resolve_connection(api_url="http://10.0.0.1:1", environ=env_for(tmp_path)) == (
        Connection("http://10.0.0.1:1", None, None, None)
    )


def test_api_url_flag_overrides_environment_and_file(tmp_path: Path) -> None:
    environ = env_for(tmp_path, COMPARTMENT_API_URL="https://ci.example.com")
    connection = resolve_connection(
        api_url="https://flag.example.com/", remote="prod", environ=environ
    )
    assert connection.api_url == "https://flag.example.com"


def test_api_url_flag_with_the_remote_own_url_keeps_its_login(tmp_path: Path) -> None:
    connection = resolve_connection(
        api_url="https://api.example.com:443/", remote="prod", environ=env_for(tmp_path)
    )
    assert (connection.token, connection.remote) == (Token(PROD_TOKEN), "prod")


def test_remote_flag_overrides_the_environment(tmp_path: Path) -> None:
    environ = env_for(
        tmp_path,
        COMPARTMENT_API_URL="https://ci.example.com",
        COMPARTMENT_TOKEN=ENV_TOKEN,
        COMPARTMENT_ORG="ci-org",
    )
    assert resolve_connection(remote="prod", environ=environ) == Connection(
        "https://api.example.com", Token(PROD_TOKEN), "acme-prod", "prod"
    )


def test_remote_without_a_login_falls_back_to_the_environment(tmp_path: Path) -> None:
    environ = env_for(tmp_path, COMPARTMENT_TOKEN=ENV_TOKEN)
    assert resolve_connection(remote="bare", environ=environ) == Connection(
        "https://bare.example.com", Token(ENV_TOKEN), None, "bare"
    )


def test_empty_environment_values_count_as_unset(tmp_path: Path) -> None:
    environ = env_for(tmp_path, COMPARTMENT_API_URL="", COMPARTMENT_TOKEN="", COMPARTMENT_ORG="")
    assert resolve_connection(environ=environ).remote == "local"


def test_file_is_not_read_when_the_environment_says_everything(tmp_path: Path) -> None:
    environ = env_for(
        tmp_path,
        config="{broken",
        COMPARTMENT_API_URL="https://ci.example.com",
        COMPARTMENT_TOKEN=ENV_TOKEN,
        COMPARTMENT_ORG="ci-org",
    )
    assert resolve_connection(environ=environ).api_url == "https://ci.example.com"


def test_xdg_config_home_is_used_without_the_override(tmp_path: Path) -> None:
    (tmp_path / "compartment-cli").mkdir()
    (tmp_path / "compartment-cli" / "config.json").write_text(json.dumps(CONFIG))
    connection = resolve_connection(environ={"XDG_CONFIG_HOME": str(tmp_path)})
    assert connection.remote == "local"


# --- errors ------------------------------------------------------------------


def test_unknown_remote_names_it_the_file_and_the_known_ones(tmp_path: Path) -> None:
    error = error_of(remote="staging", environ=env_for(tmp_path))
    path = tmp_path / "config.json"
    assert error.message == f'unknown remote "staging" in {path} (known: bare, local, prod)'
    assert error.code == "unknown_remote"


def test_unknown_remote_without_a_config_file(tmp_path: Path) -> None:
    error = error_of(remote="prod", environ=env_for(tmp_path, config=None))
    assert "no remotes are configured" in error.message


def test_dangling_current_remote(tmp_path: Path) -> None:
    config = {**CONFIG, "currentRemote": "gone"}
    error = error_of(environ=env_for(tmp_path, config=config))
    assert error.message.startswith('unknown currentRemote "gone" in ')


def test_config_file_that_is_not_json(tmp_path: Path) -> None:
    error = error_of(environ=env_for(tmp_path, config="{not json"))
    assert error.message == f"config file {tmp_path / 'config.json'} is not valid JSON"
    assert error.code == "invalid_config"


def test_config_file_of_the_wrong_shape(tmp_path: Path) -> None:
    config = {"currentRemote": "local", "remotes": {"local": {"sessionToken": 12}}}
    error = error_of(environ=env_for(tmp_path, config=config))
    assert error.message.startswith(f"config file {tmp_path / 'config.json'} ")
    assert error.code == "invalid_config"


@pytest.mark.parametrize(
    ("url", "complaint"),
    [
        ("ftp://example.com", "is not an http(s) URL"),
        ("example.com", "is not an http(s) URL"),
        ("http://", "is not an http(s) URL"),
        ("http://host:99999", "is malformed"),
        ("http://exa mple.com", "is malformed"),
        ("https://host/api#x", "must not have a query or fragment"),
    ],
)
def test_api_url_must_be_http(tmp_path: Path, url: str, complaint: str) -> None:
    error = error_of(api_url=url, environ=env_for(tmp_path))
    shown = url.replace("#x", "#***")
    assert error.message.startswith(f'API URL "{shown}" from --api-url ')
    assert complaint in error.message
    assert error.code == "invalid_api_url"


def test_bad_url_names_its_source(tmp_path: Path) -> None:
    error = error_of(environ=env_for(tmp_path, COMPARTMENT_API_URL="file:///etc"))
    assert "from COMPARTMENT_API_URL" in error.message
    config = {"currentRemote": "x", "remotes": {"x": {"apiUrl": "localhost:8787"}}}
    error = error_of(environ=env_for(tmp_path, config=config))
    assert f'from apiUrl of remote "x" in {tmp_path / "config.json"}' in error.message


def test_url_credentials_are_refused_and_not_shown(tmp_path: Path) -> None:
    error = error_of(api_url=f"https://me:{ENV_TOKEN}@host", environ=env_for(tmp_path))
    assert "must not contain credentials" in error.message
    assert_no_token_in(error.message)
    error = error_of(api_url=f"https://host/?token={ENV_TOKEN}", environ=env_for(tmp_path))
    assert error.message.startswith('API URL "https://host/?***" from --api-url must not have')
    assert_no_token_in(error.message)


def test_unreadable_config_file(tmp_path: Path) -> None:
    (tmp_path / "config.json").mkdir()
    error = error_of(environ=env_for(tmp_path, config=None))
    assert error.message.startswith(f"config file {tmp_path / 'config.json'} cannot be used: ")


# --- the token stays secret ------------------------------------------------------


def test_token_is_hidden_in_repr_and_str(tmp_path: Path) -> None:
    connection = resolve_connection(environ=env_for(tmp_path))
    assert connection.token is not None
    assert connection.token.reveal() == LOCAL_TOKEN
    for text in (repr(connection), str(connection), repr(connection.token), f"{connection.token}"):
        assert_no_token_in(text)
    assert repr(connection.token) == str(connection.token) == "Token(***)"


def test_token_equality_compares_secrets() -> None:
    assert Token("a") == Token("a")
    assert Token("a") != Token("b")
    assert Token("a") != "a"


def test_token_with_a_newline_is_refused_without_showing_it(tmp_path: Path) -> None:
    config = {"currentRemote": "x", "remotes": {"x": {"sessionToken": f"{LOCAL_TOKEN}\nX: y"}}}
    error = error_of(environ=env_for(tmp_path, config=config))
    assert 'sessionToken of remote "x"' in error.message
    assert_no_token_in(error.message)
    assert_no_token_in(repr(error.args))


def test_env_token_with_a_space_is_refused_without_showing_it(tmp_path: Path) -> None:
    error = error_of(environ=env_for(tmp_path, COMPARTMENT_TOKEN=f"{ENV_TOKEN} extra"))
    assert "COMPARTMENT_TOKEN" in error.message
    assert_no_token_in(error.message)


def test_errors_while_a_login_is_configured_never_show_it(tmp_path: Path) -> None:
    messages = [
        error_of(remote="nope", environ=env_for(tmp_path)).message,
        error_of(api_url="ftp://x", environ=env_for(tmp_path)).message,
        error_of(api_url="ftp://x", environ=env_for(tmp_path, COMPARTMENT_TOKEN=ENV_TOKEN)).message,
    ]
    for message in messages:
        assert_no_token_in(message)


SECRETS = st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=0x2FF), min_size=12)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    secret=SECRETS,
    api_url=st.one_of(st.none(), st.sampled_from(["http://127.0.0.1:9000", "ftp://x", "http://"])),
    remote=st.one_of(st.none(), st.sampled_from(["x", "missing"])),
    in_env=st.booleans(),
)
def test_a_token_never_leaks(
    tmp_path: Path, secret: str, api_url: str | None, remote: str | None, in_env: bool
) -> None:
    config = {"currentRemote": "x", "remotes": {"x": {"apiUrl": "http://127.0.0.1:9000"}}}
    extra = {"COMPARTMENT_TOKEN": secret} if in_env else {}
    if not in_env:
        config["remotes"]["x"]["sessionToken"] = secret  # type: ignore[index]
    outcome: Connection | UsageError
    try:
        outcome = resolve_connection(
            api_url=api_url, remote=remote, environ=env_for(tmp_path, config=config, **extra)
        )
    except UsageError as error:
        outcome = error
    for text in (repr(outcome), str(outcome)):
        assert secret not in text


# --- where each setting came from, for the hints of errors -------------------------------------


def test_each_setting_says_where_it_came_from(tmp_path: Path) -> None:
    config = tmp_path / "config.json"
    local = f'remote "local" in {config}'
    cases = [
        ({}, {}, (local, local)),
        ({"COMPARTMENT_TOKEN": ENV_TOKEN}, {}, (local, "COMPARTMENT_TOKEN")),
        ({"COMPARTMENT_API_URL": "https://ci.example.com"}, {}, ("COMPARTMENT_API_URL", None)),
        ({}, {"api_url": "http://10.0.0.1:1"}, ("--api-url", None)),
        ({}, {"remote": "prod"}, (f'remote "prod" in {config}',) * 2),
    ]
    for extra, flags, sources in cases:
        connection = resolve_connection(environ=env_for(tmp_path, **extra), **flags)
        assert (connection.url_source, connection.token_source) == sources, (extra, flags)
    (tmp_path / "empty").mkdir()
    nothing = resolve_connection(environ=env_for(tmp_path / "empty", config=None))
    assert nothing.url_source.startswith("the default")
    assert nothing.unauthorized_hint().startswith("No token was sent")


def test_the_hints_name_the_source_and_what_to_do(tmp_path: Path) -> None:
    local = resolve_connection(environ=env_for(tmp_path))
    assert local.unreachable_hint().endswith("is `compartment server` running?")
    assert "start `compartment server` again" in local.unauthorized_hint()
    hosted = resolve_connection(remote="prod", environ=env_for(tmp_path))
    assert "compartment server" not in hosted.unreachable_hint()
    assert "log in again with the official CLI" in hosted.unauthorized_hint()
    for connection in (local, hosted):
        assert_no_token_in(connection.unreachable_hint() + connection.unauthorized_hint())
