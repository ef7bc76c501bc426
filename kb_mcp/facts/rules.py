"""THE one definition of every field rule, as `Annotated` types: the MCP tools put them in the input schema an agent
reads (pydantic validates the arguments with them), and the store validates with the same types through `valid`, so
the same bad input is refused with the same sentence from a tool, the CLI or an import file.

Rules a JSON Schema cannot say (not only whitespace, valid Unicode, finite numbers, the configured content limit, the
metadata's JSON size) are validators on the same types; they leave the published schema as it is.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, TypeVar

from pydantic import AfterValidator, BeforeValidator, Field, TypeAdapter, ValidationError, ValidationInfo
from pydantic_core import PydanticCustomError

from kb_mcp.errors import InvalidInput
from kb_mcp.facts.identity import encode_metadata
from kb_mcp.facts.models import Scalar
from kb_mcp.facts.problems import first_problem

T = TypeVar("T")

FACT_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$"
FACT_ID_MAX = 128
FACT_ID_RULE = "1-128 characters from A-Z a-z 0-9 _ . : -, starting with a letter or digit"
TAG_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:/-]{0,63}$"  # tags are stored lower-case
TAG_MAX = 64
TAG_RULE = "1-64 characters from a-z 0-9 _ . : / -, starting with a letter or digit (tags are lower-cased)"
MAX_TAGS = 32
MAX_METADATA_KEYS = 64
MAX_METADATA_KEY_CHARS = 64
MAX_METADATA_JSON_CHARS = 16_384
MAX_QUERY_CHARS = 2_000
MAX_CONTENT_SCHEMA_CHARS = 1_000_000  # the schema's bound; the real one is KB_MAX_FACT_CHARS (config)
TOP_K_MAX = 50
MAX_BATCH = 100  # facts per store_facts call
LIMIT_MAX = 100
CURSOR_MAX_CHARS = 512
TTL_MIN_S = 60
TTL_MAX_S = 315_360_000  # ten years
MAX_WHERE_KEYS = 16
MAX_WHERE_VALUES = 100  # members of one `in` list
RECENCY_MAX_DAYS = 36_500.0
MAX_FACT_CHARS_CONTEXT = "max_fact_chars"  # the validation context key holding KB_MAX_FACT_CHARS

RULES = {FACT_ID_PATTERN: FACT_ID_RULE, TAG_PATTERN: TAG_RULE}  # pattern -> the rule in words (error messages)


def _broken(problem: str) -> PydanticCustomError:
    return PydanticCustomError("kb_rule", problem)


def _unicode(text: str) -> str:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise _broken("is not valid Unicode (lone surrogate)") from None
    return text


def _not_blank(text: str) -> str:
    if not text.strip():
        raise _broken("must not be empty or only whitespace")
    return text


def _within_fact_limit(text: str, info: ValidationInfo) -> str:
    limit = (info.context or {}).get(MAX_FACT_CHARS_CONTEXT)
    if limit is not None and len(text) > limit:
        raise _broken(f"is {len(text)} characters; the limit is {limit} (KB_MAX_FACT_CHARS)")
    return text


def _trimmed(value: Any) -> Any:
    return value.strip() if isinstance(value, str) else value


def _lower_unique(tags: list[str] | None) -> list[str] | None:
    """Tags are stored lower-case, once each, in the order given."""
    return None if tags is None else list(dict.fromkeys(tag.lower() for tag in tags))


def _scalar_value(value: Scalar) -> Scalar:
    if isinstance(value, float) and not math.isfinite(value):
        raise _broken("must be a finite number (NaN and infinity are not JSON)")
    return _unicode(value) if isinstance(value, str) else value


def _metadata_shape(metadata: dict[str, Scalar]) -> dict[str, Scalar]:
    for key in metadata:
        if not key or len(key) > MAX_METADATA_KEY_CHARS:
            raise _broken(f"key {key!r} must be a string of 1-{MAX_METADATA_KEY_CHARS} characters")
        _unicode(key)
    if len(encode_metadata(metadata)) > MAX_METADATA_JSON_CHARS:
        raise _broken(f"is larger than {MAX_METADATA_JSON_CHARS} characters as JSON")
    return metadata


def _ttl_update(value: int | None) -> int | None:
    if value is not None and 0 < value < TTL_MIN_S:
        raise _broken(f"must be 0 (permanent) or at least {TTL_MIN_S} seconds (got {value})")
    return value


def _where_value(value: Any) -> Any:
    """A where condition's values are finite and valid Unicode, and an `in` list is 1-100 values long."""
    conditions = value if isinstance(value, dict) else {"eq": value}
    for operator, operand in conditions.items():
        for member in operand if isinstance(operand, list) else [operand]:
            _scalar_value(member)
        if isinstance(operand, list) and not 1 <= len(operand) <= MAX_WHERE_VALUES:
            raise _broken(f"{operator}: a list of 1-{MAX_WHERE_VALUES} values (got {len(operand)})")
    if isinstance(value, dict) and not value:
        raise _broken("needs at least one operator, e.g. {'eq': ...}")
    return value


