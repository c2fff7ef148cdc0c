"""The one error type the strict layer raises; the protocol module renders it per service."""


class AwsError(Exception):
    """An AWS API error as a client sees it: code, message, HTTP status and fault side."""

    def __init__(self, code: str, message: str, status: int = 400, sender: bool = True):
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status
        self.sender = sender


def validation(message: str) -> AwsError:
    return AwsError("ValidationError", message)
