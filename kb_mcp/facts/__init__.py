"""What a fact is, independent of MCP and of Redis: its models (`models`), every field rule once (`rules`, with
`problems` saying a broken rule in words) and its content identity (`identity`)."""
