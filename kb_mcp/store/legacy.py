"""The namespace layout before hash tags (`kb:fact:<id>`, index `kb:idx`): detected when the index is opened, and
refused with the command that moves it (`kb-mcp migrate`, in `migrate`)."""

from __future__ import annotations

from kb_mcp.errors import IndexMissing, StartupError
from kb_mcp.store.context import StoreContext
from kb_mcp.store.schema import LEGACY_DEDUP_KEY, LEGACY_FACT_KEY, LEGACY_INDEX_NAME


class LegacyLayout:
    """The namespace's keys and index in the layout before hash tags."""

    def __init__(self, ctx: StoreContext) -> None:
        self._ctx = ctx
        ns = ctx.keyspace.namespace
        self.index_name = LEGACY_INDEX_NAME.format(ns=ns)
        self.fact_prefix = LEGACY_FACT_KEY.format(ns=ns, fact_id="")
        self.dedup_prefix = LEGACY_DEDUP_KEY.format(ns=ns, content_hash="")

    async def present(self) -> bool:
        """Is the old index still there? (It is dropped only once every key has moved.)"""
        try:
            await self._ctx.command("FT.INFO", self.index_name, op="FT.INFO (old layout)")
        except IndexMissing:
            return False
        return True

    def refusal(self) -> StartupError:
        ns = self._ctx.keyspace.namespace
        return StartupError(
            f"namespace {ns!r} is stored in the layout before hash tags ({self.fact_prefix}<id>, index "
            f"{self.index_name}); run `KB_NAMESPACE={ns} kb-mcp migrate` once (it moves every fact in place, keeps "
            "the vectors and can be re-run), then start again")