def _iso_time(value: str | None) -> str | None:
    if value is not None:
        try:
            datetime.fromisoformat(value.strip())
        except ValueError:
            raise _broken(f"{value!r} is not an ISO 8601 date or time (e.g. 2026-11-27T09:30:00Z)") from None
    return value


FactId = Annotated[str, Field(min_length=1, max_length=FACT_ID_MAX, pattern=FACT_ID_PATTERN,
                              description="Stable id of a fact, e.g. 'user.timezone' (letters, digits, _ . : -)")]
Tag = Annotated[str, Field(min_length=1, max_length=TAG_MAX, pattern=TAG_PATTERN), BeforeValidator(_trimmed)]
Tags = Annotated[list[Tag], Field(max_length=MAX_TAGS, description="Short labels, e.g. ['preferences', 'project:x']; "
                                                                   "stored lower-case"),
                 AfterValidator(_lower_unique)]
TagFilter = Annotated[list[Tag] | None, Field(max_length=MAX_TAGS, description="Only facts carrying ALL of these tags"),
                      AfterValidator(_lower_unique)]
MetadataValue = Annotated[Scalar, AfterValidator(_scalar_value)]
Metadata = Annotated[dict[str, MetadataValue], Field(max_length=MAX_METADATA_KEYS,
                                                     description="Flat JSON object of extra attributes (string keys, "
                                                                 "scalar values)"),
                     AfterValidator(_metadata_shape)]
Content = Annotated[str, Field(min_length=1, max_length=MAX_CONTENT_SCHEMA_CHARS,
                               description="The fact, as a self-contained sentence or paragraph "
                                           "(limit KB_MAX_FACT_CHARS, default 32768 characters)"),
                    AfterValidator(_not_blank), AfterValidator(_within_fact_limit), AfterValidator(_unicode)]
Query = Annotated[str, Field(min_length=1, max_length=MAX_QUERY_CHARS), AfterValidator(_not_blank),
                  AfterValidator(_unicode)]
TopK = Annotated[int, Field(ge=1, le=TOP_K_MAX, description="How many results at most")]
Limit = Annotated[int, Field(ge=1, le=LIMIT_MAX)]
MinScore = Annotated[float | None, Field(ge=-1.0, le=1.0, description="Drop results whose similarity is below "
                                                                      "this; 0.3-0.5 keeps related facts")]
SearchMode = Literal["hybrid", "vector", "keyword"]
SEARCH_MODES: tuple[SearchMode, ...] = ("hybrid", "vector", "keyword")
Mode = Annotated[SearchMode, Field(description="hybrid (default): meaning and exact words, fused; vector: meaning "
                                               "only; keyword: exact words only (BM25)")]
Timestamp = Annotated[str | None, Field(max_length=64, description=(
    "ISO 8601 date or time, e.g. '2026-11-27' or '2026-11-27T09:30:00+01:00'; without a timezone UTC is assumed. "
    "Inclusive.")), AfterValidator(_iso_time)]
TtlSeconds = Annotated[int | None, Field(ge=TTL_MIN_S, le=TTL_MAX_S, description=(
    "Forget the fact after this many seconds, for facts that stop being true (e.g. 'in a meeting until 3 pm': "
    "ttl_s=3600). Omit it for a permanent fact; storing the fact again without ttl_s makes it permanent."))]
TtlUpdate = Annotated[int | None, Field(ge=0, le=TTL_MAX_S, description=(
    f"A new time to live in seconds ({TTL_MIN_S} s to 10 years), or 0 to make the fact permanent; omit it to keep "
    "the fact's expiry as it is.")), AfterValidator(_ttl_update)]
