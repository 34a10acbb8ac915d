"""An object store's client errors (s3fs/botocore, gcsfs, adlfs, aiohttp) as one line a user can act
on: the URL the request was about and what to check (credentials, endpoint, a refusal). The CLI's
`user_errors` (cli_common.py) prints it with exit status 2, or 1 when the store could not be reached
(`store_unreachable`: an outage that a rerun, or an Airflow retry, may outlast). The clients' classes are told apart by
their module and name, so none is imported where no store was used (`--help` stays fast).
"""

from __future__ import annotations

import os
import ssl
from typing import Optional

_CLIENT_MODULES = ("botocore.", "aiobotocore.", "aiohttp.", "google.auth.", "google.api_core.", "gcsfs.", "azure.core.", "azure.identity.", "adlfs.", "fsspec.exceptions")
_NO_CREDENTIALS = {
    "NoCredentialsError", "PartialCredentialsError", "CredentialRetrievalError", "NoAuthTokenError", "ProfileNotFound", "SSOTokenLoadError",
    "TokenRetrievalError", "UnauthorizedSSOTokenError", "DefaultCredentialsError", "RefreshError", "ClientAuthenticationError", "CredentialUnavailableError",
}  # fmt: skip
_NO_CONNECTION = {
    "EndpointConnectionError", "ConnectTimeoutError", "ReadTimeoutError", "ConnectionClosedError", "ProxyConnectionError", "SSLError", "HTTPClientError",
    "ClientConnectorError", "ClientConnectionError", "ServerDisconnectedError", "ClientOSError", "ServerTimeoutError", "FSTimeoutError",
}  # fmt: skip
# botocore's and aiohttp's (a ClientConnectorCertificateError is a ClientConnectorError too).
_CERTIFICATE = {"SSLError", "ClientSSLError", "ClientConnectorCertificateError", "ClientConnectorSSLError"}
_REFUSED_CODES = {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "InvalidToken", "AllAccessDisabled", "Forbidden", "403"}


def client_class(exc: BaseException) -> Optional[str]:
    """The name of the store-client class `exc` is (or derives from), if it is one."""
    for cls in type(exc).__mro__:
        if cls.__module__.startswith(_CLIENT_MODULES):
            return cls.__name__
    return None


def _client_classes(exc: BaseException) -> set[str]:
    """Every store-client class `exc` is or derives from (aiohttp's ClientConnectorDNSError is a ClientConnectorError)."""
    return {cls.__name__ for cls in type(exc).__mro__ if cls.__module__.startswith(_CLIENT_MODULES)}


def root_cause(exc: BaseException) -> str:
    """`Type: message` of the error `exc` was raised from that says what happened: the deepest
    store client's (fsspec's HTTP raises a bare FileNotFoundError(url) from aiohttp's connection
    error, itself raised from the socket's), else the first of all."""
    chain = _chain(exc)
    first = next((e for e in reversed(chain) if client_class(e)), chain[-1])
    return f"{type(first).__name__}: {first}"


def _chain(exc: BaseException) -> list[BaseException]:
    """`exc` and the errors it was raised from or while handling (`raise ... from None` keeps them in __context__)."""
    found = [exc]
    while len(found) < 8 and (found[-1].__cause__ or found[-1].__context__) is not None:
        found.append(found[-1].__cause__ or found[-1].__context__)  # type: ignore[arg-type]
    return found


def _code(exc: BaseException) -> Optional[str]:
    """The error code of a store's response (botocore's ClientError), if `exc` carries one."""
    response = getattr(exc, "response", None)
    return str((response.get("Error") or {}).get("Code")) if isinstance(response, dict) else None


def _refused(exc: BaseException) -> bool:
    response = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return False
    return _code(exc) in _REFUSED_CODES or (response.get("ResponseMetadata") or {}).get("HTTPStatusCode") == 403


