"""Storage: the schema this version uses, the SQLAlchemy engine, and the schema revision gate."""