Cursor = Annotated[str | None, Field(max_length=CURSOR_MAX_CHARS, description="next_cursor of the previous page")]
WhereScalar = str | int | float | bool
WhereValue = Annotated[WhereScalar | dict[str, WhereScalar | list[WhereScalar]], AfterValidator(_where_value)]
Where = Annotated[dict[str, WhereValue] | None, Field(max_length=MAX_WHERE_KEYS, description=(
    "Only facts whose metadata matches, on the keys the server indexes (KB_FILTER_FIELDS; kb_stats lists them), "
    "e.g. {'project': 'apollo', 'priority': {'gte': 2}, 'source': {'in': ['slack', 'mail']}}. A plain value means "
    "equal; operators: eq, ne, in (a list), and gt, gte, lt, lte on numeric keys. Every condition must hold."))]
RecencyHalfLife = Annotated[float | None, Field(gt=0, le=RECENCY_MAX_DAYS, description=(
    "Prefer recent facts: relevance is multiplied by 0.5 ** (days since the fact was last updated / this), so a "
    "fact this many days old counts half; omit it to rank by relevance alone"))]
FactIds = Annotated[list[FactId] | None, Field(min_length=1, max_length=MAX_BATCH,
                                               description="Only these facts (1-100 ids)")]

# The same types as validators for the store (strict: a Python caller gets no silent conversion).
FACT_ID: TypeAdapter[str] = TypeAdapter(FactId)
TAGS: TypeAdapter[list[str] | None] = TypeAdapter(TagFilter)
METADATA: TypeAdapter[dict[str, Scalar]] = TypeAdapter(Metadata)
CONTENT: TypeAdapter[str] = TypeAdapter(Content)
QUERY: TypeAdapter[str] = TypeAdapter(Query)
TOP_K: TypeAdapter[int] = TypeAdapter(TopK)
LIMIT: TypeAdapter[int] = TypeAdapter(Limit)
MIN_SCORE: TypeAdapter[float | None] = TypeAdapter(MinScore)
MODE: TypeAdapter[SearchMode] = TypeAdapter(Mode)
TIMESTAMP: TypeAdapter[str | None] = TypeAdapter(Timestamp)
TTL: TypeAdapter[int | None] = TypeAdapter(TtlSeconds)
TTL_UPDATE: TypeAdapter[int | None] = TypeAdapter(TtlUpdate)
WHERE: TypeAdapter[dict[str, Any] | None] = TypeAdapter(Where)
RECENCY: TypeAdapter[float | None] = TypeAdapter(RecencyHalfLife)
FACT_IDS: TypeAdapter[list[str] | None] = TypeAdapter(FactIds)


def valid(adapter: TypeAdapter[T], value: Any, field: str, *, max_fact_chars: int | None = None) -> T:
    """`value` checked (and normalised: tags lower-cased) by one field's rule; InvalidInput naming `field` (and the
    part of it at fault: `facts[3].tags[0]`) with the same sentence a tool's argument error says."""
    try:
        return adapter.validate_python(value, strict=True, context={MAX_FACT_CHARS_CONTEXT: max_fact_chars})
    except ValidationError as exc:
        where, problem = first_problem(exc, field, RULES)
        raise InvalidInput(where, problem) from None


def tags(value: Any, field: str = "tags") -> list[str]:
    """A tag list (None: no tags), lower-cased, each once."""
    return valid(TAGS, value, field) or []


def metadata(value: Any, field: str = "metadata") -> dict[str, Scalar]:
    """A flat JSON object (None: empty)."""
    found: dict[str, Scalar] = valid(METADATA, {} if value is None else value, field)
    return dict(found)


def time_range(after: Any, before: Any) -> tuple[float | None, float | None]:
    """created_after / created_before as epoch seconds (UTC when no timezone is given)."""
    low, high = _epoch(valid(TIMESTAMP, after, "created_after")), _epoch(valid(TIMESTAMP, before, "created_before"))
    if low is not None and high is not None and low > high:
        raise InvalidInput("created_before", "is earlier than created_after")
    return low, high


def _epoch(value: str | None) -> float | None:
    if value is None:
        return None
    moment = datetime.fromisoformat(value.strip())
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()
