"""OpenAPI details flask-smorest does not know: every error is problem+json, and every
operation may answer with the statuses the API uses for bad or unauthorised requests."""
from __future__ import annotations

from apispec import BasePlugin

PROBLEM_RESPONSE = "Problem"
COMMON_ERRORS = ("400", "401", "403", "404", "409", "413", "415", "422", "429")


class ProblemResponses(BasePlugin):
    def operation_helper(self, path=None, operations=None, **kwargs):
        for operation in (operations or {}).values():
            responses = operation.setdefault("responses", {})
            for code in list(responses):
                if code == "default" or (str(code).isdigit() and int(code) >= 400):
                    responses[code] = PROBLEM_RESPONSE
            for code in COMMON_ERRORS:
                responses.setdefault(code, PROBLEM_RESPONSE)