def _s3_request(exc: BaseException) -> Optional[str]:
    """The object an S3 request that failed was about, `s3://BUCKET/KEY (Operation)`, from the
    request's frame in the traceback (s3fs's `_call_s3`), for an error that names no file."""
    tb = exc.__traceback__
    found = None
    while tb is not None:
        frame = tb.tb_frame
        kwargs = frame.f_locals.get("kwargs") if frame.f_code.co_name == "_call_s3" else None
        if isinstance(kwargs, dict) and kwargs.get("Bucket"):
            key = kwargs.get("Key") or kwargs.get("Prefix") or ""
            method = frame.f_locals.get("method")
            found = f"s3://{kwargs['Bucket']}/{key}".rstrip("/") + (f" ({getattr(method, '__name__', method)})" if method else "")
        tb = tb.tb_next
    return found


def store_unreachable(exc: BaseException) -> bool:
    """Whether `exc` is a store client's failure to reach the store (no connection, a timeout, a
    dropped connection): often passing (an outage, a restart), so a rerun may well succeed."""
    names = set().union(*(_client_classes(e) for e in _chain(exc)))
    # Missing credentials (said first by store_error) and a refused certificate are settings to mend, not an outage.
    return bool(names & _NO_CONNECTION) and not names & (_NO_CREDENTIALS | _CERTIFICATE) and not any(isinstance(e, ssl.SSLError) for e in _chain(exc))


def store_error(exc: BaseException) -> Optional[str]:
    """The one-line message of an object store's error, with what to check; None for other errors.
    Our own errors (a ValueError or OSError naming their file) raised from one keep their text and
    get the hint; a client's error gets the URL it concerns (files.naming_store_errors, or s3fs's
    request) and its class name."""
    from crawlmill.files import STORE_URL

    chain = _chain(exc)
    names = [client_class(e) for e in chain]
    google = any(type(e).__module__.startswith("google.") for e in chain)
    azure = any(type(e).__module__.startswith(("azure.", "adlfs.")) for e in chain)
    if any(name in _NO_CREDENTIALS for name in names):
        if google:
            hint = "no usable credentials for Google Cloud Storage: set GOOGLE_APPLICATION_CREDENTIALS to a service account's key file, or run `gcloud auth application-default login`"
        elif azure:
            hint = "no usable credentials for Azure storage: set AZURE_STORAGE_CONNECTION_STRING, or AZURE_STORAGE_ACCOUNT_NAME and AZURE_STORAGE_ACCOUNT_KEY"
        else:
            hint = ("no usable credentials for the object store: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN for temporary ones), "
                    "or AWS_PROFILE to a profile of ~/.aws/credentials")  # fmt: skip
    elif any(_client_classes(e) & _NO_CONNECTION for e in chain):
        endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        if any(type(e).__module__.startswith(("botocore.", "aiobotocore.")) for e in chain):
            now = f"it is {endpoint}" if endpoint else "unset: AWS's own endpoint"
            hint = f"the object store could not be reached: check its address, AWS_ENDPOINT_URL ({now}), and the network"
        else:
            hint = "the server or object store could not be reached: check the URL and the network"
    elif any(_code(e) == "NoSuchBucket" or "specified bucket does not exist" in str(e) for e in chain):
        hint = "create the bucket first: crawlmill makes folders in a bucket, never the bucket itself"
    elif any(_refused(e) for e in chain):
        hint = "the object store refused the request: check the credentials (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE) and that they may access this bucket"
    elif names[0] is not None:  # another error of a client: one line, no hint
        hint = ""
    else:
        return None
    if names[0] is None and isinstance(exc, (ValueError, OSError)) and not isinstance(exc, PermissionError):
        text = str(exc)  # ours, naming what it was about (or an OSError with its file)
    else:
        text = str(exc) if names[0] is None else f"{names[0]}: {exc}"
        url = getattr(exc, "filename", None) or getattr(exc, STORE_URL, None) or _s3_request(exc)
        if url and str(url).split(" (")[0] not in text:
            text = f"{url}: {text}"
    return f"{text.rstrip('.')}; {hint}" if hint else text
