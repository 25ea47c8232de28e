"""公式 Kubernetes クライアントへの薄い共通部品（生の HTTP 呼び出しとエラーの翻訳）。"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import urllib3
from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException

from mii_cli.errors import ClusterError

# 1 回の API 呼び出しの待ち時間の上限（秒）
REQUEST_TIMEOUT = 15.0


def unreachable(api: ApiClient, error: BaseException) -> ClusterError:
    """API サーバーに届かないときのエラー。"""
    return ClusterError(
        f"cannot reach the Kubernetes API server at {api.configuration.host}: {type(error).__name__}",
        hint="start the cluster (minikube start --cpus 4 --memory 8g, or kind create cluster) "
        "or switch context with kubectl config use-context NAME",
    )


def status_message(body: Any) -> str:
    """Kubernetes の Status 応答から message を取り出す。"""
    if isinstance(body, bytes | str):
        try:
            body = json.loads(body)
        except ValueError:
            return str(body)[:300]
    if isinstance(body, dict):
        return str(body.get("message") or body.get("reason") or body)[:500]
    return str(body)[:300]


def api_error(action: str, error: ApiException) -> ClusterError:
    """ApiException を 1 行のメッセージとヒントにする。"""
    message = status_message(error.body) if error.body else str(error.reason)
    hint = None
    if error.status in (401, 403):
        hint = "your kube context lacks the rights; check it with kubectl auth can-i create deployments"
    return ClusterError(f"{action} failed ({error.status}): {message}", hint=hint)


def call(api: ApiClient, action: str, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """型付き API の呼び出しを行い、接続エラーと API エラーを ClusterError にする。

    生成されたモデルはほぼすべての属性が Optional なので、結果は Any として扱う。
    """
    kwargs.setdefault("_request_timeout", REQUEST_TIMEOUT)
    try:
        return function(*args, **kwargs)
    except ApiException as error:
        raise api_error(action, error) from None
    except (urllib3.exceptions.HTTPError, OSError) as error:
        raise unreachable(api, error) from None


def read(api: ApiClient, action: str, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """型付き API の読み取り。404 は None、それ以外のエラーは call と同じ。"""
    kwargs.setdefault("_request_timeout", REQUEST_TIMEOUT)
    try:
        return function(*args, **kwargs)
    except ApiException as error:
        if error.status == 404:
            return None
        raise api_error(action, error) from None
    except (urllib3.exceptions.HTTPError, OSError) as error:
        raise unreachable(api, error) from None


def request(
    api: ApiClient,
    method: str,
    path: str,
    *,
    query: list[tuple[str, str]] | None = None,
    body: Any = None,
    content_type: str | None = None,
    timeout: float = REQUEST_TIMEOUT,
) -> tuple[int, Any]:
    """生の API 呼び出し。ステータスと JSON の本文（無ければ None）を返す。"""
    headers = {"Accept": "application/json"}
    if content_type:
        headers["Content-Type"] = content_type
    method_, url, header_params, body_, post_params = api.param_serialize(
        method=method,
        resource_path=path,
        query_params=query or [],
        header_params=headers,
        body=body,
        auth_settings=["BearerToken"],
    )
    try:
        response: Any = api.call_api(
            method_, url, header_params, body_, post_params, _request_timeout=timeout
        )
        data = response.read()
    except ApiException as error:
        if not error.status:
            # ステータス 0 は HTTP の応答が無かった（TLS の失敗など）: 届かないのと同じに扱う
            raise unreachable(api, error) from None
        return int(error.status), status_message(error.body)
    except (urllib3.exceptions.HTTPError, OSError) as error:
        raise unreachable(api, error) from None
    try:
        payload = json.loads(data) if data else None
    except ValueError:
        payload = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
    return int(response.status), payload


def name_of(obj: Any) -> str:
    """モデルのオブジェクトの名前。"""
    metadata = getattr(obj, "metadata", None)
    return str(getattr(metadata, "name", "") or "")
