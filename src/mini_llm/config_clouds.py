"""The settings of the cloud provider kinds: Azure OpenAI, AWS Bedrock, Google Vertex AI.

`config_tables.parse_providers` reads what every provider has (base URL, keys, headers); a
provider of one of these kinds (`type = "azure" | "bedrock" | "vertex"`, or the presets of those
names) also gets here its credentials (several fields, or a service account), the options its
wire is built from, and the base URL its kind implies. Each cloud's usual environment
variables are honoured; as everywhere, this module only reads the `env` it is given (and the
files it names: a service account, AWS's shared credentials and config files).
"""

from __future__ import annotations

import configparser
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from .providers.base import Credential

__all__ = ["CLOUD_KEYS", "KIND_KEYS", "CloudSettings", "cloud_settings"]

KIND_KEYS: dict[str, tuple[str, ...]] = {
    "azure": ("api_version", "deployments", "ad_token"),
    "bedrock": ("region", "access_key_id", "secret_access_key", "session_token", "profile"),
    "vertex": ("project", "location", "credentials_file"),
}
"""The settings each kind takes besides those of every provider."""

CLOUD_KEYS = ("type", *(key for keys in KIND_KEYS.values() for key in keys))

GOOGLE_TOKEN_URI = "https://oauth2.googleapis.com/token"


@dataclass(slots=True)
class CloudSettings:
    """What a kind adds to a provider's configuration."""

    base_url: str
    credentials: list[Credential] = field(default_factory=list)
    secrets: list[str] = field(default_factory=list)
    """Values to redact and to count as the provider's keys (shown masked)."""
    options: dict[str, Any] = field(default_factory=dict)
    explicit: bool = False


def _string(entry: Mapping[str, Any], key: str, where: str, problems: list[str]) -> str | None:
    value = entry.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        problems.append(f"{where} {key} must be a non-empty string")
        return None
    return value


def cloud_settings(
    kind: str,
    name: str,
    prefix: str,
    entry: Mapping[str, Any],
    env: Mapping[str, str],
    base_url: str,
    keys: list[str],
    problems: list[str],
) -> CloudSettings:
    """`base_url` and `keys` are what the common rules found (file, `<PREFIX>_BASE_URL`,
    `<PREFIX>_API_KEY`); a problem is reported only for a provider that is set up."""
    where = f"[providers.{name}]"
    for key in entry:
        owner = next((k for k, names in KIND_KEYS.items() if key in names), kind)
        if owner != kind:
            problems.append(f"{where} {key} is a setting of type = {owner!r} providers")
    if kind == "azure":
        return _azure(where, entry, env, base_url, keys, problems)
    if kind == "bedrock":
        return _bedrock(where, prefix, entry, env, base_url, keys, problems)
    return _vertex(where, prefix, entry, env, base_url, problems)


def _azure(
    where: str,
    entry: Mapping[str, Any],
    env: Mapping[str, str],
    base_url: str,
    keys: list[str],
    problems: list[str],
) -> CloudSettings:
    base = base_url or env.get("AZURE_OPENAI_ENDPOINT", "").rstrip("/")
    explicit = bool(keys) or bool(entry) or bool(base_url)
    if not keys and env.get("AZURE_OPENAI_API_KEY"):
        keys = [env["AZURE_OPENAI_API_KEY"]]
    credentials = [Credential(k) for k in keys]
    token = _string(entry, "ad_token", where, problems) or env.get("AZURE_OPENAI_AD_TOKEN")
    if token:
        credentials.append(Credential(token, {"kind": "bearer"}))
    version = _string(entry, "api_version", where, problems)
    deployments = entry.get("deployments", {})
    if not isinstance(deployments, dict) or not all(
        isinstance(k, str) and isinstance(v, str) and v for k, v in deployments.items()
    ):
        problems.append(f'{where} deployments must be a table of names: {{ "gpt-4o" = "my-4o" }}')
        deployments = {}
    if not base and not explicit:
        credentials = []  # the generic AZURE_OPENAI_* variables alone, without an endpoint
    explicit = explicit or bool(credentials)
    if explicit and not base:
        problems.append(
            f"{where} needs a base_url (https://RESOURCE.openai.azure.com), or "
            "AZURE_OPENAI_ENDPOINT"
        )
    v1 = version in (None, "v1")
    suffix = "/openai/v1" if v1 else "/openai"
    if base.endswith(("/openai/v1", "/openai")):
        base = base.rsplit("/openai", 1)[0]
    return CloudSettings(
        base_url=base + suffix if base else "",
        credentials=credentials,
        secrets=[c.secret for c in credentials],
        options={"api_version": None if v1 else version, "deployments": dict(deployments)},
        explicit=explicit,
    )


