"""Bedrock credentials from an AWS shared credentials profile (`profile = "…"` or
`AWS_PROFILE`): the credentials file's `[NAME]`, the config file's `[profile NAME]` for the
region; explicit settings first, then the environment, then the profile. Temporary files only;
the gateway's signature is checked by the mock Bedrock (botocore)."""

from __future__ import annotations

from pathlib import Path

import openai
import pytest

from mini_llm.config import ConfigError, Settings, load_settings

from .conftest import GatewayFactory
from .upstreams import bedrock_upstream as mock
from .upstreams.bedrock_upstream import BedrockUpstream

CREDENTIALS = """\
[default]
aws_access_key_id = AKIDDEFAULT0000
aws_secret_access_key = default/secret/key

[work]
aws_access_key_id = {key}
aws_secret_access_key = {secret}
aws_session_token = work-session-token

[sso-only]
"""

CONFIG = """\
[default]
region = us-west-2

[profile work]
region = {region}
output = json

[profile sso-only]
sso_session = corp
sso_account_id = 111122223333
region = eu-west-1

[profile keys-in-config]
aws_access_key_id = AKIDCONFIG0000
aws_secret_access_key = config/secret/key
region = ap-south-1
"""


@pytest.fixture
def aws_files(tmp_path: Path) -> dict[str, str]:
    credentials = tmp_path / "credentials"
    credentials.write_text(CREDENTIALS.format(key=mock.ACCESS_KEY, secret=mock.SECRET_KEY))
    config = tmp_path / "config"
    config.write_text(CONFIG.format(region=mock.REGION))
    return {"AWS_SHARED_CREDENTIALS_FILE": str(credentials), "AWS_CONFIG_FILE": str(config)}


def _settings(env: dict[str, str], tmp_path: Path, toml: str = "") -> Settings:
    path = tmp_path / "mini-llm.toml"
    path.write_text(toml)
    return load_settings(env=env, config_path=str(path))


def test_a_named_profile_gives_keys_token_and_region(
    aws_files: dict[str, str], tmp_path: Path
) -> None:
    toml = '[providers.aws]\ntype = "bedrock"\nprofile = "work"\n'
    settings = _settings(aws_files, tmp_path, toml)
    aws = settings.providers["aws"]
    (credential,) = aws.credentials
    assert credential.fields == {
        "access_key_id": mock.ACCESS_KEY,
        "secret_access_key": mock.SECRET_KEY,
        "session_token": "work-session-token",
    }
    assert aws.options["region"] == mock.REGION
    assert aws.base_url == f"https://bedrock-runtime.{mock.REGION}.amazonaws.com"
    assert {mock.SECRET_KEY, "work-session-token"} <= set(settings.secrets())
    assert mock.SECRET_KEY not in repr(credential)


def test_aws_profile_and_the_default_profile_for_the_preset(
    aws_files: dict[str, str], tmp_path: Path
) -> None:
    chosen = _settings({**aws_files, "AWS_PROFILE": "work"}, tmp_path).providers["bedrock"]
    assert chosen.credentials[0].fields["access_key_id"] == mock.ACCESS_KEY
    assert chosen.options["region"] == mock.REGION and chosen.usable and chosen.explicit
    # no AWS_PROFILE: the default profile, its region from the config file's [default]
    default = _settings(aws_files, tmp_path).providers["bedrock"]
    assert default.credentials[0].fields["access_key_id"] == "AKIDDEFAULT0000"
    assert default.options["region"] == "us-west-2"
    # keys may live in the config file too
    in_config = _settings({**aws_files, "AWS_PROFILE": "keys-in-config"}, tmp_path)
    bedrock = in_config.providers["bedrock"]
    assert bedrock.credentials[0].fields["secret_access_key"] == "config/secret/key"
    assert bedrock.options["region"] == "ap-south-1"


