"""The error every emulator layer raises; the HTTP layer renders it as GitHub's error body."""

from __future__ import annotations

DOCS = "https://docs.github.com/rest"
RUNNER_DOCS = "https://docs.github.com/rest/actions/self-hosted-runners"
APP_DOCS = "https://docs.github.com/rest/apps/apps"


class ApiError(Exception):
    """An HTTP error answer: GitHub's `{message, documentation_url[, errors], status}` body."""

    def __init__(
        self,
        status: int,
        message: str,
        documentation_url: str = DOCS,
        *,
        errors: list[str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(f"{status} {message}")
        self.status = status
        self.message = message
        self.documentation_url = documentation_url
        self.errors = errors
        self.headers = headers or {}

    def body(self) -> dict[str, object]:
        out: dict[str, object] = {"message": self.message, "documentation_url": self.documentation_url}
        if self.errors is not None:
            out["errors"] = self.errors
        # GitHub added the status as a string to error bodies in 2023.
        out["status"] = str(self.status)
        return out


def not_found(doc: str = DOCS) -> ApiError:
    return ApiError(404, "Not Found", doc)


def unprocessable(message: str, doc: str = RUNNER_DOCS, errors: list[str] | None = None) -> ApiError:
    return ApiError(422, message, doc, errors=errors)


class ActionsError(ApiError):
    """An Actions-service error: the service's exception envelope, whose `typeName` GitHub's client matches
    (`AgentExistsException`, `AgentNotFoundException`, `JobStillRunningException`, ...)."""

    def __init__(self, status: int, type_key: str, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(status, message, headers=headers)
        self.type_key = type_key

    def body(self) -> dict[str, object]:
        return {"$id": "1", "innerException": None, "message": self.message,
                "typeName": f"GitHub.DistributedTask.WebApi.{self.type_key}, GitHub.DistributedTask.WebApi",
                "typeKey": self.type_key, "errorCode": 0, "eventId": 3000}
