"""PostgreSQL system of record, bulk columnar I/O and the content-addressed artifact store."""
