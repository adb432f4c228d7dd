"""Hide credential-like text in worker errors, as the Functions host does.

A port of the host's `Sanitizer.Sanitize` (Azure/azure-functions-host, src/WebJobs.Script/Sanitizer.cs),
which `RpcException` applies to every error message a language worker reports: from each credential
token (case-insensitive) up to the next `<`, `"` or `'` (or the end), the text becomes
`[Hidden Credential]`; so does a `scheme://user:password@host:port` URL.
"""

from __future__ import annotations

import re

SECRET_REPLACEMENT = "[Hidden Credential]"
_VALUE_TERMINATORS = frozenset("<\"'")
_ALLOWED_TOKENS = ("PublicKeyToken=",)
CREDENTIAL_TOKENS = (
    "Token=",
    "DefaultEndpointsProtocol=http",
    "AccountKey=",
    "Data Source=",
    "Server=",
    "Password=",
    "pwd=",
    "&amp;sig=",
    "&sig=",
    "?sig=",
    "SharedAccessKey=",
    "&amp;code=",
    "&code=",
    "?code=",
    "key=",
)
# Case-insensitive matching that keeps indices aligned (str.lower can change a string's length).
_TOKEN_PATTERNS = [re.compile(re.escape(token), re.IGNORECASE) for token in CREDENTIAL_TOKENS]
_URL_WITH_PASSWORD = re.compile(r"\b([a-zA-Z]+)://([^:/\s]+):([^@/\s]+)@([^:/\s]+):([0-9]+)\b", re.IGNORECASE)


def sanitize(text: str | None) -> str:
    """The text with credential-like parts replaced by `[Hidden Credential]` (empty for None or empty)."""
    if not text:
        return ""
    if "=" not in text and ":" not in text:
        return text
    result = text
    searched = text  # the same text with allowed tokens masked, so they are never taken for credentials
    for allowed in _ALLOWED_TOKENS:
        searched = searched.replace(allowed, "#" * len(allowed))
    for pattern in _TOKEN_PATTERNS:
        start = 0
        while (match := pattern.search(searched, start)) is not None:
            start = match.start()
            end = next((i for i in range(start, len(result)) if result[i] in _VALUE_TERMINATORS), len(result))
            result = result[:start] + SECRET_REPLACEMENT + result[end:]
            searched = searched[:start] + SECRET_REPLACEMENT + searched[end:]
    if ":" in text:
        result = _URL_WITH_PASSWORD.sub(SECRET_REPLACEMENT, result)
    return result