# What a profile may hold instead of keys, which the gateway does not resolve (it would run
# commands or call STS/SSO): named, so the problem says what to do instead.
_AWS_INDIRECT = (
    "role_arn",
    "credential_process",
    "sso_session",
    "sso_start_url",
    "web_identity_token_file",
)


def _ini_section(
    path: str, names: tuple[str, ...], where: str, problems: list[str]
) -> dict[str, str] | None:
    """The first of `names` found in an INI file (AWS's format), or None (no file, no section).
    A file that cannot be read is a problem named by its path alone: its lines may hold keys."""
    if not path or not Path(path).is_file():
        return None
    parser = configparser.RawConfigParser(default_section="\0")  # AWS has no DEFAULT section
    try:
        parser.read_string(Path(path).read_text(), source=path)
    except (OSError, UnicodeDecodeError, configparser.Error) as e:
        problems.append(f"{where} cannot read {path} ({type(e).__name__})")
        return None
    for name in names:
        if parser.has_section(name):
            return {key: value.strip() for key, value in parser.items(name)}
    return None


def _aws_profile(
    where: str, name: str, named: bool, env: Mapping[str, str], problems: list[str]
) -> dict[str, str]:
    """One AWS profile as the CLI and SDKs read it: `[NAME]` of the shared credentials file
    (`AWS_SHARED_CREDENTIALS_FILE`, else ~/.aws/credentials) over `[profile NAME]` (`[default]`)
    of the config file (`AWS_CONFIG_FILE`, else ~/.aws/config). A profile that was `named`
    (in the file or `AWS_PROFILE`) must exist."""
    home = env.get("HOME", "")
    credentials_path = env.get("AWS_SHARED_CREDENTIALS_FILE") or (
        f"{home}/.aws/credentials" if home else ""
    )
    config_path = env.get("AWS_CONFIG_FILE") or (f"{home}/.aws/config" if home else "")
    sections = ("default", "profile default") if name == "default" else (f"profile {name}",)
    config = _ini_section(config_path, sections, where, problems)
    stored = _ini_section(credentials_path, (name,), where, problems)
    if config is None and stored is None:
        if named:
            stored_at = credentials_path or "~/.aws/credentials"
            problems.append(
                f"{where} AWS profile {name!r} is in neither {stored_at} nor "
                f"{config_path or '~/.aws/config'}"
            )
        return {}
    return {**(config or {}), **(stored or {})}


def _profile_without_keys(where: str, name: str, found: Mapping[str, str]) -> str:
    indirect = [key for key in _AWS_INDIRECT if key in found]
    how = (
        f"uses {', '.join(indirect)}, which mini-llm does not resolve"
        if indirect
        else "has no aws_access_key_id and aws_secret_access_key"
    )
    return (
        f"{where} AWS profile {name!r} {how}: give it keys, or export them "
        f"(aws configure export-credentials --profile {name} --format env)"
    )