def test_settings_then_environment_then_profile(aws_files: dict[str, str], tmp_path: Path) -> None:
    env = {
        **aws_files,
        "AWS_PROFILE": "work",
        "AWS_ACCESS_KEY_ID": "AKIDFROMENV0000",
        "AWS_SECRET_ACCESS_KEY": "env/secret",
    }
    from_env = _settings(env, tmp_path).providers["bedrock"]
    assert from_env.credentials[0].fields == {
        "access_key_id": "AKIDFROMENV0000",
        "secret_access_key": "env/secret",
    }  # the profile's session token does not go with another key
    assert from_env.options["region"] == mock.REGION  # no region in the environment: the profile's
    toml = (
        '[providers.aws]\ntype = "bedrock"\nprofile = "work"\nregion = "eu-central-1"\n'
        'access_key_id = "AKIDFROMFILE000"\nsecret_access_key = "file/secret"\n'
    )
    from_file = _settings({**env, "AWS_REGION": "us-east-2"}, tmp_path, toml).providers["aws"]
    assert from_file.credentials[0].fields["access_key_id"] == "AKIDFROMFILE000"
    assert from_file.options["region"] == "eu-central-1"
    regional = _settings({**env, "AWS_REGION": "us-east-2"}, tmp_path).providers["bedrock"]
    assert regional.options["region"] == "us-east-2"


def test_default_profile_keys_without_a_region_leave_the_preset_alone(tmp_path: Path) -> None:
    credentials = tmp_path / "credentials"
    credentials.write_text("[default]\naws_access_key_id = AKID\naws_secret_access_key = s\n")
    env = {"AWS_SHARED_CREDENTIALS_FILE": str(credentials), "HOME": str(tmp_path / "nohome")}
    bedrock = _settings(env, tmp_path).providers["bedrock"]
    assert not bedrock.explicit and bedrock.base_url == ""
    # no files at all (HOME without ~/.aws): nothing read, nothing set up
    assert not _settings({"HOME": str(tmp_path)}, tmp_path).providers["bedrock"].explicit


def test_profile_problems_are_named_without_a_secret(
    aws_files: dict[str, str], tmp_path: Path
) -> None:
    missing = '[providers.aws]\ntype = "bedrock"\nprofile = "nope"\nregion = "us-east-1"\n'
    with pytest.raises(ConfigError) as caught:
        _settings(aws_files, tmp_path, missing)
    (problem,) = caught.value.problems
    assert "AWS profile 'nope' is in neither" in problem
    assert aws_files["AWS_SHARED_CREDENTIALS_FILE"] in problem
    sso = '[providers.aws]\ntype = "bedrock"\nprofile = "sso-only"\n'
    with pytest.raises(ConfigError) as caught:
        _settings(aws_files, tmp_path, sso)
    (problem,) = caught.value.problems
    assert "uses sso_session, which mini-llm does not resolve" in problem
    assert "aws configure export-credentials --profile sso-only" in problem
    broken = tmp_path / "broken"
    broken.write_text("aws_secret_access_key = leaked/secret/value\n[work]\n")
    env = {**aws_files, "AWS_SHARED_CREDENTIALS_FILE": str(broken)}
    with pytest.raises(ConfigError) as caught:
        _settings(env, tmp_path, '[providers.aws]\ntype = "bedrock"\nprofile = "work"\n')
    assert f"cannot read {broken} (MissingSectionHeaderError)" in str(caught.value)
    assert "leaked" not in str(caught.value)
    # the preset with an AWS_PROFILE meant for other tools: no keys, not set up, no error
    quiet = _settings({**aws_files, "AWS_PROFILE": "sso-only"}, tmp_path).providers["bedrock"]
    assert not quiet.credentials and not quiet.explicit


def test_a_gateway_signs_with_the_profiles_keys(
    make_gateway: GatewayFactory,
    bedrock_upstream: BedrockUpstream,
    bedrock_upstream_url: str,
    aws_files: dict[str, str],
) -> None:
    env = {
        **aws_files,
        "AWS_PROFILE": "work",
        "AWS_ENDPOINT_URL_BEDROCK_RUNTIME": bedrock_upstream_url,
    }
    gateway = make_gateway(env)
    client = openai.OpenAI(base_url=gateway.url + "/v1", api_key="x", max_retries=0)
    answer = client.chat.completions.create(
        model="bedrock/amazon.nova-pro-v1:0", messages=[{"role": "user", "content": "profiled"}]
    )
    assert answer.choices[0].message.content == "profiled"
    (request,) = bedrock_upstream.requests
    assert bedrock_upstream.refused == 0  # botocore's signer agreed with ours
    assert request.headers["X-Amz-Security-Token"] == "work-session-token"
    assert f"Credential={mock.ACCESS_KEY}/" in request.headers["Authorization"]
