"""HTTP surface: operational endpoints, the REST trading API, GraphQL, and the error answers."""