def _bedrock(
    where: str,
    prefix: str,
    entry: Mapping[str, Any],
    env: Mapping[str, str],
    base_url: str,
    keys: list[str],
    problems: list[str],
) -> CloudSettings:
    chosen = _string(entry, "profile", where, problems) or env.get("AWS_PROFILE")
    profile_name = chosen or "default"
    read: list[dict[str, str]] = []

    def profile() -> dict[str, str]:
        """The profile, read once and only when a setting is not given otherwise."""
        if not read:
            # a profile that is not there is a problem for a provider of the file; for the
            # preset, AWS_PROFILE may name one for other tools (SSO): it stays unconfigured
            strict = bool(chosen) and bool(entry)
            read.append(_aws_profile(where, profile_name, strict, env, problems))
        return read[0]

    region = (
        _string(entry, "region", where, problems)
        or env.get(f"{prefix}_REGION")
        or env.get("AWS_REGION")
        or env.get("AWS_DEFAULT_REGION")
    )
    credentials: list[Credential] = []
    from_default_profile = False
    bearer = keys or (
        [env["AWS_BEARER_TOKEN_BEDROCK"]] if env.get("AWS_BEARER_TOKEN_BEDROCK") else []
    )
    if bearer:
        credentials = [Credential(token, {"kind": "bearer"}) for token in bearer]
    else:
        key_id = _string(entry, "access_key_id", where, problems)
        secret = _string(entry, "secret_access_key", where, problems)
        token = _string(entry, "session_token", where, problems)
        if key_id is None and secret is None:
            key_id, secret = env.get("AWS_ACCESS_KEY_ID"), env.get("AWS_SECRET_ACCESS_KEY")
            token = env.get("AWS_SESSION_TOKEN") or None
        if key_id is None and secret is None:
            found = profile()
            key_id = found.get("aws_access_key_id") or None
            secret = found.get("aws_secret_access_key") or None
            token = found.get("aws_session_token") or None
            from_default_profile = bool(key_id and secret) and not chosen
            if chosen and entry and not (key_id and secret) and found:
                problems.append(_profile_without_keys(where, profile_name, found))
        if key_id and secret:
            fields = {"access_key_id": key_id, "secret_access_key": secret}
            if token:
                fields["session_token"] = token
            credentials.append(Credential(secret, fields))
        elif key_id or secret:
            problems.append(f"{where} needs both access_key_id and secret_access_key")
    if not region and (chosen or credentials):
        region = profile().get("region") or None
    # keys found in the default profile alone set the `bedrock` preset up only with a region:
    # a machine's AWS files must not make a gateway that never uses Bedrock fail to start
    explicit = bool(entry) or bool(credentials and (region or not from_default_profile))
    if not region:
        if explicit:
            problems.append(f"{where} needs a region (or AWS_REGION / AWS_DEFAULT_REGION)")
        region = ""
    base = base_url or env.get("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", "").rstrip("/")
    if not base and region:
        base = f"https://bedrock-runtime.{region}.amazonaws.com"
    secrets = [c.secret for c in credentials]
    secrets += [c.fields["session_token"] for c in credentials if "session_token" in c.fields]
    return CloudSettings(base, credentials, secrets, {"region": region}, explicit)


def _vertex(
    where: str,
    prefix: str,
    entry: Mapping[str, Any],
    env: Mapping[str, str],
    base_url: str,
    problems: list[str],
) -> CloudSettings:
    path = _string(entry, "credentials_file", where, problems) or env.get(
        "GOOGLE_APPLICATION_CREDENTIALS"
    )
    account = _service_account(path, where, problems) if path else None
    project = (
        _string(entry, "project", where, problems)
        or env.get(f"{prefix}_PROJECT")
        or (account or {}).get("project_id")
    )
    location = (
        _string(entry, "location", where, problems) or env.get(f"{prefix}_LOCATION") or "global"
    )
    explicit = account is not None or bool(entry)
    credentials: list[Credential] = []
    if account is not None:
        fields = {
            "client_email": account["client_email"],
            "token_uri": account.get("token_uri") or GOOGLE_TOKEN_URI,
            "private_key_id": account.get("private_key_id") or "",
        }
        credentials.append(Credential(account["private_key"], fields))
    elif explicit:
        problems.append(f"{where} needs credentials_file (or GOOGLE_APPLICATION_CREDENTIALS)")
    if explicit and not project:
        problems.append(f"{where} needs a project (or {prefix}_PROJECT)")
    root = base_url or (
        "https://aiplatform.googleapis.com/v1"
        if location == "global"
        else f"https://{location}-aiplatform.googleapis.com/v1"
    )
    base = f"{root}/projects/{quote(project or '', safe='')}/locations/{quote(location, safe='')}"
    secrets = [c.secret for c in credentials]
    return CloudSettings(base, credentials, secrets, {"location": location}, explicit)


def _service_account(path: str, where: str, problems: list[str]) -> dict[str, str] | None:
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        problems.append(f"{where} credentials file {path} does not exist")
        return None
    except (OSError, UnicodeDecodeError, ValueError) as e:
        problems.append(f"{where} credentials file {path} cannot be read as JSON: {e}")
        return None
    if not isinstance(data, dict) or data.get("type") != "service_account":
        problems.append(f"{where} credentials file {path} is not a service-account key")
        return None
    missing = [k for k in ("client_email", "private_key") if not isinstance(data.get(k), str)]
    if missing:
        problems.append(f"{where} credentials file {path} lacks {', '.join(missing)}")
        return None
    return {k: v for k, v in data.items() if isinstance(v, str)}
