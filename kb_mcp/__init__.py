"""kb-mcp: an MCP tool server giving LLM agents a long-term knowledge base on Redis Stack."""

__version__ = "0.1.0"
