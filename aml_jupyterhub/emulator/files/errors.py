"""Azure Files' error dialect: Storage error codes for statuses raised without one."""

#: Storage's error codes for statuses raised without one (injected faults, tornado errors).
STORAGE_ERROR_CODES = {
    400: "InvalidInput",
    401: "InvalidAuthenticationInfo",
    403: "AuthorizationFailure",
    404: "ResourceNotFound",
    405: "UnsupportedHttpVerb",
    409: "ResourceAlreadyExists",
    412: "ConditionNotMet",
    413: "RequestBodyTooLarge",
    416: "InvalidRange",
    429: "ServerBusy",
    503: "ServerBusy",
}
