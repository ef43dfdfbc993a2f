"""Reaching AWS for the ECS backend: boto3 clients per region and role, and boto3's errors translated.

Clients come from boto3's standard configuration (so `AWS_ENDPOINT_URL` points the bot at moto), with the
standard retry mode; a target with `role_arn` is reached through STS AssumeRole, one set of clients per
(region, role), reused until the credentials are about to expire. `ClientError`/`BotoCoreError` are translated
into `bot.core.errors` by `translating_errors`, here and nowhere else.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, ParamValidationError

from bot.core.catalog import EcsTarget
from bot.core.errors import BackendUnavailable, BotError, RollbackFailed, TargetNotAllowed, UnknownTarget

if TYPE_CHECKING:
    from mypy_boto3_application_autoscaling import ApplicationAutoScalingClient
    from mypy_boto3_ecs import ECSClient

# Assumed-role credentials are renewed this long before they expire.
CREDENTIALS_MARGIN = timedelta(minutes=5)

_NOT_FOUND = {"ClusterNotFoundException", "ServiceNotFoundException", "ServiceNotActiveException"}
_DENIED = {"AccessDeniedException", "AccessDenied", "UnauthorizedOperation", "UnrecognizedClientException"}
_RETRYABLE = {"ServerException", "ThrottlingException", "Throttling", "RequestLimitExceeded", "ServiceUnavailable"}


@contextlib.contextmanager
def translating_errors(what: str) -> Iterator[None]:
    """Turn boto3's exceptions into the bot's, keeping AWS's own message for the thread."""
    try:
        yield
    except ClientError as exc:
        error = exc.response.get("Error", {})
        code = str(error.get("Code", "ClientError"))
        message = f"{what}: {code}: {error.get('Message', '')}".rstrip(": ")
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        translated: BotError
        if code in _NOT_FOUND:
            translated = UnknownTarget(message)
        elif code in _DENIED:
            translated = TargetNotAllowed(f"{message} (check the bot's IAM permissions or the target's role_arn)")
        elif code in _RETRYABLE or status >= 500:
            translated = BackendUnavailable(message)
        else:
            translated = RollbackFailed(message)
        raise translated from exc
    except ParamValidationError as exc:
        raise RollbackFailed(f"{what}: {exc}") from exc
    except BotoCoreError as exc:
        raise BackendUnavailable(f"{what}: {exc}") from exc


class EcsClients:
    """boto3 clients per (region, role_arn), created once and reused; assumed roles renewed before expiry."""

    def __init__(
        self,
        session_factory: Callable[[str | None], boto3.session.Session] | None = None,
        config: Config | None = None,
        session_name: str = "rollbot",
    ) -> None:
        self._session_factory = session_factory or (lambda region: boto3.session.Session(region_name=region))
        self._config = (
            Config(retries={"mode": "standard"}).merge(config) if config else Config(retries={"mode": "standard"})
        )
        self._session_name = session_name
        self._lock = threading.Lock()
        self._cache: dict[tuple[str | None, str | None], tuple[datetime | None, dict[str, Any]]] = {}

    def ecs(self, spec: EcsTarget) -> ECSClient:
        client: ECSClient = self._client(spec, "ecs")
        return client

    def autoscaling(self, spec: EcsTarget) -> ApplicationAutoScalingClient:
        client: ApplicationAutoScalingClient = self._client(spec, "application-autoscaling")
        return client

    def _client(self, spec: EcsTarget, name: str) -> Any:
        key = (spec.region, spec.role_arn)
        with self._lock:
            expires, clients = self._cache.get(key, (None, {}))
            if key not in self._cache or (expires is not None and expires - CREDENTIALS_MARGIN <= datetime.now(UTC)):
                expires, session = self._session(spec)
                clients = {"session": session}
                self._cache[key] = (expires, clients)
            if name not in clients:
                clients[name] = clients["session"].client(name, config=self._config)
            return clients[name]

    def _session(self, spec: EcsTarget) -> tuple[datetime | None, boto3.session.Session]:
        base = self._session_factory(spec.region)
        if not spec.role_arn:
            return None, base
        with translating_errors(f"assuming role {spec.role_arn}"):
            sts = base.client("sts", config=self._config)
            credentials = sts.assume_role(RoleArn=spec.role_arn, RoleSessionName=self._session_name)["Credentials"]
        session = boto3.session.Session(
            aws_access_key_id=credentials["AccessKeyId"],
            aws_secret_access_key=credentials["SecretAccessKey"],
            aws_session_token=credentials["SessionToken"],
            region_name=spec.region or base.region_name,
        )
        return credentials["Expiration"], session
