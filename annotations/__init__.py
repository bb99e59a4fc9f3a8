"""The hub of the workbench: typed records, the store, and the statistics over them."""
