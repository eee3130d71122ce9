"""Sans-I/O provider translators: request body → upstream request; response body or stream → usage; error body →
gateway error. No sockets, no clock, no logging; tested with byte transcripts.

Modules: ``base`` (endpoint table, shared types), ``translate`` (request and response bodies), ``meter`` (streams),
``error_bodies`` (error bodies and message redaction), and one module per dialect (``openai``, ``anthropic``).
"""

from tollgate.providers.base import ENDPOINTS, Endpoint, PreparedRequest, requested_stream
from tollgate.providers.error_bodies import error_from_body
from tollgate.providers.meter import StreamMeter
from tollgate.providers.translate import prepare_request, usage_from_body

__all__ = [
    "ENDPOINTS",
    "Endpoint",
    "PreparedRequest",
    "StreamMeter",
    "error_from_body",
    "prepare_request",
    "requested_stream",
    "usage_from_body",
]
