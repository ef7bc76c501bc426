"""delete_facts: every fact matching a scope (ids, tags, creation-time range, metadata `where`), or every fact,
deleted in bounded batches. A scope larger than one call can delete in its time answers with what it deleted and
`more`, never with a half-known state: the agent calls again and the next call goes on where this one stopped."""

from __future__ import annotations

import time
from typing import Any

from pydantic import BaseModel, Field

from kb_mcp.errors import InvalidInput
from kb_mcp.facts.rules import FACT_IDS, valid
from kb_mcp.store.context import StoreContext
from kb_mcp.store.index import SearchIndex
from kb_mcp.store.schema import F_ID
from kb_mcp.store.search.querytext import escape
from kb_mcp.store.writes import Writer

DELETE_BATCH = 500  # facts found and deleted per round (one FT.SEARCH, one pipeline)
NO_SCOPE = ("give at least one filter (fact_ids, tags, created_before, created_after, where); to delete every fact "
            "call delete_facts(all=true), after delete_facts(all=true, dry_run=true) to see how many")


class DeleteReport(BaseModel):
    """What one delete_facts call did."""

    matched: int = Field(description="Facts matching the filters when the call began")
    deleted: int = Field(description="Facts this call deleted (0 with dry_run)")
    dry_run: bool
    more: bool = Field(default=False, description="True when matching facts are left because the call ran out of "
                                                  "time: call again with the same filters to go on")


class Deleter:
    """Scoped deletes for one namespace."""

    def __init__(self, ctx: StoreContext, index: SearchIndex, writer: Writer) -> None:
        self._ctx = ctx
        self._index = index
        self._writer = writer

    async def delete(self, *, fact_ids: Any = None, tags: Any = None, created_after: Any = None,
                     created_before: Any = None, where: Any = None, everything: Any = False, dry_run: Any = False,
                     budget_s: float | None = None, batch: int = DELETE_BATCH) -> DeleteReport:
        """Match, then delete batch by batch until none is left or `budget_s` is spent (half the tool deadline by
        default, so the answer always comes within it)."""
        ids = valid(FACT_IDS, fact_ids, "fact_ids")
        for name, flag in (("all", everything), ("dry_run", dry_run)):
            if not isinstance(flag, bool):
                raise InvalidInput(name, f"must be true or false (got {flag!r})")
        clauses = await self._index.scope(tags, created_after, created_before, where)
        if ids:  # a TAG match ignores case: the keys found are checked against the exact ids below
            clauses.append(f"@{F_ID}:{{{' | '.join(escape(i) for i in ids)}}}")
        if not clauses and not everything:
            raise InvalidInput("delete_facts", NO_SCOPE)
        if clauses and everything:
            raise InvalidInput("all", "all=true deletes every fact and takes no filters; give the filters without it")
        query = " ".join(clauses) or "*"
        deadline = time.monotonic() + (self._ctx.settings.timeouts.tool_s / 2 if budget_s is None else budget_s)
        wanted = {self._ctx.keyspace.key(i).encode() for i in ids} if ids else None
        matched: int | None = None
        deleted = 0
        while True:
            total, keys = await self._find(query, batch if wanted is None else 10 * len(wanted))
            if wanted is not None:
                keys = [k for k in keys if k in wanted]
                total = len(keys)
            if matched is None:
                matched = total
            if dry_run or not keys:
                return DeleteReport(matched=matched, deleted=deleted, dry_run=dry_run)
            removed = await self._writer.delete_many(keys)
            deleted += removed
            left = total - len(keys)
            if left <= 0:
                return DeleteReport(matched=matched, deleted=deleted, dry_run=False)
            if removed == 0 or time.monotonic() >= deadline:  # out of time (or the index lags behind the keys)
                return DeleteReport(matched=matched, deleted=deleted, dry_run=False, more=True)

    async def _find(self, query: str, limit: int) -> tuple[int, list[bytes]]:
        raw = await self._index.run(lambda: self._ctx.command(
            "FT.SEARCH", self._index.name, query, "NOCONTENT", "LIMIT", 0, limit, "DIALECT", 2,
            op="find facts to delete"))
        return int(raw[0]), list(raw[1:])
