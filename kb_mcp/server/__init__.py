"""The MCP side: the server and its lifespan (`app`), the frame of every tool call (`call`), the tools and their
result models (`tools`), the response budget (`results`), resources, bearer auth, streamable HTTP and metrics."""
